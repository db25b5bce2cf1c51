"""genbench: the quality/speed trade-off of fast image generators, measured honestly.

Components (datasets, backbones, latent spaces, samplers, metrics) live in
:mod:`genbench.registry`; the harness (:mod:`genbench.harness`) trains or loads one combination,
samples, measures and records.
"""

__version__ = "0.1.0"
