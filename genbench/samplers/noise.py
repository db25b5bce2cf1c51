"""Random streams for sampling.

* :class:`PerSampleRNG` (``eval.rng=per_sample``, the default): each sample i of a run draws all
  its noise (x_T, z, posterior noise) from its own generator seeded from ``(seed, i)``, as EDM's
  ``StackedRandomGenerator`` does (Karras et al. 2022, generate.py): sample 7 is the same image
  whether it was drawn in a batch of 1 or of 100.
* :class:`OfficialStream` (``eval.rng=official``): the one stream of the official test scripts
  (NVlabs/denoising-diffusion-gan ``test_ddgan.py`` at commit
  6818ded6443e10ab69c7864745457ce391d4d883, ``sample_and_test`` and ``sample_from_model``; the
  same structure in VinAIResearch/WaveDiff ``test_wddgan.py`` and thanhluantrinh/LDDGAN
  ``test_ldgan.py``): ``torch.manual_seed(seed)`` once, then per batch
  ``x_T = torch.randn(B, C, H, W)`` on the CPU moved to the device, and per step
  ``z = torch.randn(B, nz, device=...)`` and the posterior's ``torch.randn_like(x)`` on the device;
  the next batch continues the same stream. With the same weights this gives the official samples;
  they depend on the batch size.
* :class:`BatchRNG`: one generator for a batch, for the timed span.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PerSampleRNG:
    """One ``torch.Generator`` per sample of a batch; draws stack along dim 0."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A [B, *shape] standard normal draw, row i from generator i."""
        return torch.stack([
            torch.randn(shape, generator=g, device=self.device, dtype=dtype)
            for g in self.generators
        ])

    @classmethod
    def for_range(cls, seed: int, start: int, count: int,
                  device: torch.device | str = "cpu") -> PerSampleRNG:
        """Generators for samples start..start+count-1 of a run seeded with ``seed``."""
        return cls([seed * 1_000_003 + i for i in range(start, start + count)], device)


class BatchRNG:
    """One generator for the whole batch (same ``randn`` interface as :class:`PerSampleRNG`).

    Used where speed matters more than batch-size independence: the timed span draws z and the
    posterior noise with one call per step, as the official timing scripts do.
    """

    def __init__(self, batch: int, seed: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> None:
        self.batch = batch
        self.device = torch.device(device) if generator is None else generator.device
        self.generator = (torch.Generator(self.device).manual_seed(int(seed))
                          if generator is None else generator)  # a shared one draws on

    def __len__(self) -> int:
        return self.batch

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn((self.batch, *shape), generator=self.generator, device=self.device,
                           dtype=dtype)


class OfficialStream:
    """The official DDGAN-family sampling stream over a whole run (module docstring).

    The official scripts seed the global generators with ``torch.manual_seed(seed)`` (42 in
    ``test_ddgan.py``, ``--seed`` with default 42 in ``test_wddgan.py`` / ``test_ldgan.py``); x_T
    comes from the CPU generator, z and the posterior noise from the generator of the sampling
    device. Here those are two private generators seeded alike (one and the same on the CPU), so
    the global random state is left alone.
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.cpu = torch.Generator("cpu").manual_seed(int(seed))
        self.on_device = (self.cpu if self.device.type == "cpu"
                          else torch.Generator(self.device).manual_seed(int(seed)))

    def initial(self, count: int, *shape: int) -> torch.Tensor:
        """x_T [count, *shape]: ``torch.randn(count, *shape)`` on the CPU, then to the device."""
        return torch.randn((count, *shape), generator=self.cpu).to(self.device)

    def batch(self, count: int) -> BatchRNG:
        """The per-step draws (z, then the posterior noise) of a batch of ``count`` samples."""
        return BatchRNG(count, 0, generator=self.on_device)
