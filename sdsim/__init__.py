"""sdsim: a NumPy reference simulator, OpenCL kernels and a GPU cost model for Stable Diffusion."""

__version__ = "0.1.0"
