"""genbench.diffusion."""
