"""Storage precisions: bytes per element and the rounding a device applies when it stores a value."""

from __future__ import annotations

import numpy as np

#: bytes per stored element
BYTES = {"fp32": 4, "fp16": 2}


def stored(a, precision: str, dtype=np.float64) -> np.ndarray:
    """`a` as a device holds it in `precision` storage (rounded through half for fp16), returned
    as `dtype`: what a kernel LOADs back, or what a reference must start from."""
    a = np.asarray(a)
    if precision == "fp16":
        a = a.astype(np.float16)
    return a.astype(dtype)
