"""Per-sample random streams, so that samples do not depend on the batch size.

Each sample i of a run draws all its noise (x_T, z, posterior noise) from its own generator
seeded with ``seed + i``, as EDM's ``StackedRandomGenerator`` does (Karras et al. 2022,
generate.py): sample 7 is the same image whether it was drawn in a batch of 1 or of 100.
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

    def __init__(self, batch: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.batch = batch
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(int(seed))

    def __len__(self) -> int:
        return self.batch

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn((self.batch, *shape), generator=self.generator, device=self.device,
                           dtype=dtype)
