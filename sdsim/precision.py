"""Storage precisions: bytes per element and the rounding a device applies when it stores a value."""

from __future__ import annotations

import numpy as np

#: bytes per stored element
BYTES = {"fp32": 4, "fp16": 2}
#: arithmetic of fp16-storage kernel builds -> the kernels' ARITH define: float; half products
#: into float accumulators; half accumulators too (a mobile engine's fp16 mode)
ARITHS = {"fp32": 0, "fp16": 1, "fp16acc": 2}
ARITH_HELP = ("arithmetic of fp16-storage kernels: fp32 (float), fp16 (half multiplies, float "
              "accumulators), fp16acc (half accumulators too); default fp16 where the OpenCL "
              "device has cl_khr_fp16 (e.g. --platform Intel), else fp32")


def stored(a, precision: str, dtype=np.float64) -> np.ndarray:
    """`a` as a device holds it in `precision` storage (rounded through half for fp16), returned
    as `dtype`: what a kernel LOADs back, or what a reference must start from."""
    a = np.asarray(a)
    if precision == "fp16":
        a = a.astype(np.float16)
    return a.astype(dtype)
