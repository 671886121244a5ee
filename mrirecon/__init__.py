"""mrirecon: MRI reconstruction in PyTorch, from raw multicoil k-space to images."""
__version__ = "0.1.0"
