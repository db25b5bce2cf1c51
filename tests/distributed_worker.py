"""Sharded evaluation in one process of a group (or alone): run by tests/test_distributed_eval.py.

``python tests/distributed_worker.py OUT [perturb]``: under torchrun-style variables (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) it joins a gloo group; each rank samples its
block of the run with a tiny DDGAN network (random weights, seeded), maps the samples to features
with a fixed random projection, and rank 0 saves the whole sample set (gathered), the reduced
statistics and FID / precision-recall / KID / FID interval against fixed reference features to
OUT (torch.save). ``perturb`` changes the weights (the test shows it is detected).
"""

from __future__ import annotations

import sys

import torch

from genbench import distributed
from genbench.config import compose_plain
from genbench.harness.build import build_components
from genbench.harness.generate import generate
from genbench.harness.train import _new_backbone
from genbench.metrics import quality

NUM, BATCH, DIMS = 40, 10, 12  # blocks of 20 = two batches of 10 per rank at world size 2


def features_of(samples: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear projection of the images: a stand-in extractor, cheap and exact."""
    flat = samples.flatten(1).double() / 255.0
    proj = torch.randn(flat.shape[1], DIMS, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)
    return torch.tanh(flat @ proj / 4.0)


def main(out: str, perturb: bool) -> None:
    ctx = distributed.init("cpu")
    cfg = compose_plain(["backbone=ncsnpp_tiny", "train=tiny", "eval=tiny", "progress=false",
                         "dataset.split=test", "device=cpu"])
    comps = build_components(cfg)
    net = _new_backbone(cfg, comps, comps.sampler.objective).eval()
    # ncsnpp zero-initialises its last layers: seeded noise on every weight (the same on every
    # rank) makes images that are not flat grey; ``perturb`` makes that noise 10% stronger
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * (0.11 if perturb else 0.1))
    samples = generate(net, comps.latent, comps.sampler, comps.latent_shape, num_samples=NUM,
                       batch_size=BATCH, seed=3, device=torch.device("cpu"), progress=False)
    local = features_of(samples)
    stats = quality.sharded_statistics(local)
    gathered = quality.gathered_features(local)
    everything = distributed.gather_objects(samples, to_main_only=True)
    if not ctx.is_main:
        return
    reference = torch.randn(60, DIMS, generator=torch.Generator().manual_seed(9),
                            dtype=torch.float64) * 0.3
    result = {
        "world": ctx.world_size, "block": len(samples), "samples": torch.cat(everything),
        "mu": torch.from_numpy(stats.mu), "sigma": torch.from_numpy(stats.sigma),
        "n": stats.num_samples, "features": gathered,
        "fid": quality.fid(reference, stats),
        **quality.compute("precision_recall", reference, gathered, k=3),
        **quality.compute("kid", reference, gathered),
        "fid_ci": quality.fid_interval(quality.as_statistics(reference), gathered,
                                       resamples=20, seed=0).high,
    }
    torch.save(result, out)


if __name__ == "__main__":
    main(sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "perturb")
