"""The activation and elementwise kernels of opencl/gelu.cl and opencl/elementwise.cl in NumPy at
fp16 storage, rounding exactly where the kernels round, so that a device with native half
arithmetic can be checked against it bit for bit.

Rounding points of the native-half build ("fp16" and "fp16acc" are one build: nothing
accumulates), x a half:
- GELU, 0.5 x erfc(-x / sqrt 2): erfc by the Numerical Recipes fit in float32, each step rounded
  to float32 (a = |x| / sqrt 2; t = 1 / fma(a / 2, 1); nine fma Horner steps; the exponent's
  argument fma(-x / 2, x, p), where x^2 / 2 is exact; exp; t e; 2 - t e where x > 0), rounded to
  half; then (0.5 x) erfc, two half products. 1.7 half ulps at most from float64's GELU, over
  every finite half.
- quick_gelu and SiLU, x sigmoid(k x) with k = 1.702 or 1: e = exp(-k |x|) in float32 (k |x|
  rounded to float32), the numerator x e (x < 0) or x rounded to half from float32, then 1 + e
  and the divide in half: 1.8 (quick_gelu) and 2.0 (SiLU) ulps at most.
- GEGLU: hidden * gelu(gate) in half; the two-pass form stores gelu(gate) as half: the same bits.
- add (and the embedding's token + position): the half sum, the float sum rounded to half.
Float where half would lose the answer (worst ulps if half instead; opencl/gelu.cl says more):
the erfc fit's t and Horner steps (3.0: its terms cancel near t = 1), the exponent's argument and
quick_gelu's 1.702 |x| (11 and 9.6: an argument off by 2^-8 near 8 is exp's relative error), and
x e (8.5: e is subnormal in half); the timestep's t f (0.25 off near t = 1000).
Each fma and float32 product above is exact in float64 before its one rounding. exp is NumPy's
float64 exp rounded to float32, which the device's float exp need not be (Intel's is off by one
float ulp for about 3% of arguments): where that moves a half rounding, one half ulp (quick_gelu
at x = -0.0001872, the one such half on Intel's runtime).

"fp32" (float arithmetic at fp16 storage): the float32 kernels as written, one rounding to half;
the device may contract multiply-adds to FMA, so this is not a bit-exact mirror. The timestep
embedding is float32 in every build: its sin, cos and exp are the device's float library's,
mirrored here by float64 ones rounded to float32.
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.precision import ARITHS

F32, F64, F16 = np.float32, np.float64, np.float16
#: erfcc's coefficients c0 .. c9 (p = c0 + t (c1 + t (... + t c9)))
ERFC_C = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
          1.48851587, -0.82215223, 0.17087277)
#: ln(10000) as the timestep kernel writes it (float32)
LN_MAX_PERIOD = 9.210340371976184


def _f32(v):
    return np.asarray(v, F64).astype(F32)


def _fma32(a, b, c):
    """float32 fma: a * b + c exact in float64 (48-bit product), one rounding to float32."""
    return _f32(np.asarray(a, F64) * np.asarray(b, F64) + np.asarray(c, F64))


def _exp32(v):
    return _f32(np.exp(np.asarray(v, F64)))


def _check(arith):
    if arith not in ARITHS:
        raise SdsimError(f"activation sim: unknown arithmetic '{arith}'; expected one of "
                         f"{', '.join(ARITHS)}")


def _stored(x, arith):
    """x as fp16 storage holds it (float16), after checking `arith`."""
    _check(arith)
    return np.asarray(x).astype(F16)


def erfc_of(x) -> np.ndarray:
    """erfc(-x / sqrt 2) of halves x as the half build's float32 erfcx computes it (float32)."""
    x = np.asarray(x, F16).astype(F32)
    a = _f32(np.abs(x) * F64(F32(0.70710678118654752)))
    t = _f32(1.0 / _fma32(0.5, a, 1.0).astype(F64))
    p = np.full_like(t, F32(ERFC_C[9]))
    for c in ERFC_C[8::-1]:
        p = _fma32(t, p, F32(c))
    r = _f32(t.astype(F64) * _exp32(_fma32(F32(-0.5) * x, x, p)))
    return np.where(x <= 0, r, _f32(2.0 - r.astype(F64)))


def gelu32(x):
    """The float build's gelu_f in float32, multiply-adds unfused (float32 result)."""
    x = np.asarray(x, F32)
    a = np.abs(-x * F32(0.70710678118654752))
    t = F32(1) / (F32(1) + F32(0.5) * a)
    p = F32(ERFC_C[9])
    for c in ERFC_C[8::-1]:
        p = F32(c) + t * p
    r = t * np.exp(p - a * a)
    return F32(0.5) * x * np.where(x <= 0, r, F32(2) - r)


def gelu(x, arith: str = "fp16") -> np.ndarray:
    """The erf GELU of halves x as the kernel stores it (float16)."""
    x = _stored(x, arith)
    with np.errstate(over="ignore", invalid="ignore"):
        if arith == "fp32":
            return gelu32(x.astype(F32)).astype(F16)
        return (F16(0.5) * x) * erfc_of(x).astype(F16)


def _sigmul(x, k, arith):
    x = _stored(x, arith)
    xf = x.astype(F32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if arith == "fp32":
            return (xf / (F32(1) + np.exp(F32(-k) * xf))).astype(F16)
        e = _exp32(_f32(F32(-k).astype(F64) * np.abs(xf)))
        num = np.where(xf < 0, _f32(xf.astype(F64) * e), xf).astype(F16)
        return num / (F16(1) + e.astype(F16))


def quick_gelu(x, arith: str = "fp16") -> np.ndarray:
    """CLIP's x sigmoid(1.702 x) of halves x as the kernel stores it (float16)."""
    return _sigmul(x, 1.702, arith)


def silu(x, arith: str = "fp16") -> np.ndarray:
    """x sigmoid(x) of halves x as the kernel stores it (float16)."""
    return _sigmul(x, 1.0, arith)


ACTIVATIONS = {"gelu": gelu, "quick_gelu": quick_gelu, "silu": silu}


def geglu(x, arith: str = "fp16", two_pass: bool = False) -> np.ndarray:
    """hidden * gelu(gate) of x (..., 2 dim) = [hidden | gate] as stored (float16); `two_pass`:
    the standalone variant, which stores gelu(gate) first (the same bits in half)."""
    hidden, gate = np.split(_stored(x, arith), 2, axis=-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if arith == "fp32" and not two_pass:
            return (hidden.astype(F32) * gelu32(gate.astype(F32))).astype(F16)
        return hidden * gelu(gate, arith)


def add(a, b, arith: str = "fp16") -> np.ndarray:
    """a + b (b broadcast onto a) as stored (float16): one rounding in every arithmetic."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _stored(a, arith) + _stored(b, arith)


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool, shift: float,
                       arith: str = "fp16") -> np.ndarray:
    """The timestep kernel's (batch, dim) output for float32 timesteps t (float16): float32
    frequencies exp(-ln(10000) k / (dim // 2 - shift)), arguments t f, sin and cos."""
    _check(arith)
    t = np.asarray(t, F32).reshape(-1)
    hd = dim // 2
    f = _exp32(_f32((F32(-LN_MAX_PERIOD) * np.arange(hd, dtype=F32)).astype(F64)
                    / F64(F32(hd) - F32(shift))))
    arg = (t[:, None] * f[None, :]).astype(F64)
    sin, cos = _f32(np.sin(arg)), _f32(np.cos(arg))
    y = np.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=1)
    return np.pad(y, ((0, 0), (0, dim % 2))).astype(F16)
