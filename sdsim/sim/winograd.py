"""Winograd F(m x m, 3x3) convolution in NumPy, rounding to fp16 exactly where opencl/conv.cl
stores to fp16 (float32 arithmetic in between), so its fp16 error can be studied without a GPU.

Transform matrices come from a Cook-Toom construction over the standard (Lavin-Gray / wincnn)
point sets: F(2): 0, 1, -1; F(4): 0, +-1, +-2; F(6): 0, +-1, +-2, +-1/2; plus the point at
infinity. For the linear convolution s = g * d of lengths r and m, s = C [(A_r g) . (A_m d)] with
A_n[j, i] = a_j^i (the infinity row picks the leading coefficient) and C = V^-1 (V the
alpha x alpha Vandermonde with the infinity row). Transposing gives the correlation
y = A_m^T [(A_r g) . (C^T d)], so A^T = A_m^T, G = A_r, B^T = C^T; then row j of B^T is scaled
by f_j = prod_{l != j}(a_j - a_l) and row j of G by 1/f_j, as wincnn does, which makes B^T
integral for F(2) and F(4).

Kernel rounding points with fp16 storage (all values held as float32 in between):
input x and weight w stored fp16; U = G w G^T stored fp16 (weight transform at load time);
V = B^T d B stored fp16 (input transform); M = sum_c U V accumulated in float32, stored fp16
(batched gemm); Y = A^T M A + bias rounded to fp16 (output transform).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}
R = 3


def _inverse(mat):
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(mat)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(mat)]
    for col in range(n):
        piv = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        p = aug[col][col]
        aug[col] = [v / p for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


def _eval_matrix(points, n, alpha):
    """alpha x n: row j evaluates a degree-(n-1) polynomial at point j; last row = infinity."""
    rows = [[Fraction(a) ** i for i in range(n)] for a in points]
    rows.append([Fraction(int(i == n - 1)) for i in range(n)])
    return rows


@lru_cache(maxsize=None)
def matrices_exact(m: int):
    """(AT, G, BT) of F(m x m, 3x3) as tuples of tuples of Fractions."""
    pts = [Fraction(p) for p in POINTS[m]]
    alpha = m + R - 1
    am = _eval_matrix(pts, m, alpha)                 # alpha x m
    ar = _eval_matrix(pts, R, alpha)                 # alpha x r
    c = _inverse(_eval_matrix(pts, alpha, alpha))    # alpha x alpha
    bt = [[c[i][j] for i in range(alpha)] for j in range(alpha)]   # C^T
    at = [[am[j][i] for j in range(alpha)] for i in range(m)]      # A_m^T
    g = [list(row) for row in ar]
    for j, a in enumerate(pts):
        f = Fraction(1)
        for l, b in enumerate(pts):
            if l != j:
                f *= a - b
        bt[j] = [v * f for v in bt[j]]
        g[j] = [v / f for v in g[j]]
    return tuple(map(tuple, at)), tuple(map(tuple, g)), tuple(map(tuple, bt))


def matrices(m: int, dtype=np.float64):
    """(AT (m x alpha), G (alpha x 3), BT (alpha x alpha)) as arrays of `dtype`."""
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype)
                 for mat in matrices_exact(m))


def _r16(a, fp16):
    return a.astype(np.float16).astype(np.float32) if fp16 else a


def conv3x3(x, w, b=None, m: int = 4, precision: str = "fp32", dtype=np.float32):
    """Winograd F(m x m, 3x3) conv, stride 1, padding 1, NCHW; x (N, C, H, W), w (K, C, 3, 3).

    With precision "fp16" the storage roundings of the kernel are applied (see module doc);
    `dtype=np.float64` with "fp32" gives the exact-arithmetic algorithm (for checking matrices).
    """
    fp16 = precision == "fp16"
    at, g, bt = (t.astype(dtype) for t in matrices(m))
    alpha = m + 2
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = -(-h // m), -(-wd // m)
    x = _r16(np.asarray(x, dtype), fp16)
    w = _r16(np.asarray(w, dtype), fp16)
    # zero-padded input covering every tile's alpha x alpha window (pad 1 top/left)
    xp = np.zeros((n, c, th * m + 2, tw * m + 2), dtype)
    xp[:, :, 1:h + 1, 1:wd + 1] = x
    # tiles d[n, c, ty, tx, alpha, alpha]
    sn, sc, sh, sw = xp.strides
    d = np.lib.stride_tricks.as_strided(xp, (n, c, th, tw, alpha, alpha),
                                        (sn, sc, sh * m, sw * m, sh, sw))
    v = _r16(np.einsum("ij,nctujk,lk->nctuil", bt, d, bt, optimize=True).astype(dtype), fp16)
    u = _r16(np.einsum("ij,kcjl,ml->kcim", g, w, g, optimize=True).astype(dtype), fp16)
    mm = _r16(np.einsum("kcij,nctuij->nktuij", u, v, optimize=True).astype(dtype), fp16)
    y = np.einsum("ai,nktuij,bj->nktuab", at, mm, at, optimize=True).astype(dtype)
    if b is not None:
        y = y + _r16(np.asarray(b, dtype), fp16)[None, :, None, None, None, None]
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(n, k, th * m, tw * m)[:, :, :h, :wd]
    return _r16(np.ascontiguousarray(y), fp16)


def direct_conv3x3(x, w, b=None):
    """Reference 3x3 conv, stride 1, padding 1, in float64 (NCHW)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, ky:ky + h, kx:kx + wd], w[:, :, ky, kx])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y
