"""genbench.training."""
