"""Winograd F(m x m, 3x3) convolution in NumPy, rounding to fp16 exactly where opencl/conv.cl
stores to fp16 (float32 arithmetic in between), so its fp16 error can be studied without a GPU.

Transform matrices: sdsim/kernels/winograd_transforms.py (the ones the kernels use).

Kernel rounding points with fp16 storage (all values held as float32 in between):
input x and weight w stored fp16; U = G w G^T stored fp16 (weight transform at load time);
V = B^T d B stored fp16 (input transform); M = sum_c U V accumulated in float32, stored fp16
(batched gemm); Y = A^T M A + bias rounded to fp16 (output transform).
"""

from __future__ import annotations

import numpy as np

from sdsim.kernels.winograd_transforms import matrices
from sdsim.sim import gemm
from sdsim.precision import stored


def conv3x3(x, w, b=None, m: int = 4, precision: str = "fp32", dtype=np.float32,
            arith: str = "fp32"):
    """Winograd F(m x m, 3x3) conv, stride 1, padding 1, NCHW; x (N, C, H, W), w (K, C, 3, 3).

    With precision "fp16" the storage roundings of the kernel are applied (see module doc);
    `dtype=np.float64` with "fp32" gives the exact-arithmetic algorithm (for checking matrices).
    `arith` "fp16" / "fp16acc" (fp16 storage) computes the batched GEMM with the half
    arithmetic of sdsim.sim.gemm, summing the channels in order (an unsplit GEMM).
    """
    def keep(a):   # a value as the kernel stores it
        return stored(a, precision, dtype)

    at, g, bt = (t.astype(dtype) for t in matrices(m))
    alpha = m + 2
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = -(-h // m), -(-wd // m)
    x = keep(np.asarray(x, dtype))
    w = keep(np.asarray(w, dtype))
    # zero-padded input covering every tile's alpha x alpha window (pad 1 top/left)
    xp = np.zeros((n, c, th * m + 2, tw * m + 2), dtype)
    xp[:, :, 1:h + 1, 1:wd + 1] = x
    # tiles d[n, c, ty, tx, alpha, alpha]
    sn, sc, sh, sw = xp.strides
    d = np.lib.stride_tricks.as_strided(xp, (n, c, th, tw, alpha, alpha),
                                        (sn, sc, sh * m, sw * m, sh, sw))
    v = keep(np.einsum("ij,nctujk,lk->nctuil", bt, d, bt, optimize=True).astype(dtype))
    u = keep(np.einsum("ij,kcjl,ml->kcim", g, w, g, optimize=True).astype(dtype))
    if arith == "fp32":
        mm = keep(np.einsum("kcij,nctuij->nktuij", u, v, optimize=True).astype(dtype))
    else:   # per (i, j): U (K, C) @ V (C, N * tiles) through the half GEMM's rounding points
        ua = u.transpose(2, 3, 0, 1).reshape(alpha * alpha, k, c)
        va = v.transpose(4, 5, 1, 0, 2, 3).reshape(alpha * alpha, c, n * th * tw)
        mm = gemm.gemm(ua, va, arith=arith).astype(dtype)
        mm = mm.reshape(alpha, alpha, k, n, th, tw).transpose(3, 2, 4, 5, 0, 1)
    y = np.einsum("ai,nktuij,bj->nktuab", at, mm, at, optimize=True).astype(dtype)
    if b is not None:
        y = y + keep(np.asarray(b, dtype))[None, :, None, None, None, None]
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(n, k, th * m, tw * m)[:, :, :h, :wd]
    return keep(np.ascontiguousarray(y))
