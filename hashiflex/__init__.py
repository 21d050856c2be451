"""HaShiFlex: a compiler from PyTorch CNNs to hardened power-of-two accelerators."""

__version__ = "0.1.0"
