"""Winograd F(m x m, 3x3) convolution in NumPy, rounding to fp16 exactly where opencl/conv.cl
stores to fp16, so its fp16 error can be studied without a GPU; with half arithmetic ("fp16",
"fp16acc") op by op in the kernels' order, so a device with native half can be checked against
it bit for bit.

Transform matrices: sdsim/kernels/winograd_transforms.py (the ones the kernels use, as float32
__constant arrays). Every B^T and A^T entry of F2/F4/F6 is exact in half (0, 1/32 .. 32, 5/4,
17/4, 21/4), so the half builds convert them losslessly; G's are not (1/6, 1/24, 2/45, ...), and
G is only used in float.

Rounding points with fp16 storage: x, w and bias stored fp16, and
- "fp32" (float builds): U = G w G^T, V = B^T d B, M = sum_c U V and Y = A^T M A + bias in
  float32, each rounded once to fp16, summed in NumPy's order (not a bit-exact mirror: the
  kernels sum in their own order and the compiler contracts to FMA);
- "fp16" / "fp16acc" (half builds): each transform is two passes of ALPHA-term dot products,
  l = 0, 1, ... in order, t = X d then t X^T (X = G, B^T or A^T), each a chain of
  sdsim.sim.conv.mac from +0:
  - U (wino_weight, once at load time): float32 multiply-adds in every build (the half builds
    turn FP contraction off, so they round as here), one rounding at the fp16 store;
  - V (wino_input): "fp16" half products into float32 sums, t rounded to half where it enters
    the second pass's products, V rounded at the store; "fp16acc" half fma into half sums;
  - M (the batched GEMM of gemm.cl): sdsim.sim.gemm, channels c = 0, 1, ... (`kslice`,
    `k_step` as sdsim.kernels.gemm.k_walk gives them for the call);
  - Y (wino_output): A^T M A as V's transform, + bias in float32, one rounding.
  The transform sums have at most 8 terms, so half sums cost no more than the half products;
  F4/F6's larger constants (B^T up to 21/4, A^T up to 32) and their cancellation make each
  rounding larger relative to the result: the "more rounding error" of bigger tiles.
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels.winograd_transforms import matrices
from sdsim.precision import stored
from sdsim.sim import gemm
from sdsim.sim.conv import acc_dtype, check_arith, mac

F32 = np.float32


def _left(a, d, arith):
    """s[i, j] = sum_l a[i, l] * d[l, j] (a a matrix, d (L, J, ...)), l in order."""
    e = (1,) * (d.ndim - 1)
    s = np.zeros((a.shape[0],) + d.shape[1:], acc_dtype(arith))
    for l in range(a.shape[1]):
        s = mac(a[:, l].reshape(-1, *e), d[l][None], s, arith)
    return s


def _right(t, a, arith):
    """s[i, j] = sum_l t[i, l] * a[j, l] (t (I, L, ...), a a matrix), l in order."""
    e = (1,) * (t.ndim - 2)
    s = np.zeros((t.shape[0], a.shape[0]) + t.shape[2:], acc_dtype(arith))
    for l in range(a.shape[1]):
        s = mac(t[:, l][:, None], a[:, l].reshape(1, -1, *e), s, arith)
    return s


def _half_arith(arith):
    check_arith(arith)
    if arith == "fp32":
        raise SdsimError("winograd sim: the transforms alone are those of the half builds "
                         "(arith 'fp16' or 'fp16acc')")


def weight_transform(w, m: int) -> np.ndarray:
    """U (alpha, alpha, K, C) = G w G^T of w (K, C, 3, 3) as a half build's wino_weight stores it
    (fp16)."""
    g = matrices(m, F32)[1]
    w = stored(w, "fp16", F32).transpose(2, 3, 0, 1)
    return _right(_left(g, w, "fp32"), g, "fp32").astype(np.float16)


def tiles(x, m: int) -> np.ndarray:
    """d (alpha, alpha, C, N, TH, TW): tile (ty, tx)'s window of x (N, C, H, W), rows and columns
    ty * m - 1 + i, tx * m - 1 + j, zero off the image."""
    n, c, h, wd = x.shape
    th, tw = -(-h // m), -(-wd // m)
    xp = np.zeros((n, c, th * m + 2, tw * m + 2), x.dtype)
    xp[:, :, 1:h + 1, 1:wd + 1] = x
    sn, sc, sh, sw = xp.strides
    return np.lib.stride_tricks.as_strided(xp, (m + 2, m + 2, c, n, th, tw),
                                           (sh, sw, sc, sn, sh * m, sw * m))


def input_transform(x, m: int, arith: str = "fp16") -> np.ndarray:
    """V (alpha, alpha, C, N, TH, TW) = B^T d B of x (N, C, H, W) as wino_input stores it (fp16)
    in half arithmetic (the kernel's V[xi][c][p], xi = i * alpha + j,
    p = (n * TH + ty) * TW + tx)."""
    _half_arith(arith)
    bt = matrices(m, F32)[2]
    d = tiles(stored(x, "fp16", F32), m)
    return _right(_left(bt, d, arith), bt, arith).astype(np.float16)


def output_transform(mm, b, m: int, ho: int, wo: int, arith: str = "fp16") -> np.ndarray:
    """y (N, K, Ho, Wo) = A^T M A + b of M (alpha, alpha, K, N, TH, TW) as wino_output stores it
    (fp16) in half arithmetic; b (K,) or None."""
    _half_arith(arith)
    at = matrices(m, F32)[0]
    y = _right(_left(at, stored(mm, "fp16", F32), arith), at, arith).astype(F32)
    y = y + (stored(b, "fp16", F32)[None, None, :, None, None, None] if b is not None
             else F32(0))
    _, _, k, n, th, tw = y.shape
    y = y.transpose(3, 2, 4, 0, 5, 1).reshape(n, k, th * m, tw * m)[:, :, :ho, :wo]
    return np.ascontiguousarray(y).astype(np.float16)


def conv3x3(x, w, b=None, m: int = 4, precision: str = "fp32", dtype=np.float32,
            arith: str = "fp32", kslice: int | None = None, k_step: int | None = None):
    """Winograd F(m x m, 3x3) conv, stride 1, padding 1, NCHW; x (N, C, H, W), w (K, C, 3, 3).

    With precision "fp16" the storage roundings of the kernel are applied (see module doc);
    `dtype=np.float64` with "fp32" gives the exact-arithmetic algorithm (for checking matrices).
    `arith` "fp16" / "fp16acc" (fp16 storage) runs the half builds' arithmetic op by op, with
    `kslice` and `k_step` the batched GEMM's walk of the channels (sdsim.sim.gemm.gemm).
    Returned as `dtype`.
    """
    check_arith(arith)
    if arith != "fp32":
        if precision != "fp16":
            raise SdsimError(f"winograd sim: arithmetic '{arith}' needs fp16 storage")
        alpha = m + 2
        k, c = w.shape[:2]
        v = input_transform(x, m, arith)
        mm = gemm.gemm(weight_transform(w, m).reshape(alpha * alpha, k, c),
                       v.reshape(alpha * alpha, c, -1), arith=arith, kslice=kslice,
                       k_step=k_step)
        mm = mm.reshape((alpha, alpha, k) + v.shape[3:])
        return output_transform(mm, b, m, x.shape[2], x.shape[3], arith).astype(dtype)

    def keep(a):   # a value as the kernel stores it
        return stored(a, precision, dtype)

    at, g, bt = (t.astype(dtype) for t in matrices(m))
    n, _, h, wd = x.shape
    th, tw = -(-h // m), -(-wd // m)
    d = tiles(keep(np.asarray(x, dtype)), m).transpose(3, 2, 4, 5, 0, 1)   # (n, c, ty, tx, ., .)
    w = keep(np.asarray(w, dtype))
    v = keep(np.einsum("ij,nctujk,lk->nctuil", bt, d, bt, optimize=True).astype(dtype))
    u = keep(np.einsum("ij,kcjl,ml->kcim", g, w, g, optimize=True).astype(dtype))
    mm = keep(np.einsum("kcij,nctuij->nktuij", u, v, optimize=True).astype(dtype))
    y = np.einsum("ai,nktuij,bj->nktuab", at, mm, at, optimize=True).astype(dtype)
    if b is not None:
        y = y + keep(np.asarray(b, dtype))[None, :, None, None, None, None]
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(n, w.shape[0], th * m, tw * m)[:, :, :h, :wd]
    return keep(np.ascontiguousarray(y))
