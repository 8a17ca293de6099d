"""vtc, the vision tuning compiler."""

__version__ = "0.1.0"
