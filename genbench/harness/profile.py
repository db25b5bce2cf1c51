"""``genbench profile``: the cost of a configuration without training it.

Builds the denoiser with its initial weights, counts one sampling run's denoiser calls (NFE),
and reports parameters (denoiser, decoder, total), MACs and FLOPs per forward and per sample,
peak memory for one sample and, when asked, time per batch. Cost does not depend on the weights.
Each step that can take long is said before it starts (``say``), and the timing shows a progress
bar over its warm-ups and trials: the published GPU protocol times 10 + 300 batches of 100.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genbench.harness.build import build_backbone, build_components
from genbench.harness.evaluate import probe_sampling, profile_costs, time_sampling
from genbench.harness.system import resolve_device
from genbench.training.seeding import seeded_global_rng


def profile(cfg: dict[str, Any], *, time_it: bool = False,
            say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Cost figures for ``cfg`` as one flat dict (the keys of ``genbench profile --json``).

    ``say`` gets one line before each step that can take long (after the configuration is
    built: bad input stays one line); the timing's progress bar follows ``progress``.
    """
    progress = bool(cfg.get("progress", True))
    tell = say if say is not None and progress else (lambda line: None)
    device = resolve_device(str(cfg.get("device", "auto")))
    comps = build_components(cfg, load_data=False)
    with seeded_global_rng(int(cfg.get("seed", 0)), "init/generator"):  # as training starts
        net = build_backbone(cfg, comps.latent_shape, comps.sampler.objective)
    net = net.to(device).eval()
    tell(f"drawing one sample twice ({comps.sampler.name}): NFE, then peak memory")
    probe = probe_sampling(net, comps, int(cfg["eval"].get("seed", 0)), device)
    tell("counting MACs of one denoiser call and one decode")
    result: dict[str, Any] = {
        "backbone": cfg["presets"].get("backbone", cfg["backbone"]["name"])
        if cfg.get("presets") else cfg["backbone"]["name"],
        "latent": cfg["latent"]["name"],
        "sampler": comps.sampler.name,
        "objective": comps.sampler.objective,
        "image_shape": list(comps.image_shape),
        "latent_shape": list(comps.latent_shape),
        **profile_costs(net, comps, device, probe["nfe"]),
    }
    result.update(peak_memory_mb=probe["peak_memory_mb"],
                  peak_memory_method=probe["peak_memory_method"], device=str(device))
    if time_it:
        ev = cfg["eval"]
        tell(f"timing a batch of {ev.get('time_batch_size', 100)}: "
             f"{ev.get('time_warmup', 10)} warm-ups and {ev.get('time_trials', 300)} trials "
             f"(eval.time_warmup, eval.time_trials)")
        timing = time_sampling(net, comps, ev, device, progress=progress)
        result.update(time_per_batch_s=timing["median_s"], time_per_batch_iqr_s=timing["iqr_s"],
                      timing=timing)
    return result


__all__ = ["profile"]
