"""Half arithmetic as the half-precision device computes it, shared by the kernel simulations."""

from __future__ import annotations

import numpy as np

#: the smallest normal half
SUBNORMAL = 2.0 ** -14


def fma16(prod, acc) -> np.ndarray:
    """fma(a, b, acc) in half, from the exact product `prod` of two halves (float32 holds it
    exactly) and a half `acc`: the exact sum (float64 holds it) rounded once to half, except that
    a result in half's subnormal range is rounded to float32 first, as Intel's OpenCL CPU runtime
    does it (3 million random fmas on it agreed with this rule). Returned as float16."""
    ex = np.asarray(prod, np.float64) + np.asarray(acc, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN are what half gives
        return np.where(np.abs(ex) < SUBNORMAL, ex.astype(np.float32), ex).astype(np.float16)


def ulps(got, want) -> np.ndarray:
    """Distance between halves in half ulps, along the ordered line of half bit patterns (-0 and
    +0 one point; the two signs' smallest subnormals 2 apart); equal values, infs and NaNs 0."""
    def line(x):
        i = np.asarray(x, np.float16).view(np.int16).astype(np.int64)
        return np.where(i < 0, -32768 - i, i)
    got, want = np.asarray(got, np.float16), np.asarray(want, np.float16)
    same = (np.isnan(got) & np.isnan(want)) | (got == want)
    return np.where(same, 0, np.abs(line(got) - line(want)))
