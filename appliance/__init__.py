"""Node side of the offline analytics appliance: verify, import and serve precomputed ML results."""

__version__ = "0.1.0"
