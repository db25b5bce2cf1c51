"""Quality metrics (features -> statistics -> numbers) and cost measurements."""

from genbench.metrics import quality  # noqa: F401  (registers the quality metrics)
