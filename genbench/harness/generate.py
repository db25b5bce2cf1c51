"""Sampling for a cell: noise -> sampler -> latent decode -> uint8 images, kept in memory.

Samples are never written as JPEG (pytorch-fid #63: JPEG changes FID, and the official DDGAN,
WaveDiff and LDDGAN scripts all save .jpg). With ``eval.rng=per_sample`` (the default) sample i of
a run always comes from the random stream ``(eval.seed, i)``, so it does not depend on the batch
size; ``eval.rng=official`` draws the whole run from the official scripts' one stream
(:class:`genbench.samplers.noise.OfficialStream`: x_T per batch, then z and the posterior noise
per step), so that released weights give the official samples for the same seed and batch size.

Under torch.distributed (``torchrun``, SLURM, submitit; :mod:`genbench.distributed`) each rank
draws its contiguous block of the N samples (:meth:`genbench.distributed.Context.shard`, in
rank order, no padding duplicates), each sample from its own stream as above: the set of
samples is the same for every world size. ``eval.rng=official`` is one stream over the whole run
(sample i's noise depends on every sample before it), so it cannot be split: it is refused with
a one-line error in a world of more than one process; run it in one process.
"""

from __future__ import annotations

import torch

from genbench import distributed
from genbench._io import fault_point
from genbench.data.base import to_uint8
from genbench.errors import UserError
from genbench.progress import bar as progress_bar
from genbench.samplers.base import Sampler
from genbench.samplers.noise import OfficialStream, PerSampleRNG

RNG_MODES = ("per_sample", "official")  # eval.rng


@torch.no_grad()
def generate_batch(net: torch.nn.Module, latent, sampler: Sampler,
                   latent_shape: tuple[int, int, int], seed: int, start: int, count: int,
                   device: torch.device, stream: OfficialStream | None = None) -> torch.Tensor:
    """Samples ``start .. start+count-1`` of the run seeded ``seed``, as uint8 on ``device``
    (from ``stream``, the official one, when given: then ``seed`` and ``start`` are its)."""
    if stream is None:
        rng = PerSampleRNG.for_range(seed, start, count, device)
        x_T = rng.randn(*latent_shape)
    else:
        x_T = stream.initial(count, *latent_shape)
        rng = stream.batch(count)
    x0 = sampler.sample(net, x_T, rng)
    return to_uint8(latent.decode(x0))


def check_rng(rng: str, world_size: int) -> None:
    """``eval.rng`` is known, and shardable when the run is split over ``world_size`` ranks."""
    if rng not in RNG_MODES:
        raise UserError(f"eval.rng={rng!r}; use one of {', '.join(RNG_MODES)}")
    if rng == "official" and world_size > 1:
        raise UserError(f"eval.rng=official is one random stream over the whole run and cannot "
                        f"be split over {world_size} processes; run it in one process, or use "
                        f"eval.rng=per_sample")


def generate(net: torch.nn.Module, latent, sampler: Sampler,
             latent_shape: tuple[int, int, int], *, num_samples: int, batch_size: int,
             seed: int, device: torch.device, progress: bool = True,
             rng: str = "per_sample",
             context: distributed.Context | None = None) -> torch.Tensor:
    """``num_samples`` uint8 images [N, C, H, W] on the CPU; ``rng`` is ``eval.rng``.

    Under torch.distributed (``context``, default :func:`genbench.distributed.current`) only
    this rank's block ``context.shard(num_samples)`` of the run, in batches of ``batch_size``
    (the blocks of all ranks in rank order are the one-process run)."""
    ctx = distributed.current() if context is None else context
    check_rng(rng, ctx.world_size)
    stream = OfficialStream(seed, device) if rng == "official" else None
    block = ctx.shard(num_samples)
    out = []
    with progress_bar(total=len(block), desc="sample", unit="img",
                      disable=not progress or not ctx.is_main, dynamic_ncols=True) as bar:
        for start in range(block.start, block.stop, batch_size):
            count = min(batch_size, block.stop - start)
            out.append(generate_batch(net, latent, sampler, latent_shape, seed, start, count,
                                      device, stream).cpu())
            bar.update(count)
            fault_point("sample.batch")  # test-only kill point (genbench._io.fault_point)
    if not out:  # more ranks than samples: an empty block of the right shape
        shape = to_uint8(latent.decode(torch.zeros(1, *latent_shape, device=device))).shape[1:]
        return torch.empty((0, *shape), dtype=torch.uint8)
    return torch.cat(out)


def first_samples(samples: torch.Tensor, count: int) -> torch.Tensor | None:
    """The first ``count`` samples of the run from every rank's block (:func:`generate`), on
    rank 0 (None on the others); in a world of one, ``samples[:count]``."""
    blocks = distributed.gather_objects(samples[:count], to_main_only=True)
    return None if blocks is None else torch.cat(blocks)[:count]


def sample_grid_png(images: torch.Tensor, grid_size: int, *, min_tile: int = 32,
                    pad: int = 2) -> bytes:
    """A lossless PNG of the first grid_size x grid_size images, tiles separated by ``pad``.

    Small images (the 8x8 digits) are enlarged by an integer factor with nearest-neighbour
    repetition, so pixels stay pixels and tiles are readable.
    """
    import io

    from PIL import Image

    n = min(grid_size * grid_size, images.shape[0])
    rows = max(1, (n + grid_size - 1) // grid_size)
    c, h, w = images.shape[1:]
    scale = max(1, min_tile // max(h, w))
    tiles = images[:n].repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    th, tw = h * scale, w * scale
    canvas = torch.full((c, rows * (th + pad) + pad, grid_size * (tw + pad) + pad), 96,
                        dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, grid_size)
        top, left = pad + r * (th + pad), pad + col * (tw + pad)
        canvas[:, top:top + th, left:left + tw] = tiles[i]
    # PIL reads the buffer as laid out in memory: hand it a contiguous H x W (x C) array.
    array = (canvas[0] if c == 1 else canvas.permute(1, 2, 0)).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
