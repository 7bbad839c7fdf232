"""Half arithmetic as the half-precision device computes it, shared by the kernel simulations."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from sdsim.errors import SdsimError

#: the smallest normal half
SUBNORMAL = 2.0 ** -14


@dataclass(frozen=True, eq=False)
class HalfLibrary:
    """What a half device computes where devices differ, so the simulations can mirror it bit
    for bit: `exp`, the half exp of each of the 65536 halves by bit pattern (None: float's exp
    rounded to half), and `fma_through_float`, whether an fma whose result is in half's subnormal
    range rounds to float32 first. The default is Intel's OpenCL CPU runtime on an AMD EPYC
    host; on an Intel Xeon with AVX512-FP16 the same runtime's half exp is one ulp off float's
    rounded on 17% of the finite halves and its fma rounds once (sdsim.cl.half_probe reads
    both off a device)."""
    exp: np.ndarray | None = None
    fma_through_float: bool = True

    def __post_init__(self):
        if self.exp is not None and (np.shape(self.exp) != (1 << 16,)
                                     or np.asarray(self.exp).dtype != np.float16):
            raise SdsimError(f"half exp table: expected 65536 float16 values (one per half bit "
                             f"pattern), got {np.size(self.exp)} {np.asarray(self.exp).dtype}")

    def describe(self) -> str:
        """One line: how this library's exp and fma differ from the default model."""
        exp = "half exp: float's rounded to half"
        if self.exp is not None:
            d = ulps(self.exp, _float_exp(_HALVES))[np.isfinite(_HALVES)]
            if d.any():
                exp = (f"half exp: off float's rounded to half on {(d > 0).mean():.1%} of the "
                       f"finite halves (at most {int(d.max())} ulp)")
        fma = "through float32" if self.fma_through_float else "rounded once"
        return f"{exp}; fma with a subnormal result: {fma}"


_HALVES = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
_LIBRARY: ContextVar[HalfLibrary] = ContextVar("sdsim_half_library", default=HalfLibrary())


@contextmanager
def library(lib: HalfLibrary):
    """Within: the simulations' half exps and fmas are `lib`'s (a device's, as
    sdsim.cl.half_probe.probe reads them)."""
    token = _LIBRARY.set(lib)
    try:
        yield
    finally:
        _LIBRARY.reset(token)


def _float_exp(h) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(np.asarray(h, np.float16).astype(np.float64)).astype(np.float32).astype(
            np.float16)


def exp16(h) -> np.ndarray:
    """exp of halves `h` (any float array holding halves) in half, as float16: the active
    library's table (`library`), by default float's exp rounded to half (float64's rounded to
    float32, then to half: the same on all 65536 halves)."""
    table = _LIBRARY.get().exp
    if table is None:
        return _float_exp(h)
    return table[np.asarray(h, np.float16).view(np.uint16)]


def fma16(prod, acc) -> np.ndarray:
    """fma(a, b, acc) in half, from the exact product `prod` of two halves (float32 holds it
    exactly) and a half `acc`: the exact sum (float64 holds it) rounded once to half, except that
    with the active library's `fma_through_float` (the default, as Intel's OpenCL CPU runtime
    does it on an AMD EPYC host: 3 million random fmas agreed) a result in half's subnormal range
    is rounded to float32 first. Returned as float16."""
    ex = np.asarray(prod, np.float64) + np.asarray(acc, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN are what half gives
        if _LIBRARY.get().fma_through_float:
            ex = np.where(np.abs(ex) < SUBNORMAL, ex.astype(np.float32), ex)
        return ex.astype(np.float16)


def ulps(got, want) -> np.ndarray:
    """Distance between halves in half ulps, along the ordered line of half bit patterns (-0 and
    +0 one point; the two signs' smallest subnormals 2 apart); equal values, infs and NaNs 0."""
    def line(x):
        i = np.asarray(x, np.float16).view(np.int16).astype(np.int64)
        return np.where(i < 0, -32768 - i, i)
    got, want = np.asarray(got, np.float16), np.asarray(want, np.float16)
    same = (np.isnan(got) & np.isnan(want)) | (got == want)
    return np.where(same, 0, np.abs(line(got) - line(want)))
