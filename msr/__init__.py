"""msr: an experiment runner for multi-step reasoning in sequence models."""

__version__ = "0.1.0"
