"""genbench.harness."""
