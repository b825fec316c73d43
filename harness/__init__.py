"""Hardware-in-the-loop benchmarking of compressed neural networks on edge devices."""

__version__ = "0.1.0"
