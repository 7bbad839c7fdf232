"""NumPy simulations of the optimized algorithms (Winograd, tiled attention, ...) that round to
fp16 exactly where the OpenCL kernels store, so their numerics can be studied without a GPU."""
