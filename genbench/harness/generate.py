"""Sampling for a cell: noise -> sampler -> latent decode -> uint8 images, kept in memory.

Samples are never written as JPEG (pytorch-fid #63: JPEG changes FID, and the official DDGAN,
WaveDiff and LDDGAN scripts all save .jpg). With ``eval.rng=per_sample`` (the default) sample i of
a run always comes from the random stream ``(eval.seed, i)``, so it does not depend on the batch
size; ``eval.rng=official`` draws the whole run from the official scripts' one stream
(:class:`genbench.samplers.noise.OfficialStream`: x_T per batch, then z and the posterior noise
per step), so that released weights give the official samples for the same seed and batch size.
"""

from __future__ import annotations

import torch

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


def generate(net: torch.nn.Module, latent, sampler: Sampler,
             latent_shape: tuple[int, int, int], *, num_samples: int, batch_size: int,
             seed: int, device: torch.device, progress: bool = True,
             rng: str = "per_sample") -> torch.Tensor:
    """``num_samples`` uint8 images [N, C, H, W] on the CPU; ``rng`` is ``eval.rng``."""
    if rng not in RNG_MODES:
        raise UserError(f"eval.rng={rng!r}; use one of {', '.join(RNG_MODES)}")
    stream = OfficialStream(seed, device) if rng == "official" else None
    out = []
    with progress_bar(total=num_samples, desc="sample", unit="img", disable=not progress,
                      dynamic_ncols=True) as bar:
        for start in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - start)
            out.append(generate_batch(net, latent, sampler, latent_shape, seed, start, count,
                                      device, stream).cpu())
            bar.update(count)
            fault_point("sample.batch")  # test-only kill point (genbench._io.fault_point)
    return torch.cat(out)


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
