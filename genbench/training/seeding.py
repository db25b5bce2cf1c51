"""Named random streams: every random draw of training comes from a seed derived here.

A run has one integer seed. Each consumer (the data order of an epoch, the flips of a step, the
noise of a trainer, dropout masks, a network's initial weights) asks for its own stream by name
and index, and gets ``SHA-256(seed, name, index...)`` folded into 63 bits. Distinct names never
share a seed (short of a SHA-256 collision), unlike arithmetic mixes such as ``seed * p + step``,
where with ``seed = 0`` the flips of step 0 and a generator seeded with the bare run seed
coincide. Derived seeds are pure functions of their inputs, which is what makes training resume
to the same weights: the stream of step ``s`` is the same whether or not the run was interrupted
before it (the design of JAX's ``random.fold_in``; Salmon et al. 2011, "Parallel random numbers:
as easy as 1, 2, 3", counter-based generators).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_MASK_63 = (1 << 63) - 1  # torch.Generator.manual_seed takes any int64; stay non-negative

# The streams genbench draws from (indexed streams take the epoch or step as index).
STREAMS: tuple[str, ...] = (
    "order",  # data order of an epoch (index: epoch)
    "flip",  # random horizontal flips of a batch (index: step)
    "global",  # torch's global generators during a step: dropout masks (index: step)
    "noise",  # a trainer's noise generator: timesteps, q-samples, z (checkpointed)
    "posterior",  # the autoencoder's posterior samples (index: step)
    "init/generator",  # initial weights of the denoiser
    "init/discriminator",  # initial weights of the DDGAN discriminator
    "init/autoencoder",  # initial weights of a learned latent space
    "init/patchgan",  # initial weights of the autoencoder's PatchGAN
)


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """The seed of stream ``stream`` (at ``index``, e.g. an epoch or a step) of run ``seed``."""
    text = ":".join([str(int(seed)), stream, *(str(int(i)) for i in index)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & _MASK_63


def stream_generator(seed: int, stream: str, *index: int,
                     device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`stream_seed`."""
    return torch.Generator(device).manual_seed(stream_seed(seed, stream, *index))


@contextmanager
def seeded_global_rng(seed: int, stream: str, *index: int,
                      device: str | torch.device = "cpu") -> Iterator[None]:
    """Seed torch's global generators with a stream for the block, then restore them.

    For draws that cannot take a generator: dropout masks and module initialisation inside
    torch and diffusers. The caller's random state is the same after the block as before it.
    """
    device = torch.device(device)
    value = stream_seed(seed, stream, *index)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(value)
        for index_ in cuda:
            torch.cuda.default_generators[index_].manual_seed(value)
        yield
