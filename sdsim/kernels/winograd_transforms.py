"""Winograd F(m x m, 3x3) transform matrices, exact, shared by the conv kernels and the simulation.


Transform matrices come from a Cook-Toom construction over the standard (Lavin-Gray / wincnn)
point sets: F(2): 0, 1, -1; F(4): 0, +-1, +-2; F(6): 0, +-1, +-2, +-1/2; plus the point at
infinity. For the linear convolution s = g * d of lengths r and m, s = C [(A_r g) . (A_m d)] with
A_n[j, i] = a_j^i (the infinity row picks the leading coefficient) and C = V^-1 (V the
alpha x alpha Vandermonde with the infinity row). Transposing gives the correlation
y = A_m^T [(A_r g) . (C^T d)], so A^T = A_m^T, G = A_r, B^T = C^T; then row j of B^T is scaled
by f_j = prod_{l != j}(a_j - a_l) and row j of G by 1/f_j, as wincnn does, which makes B^T
integral for F(2) and F(4).

Every A^T and B^T entry of F(2), F(4) and F(6) is a small dyadic rational (F(6): up to 32 and
21/4), exact in half, so the half-arithmetic transforms of opencl/conv.cl multiply by them
without rounding them; G's entries from F(4) on (1/6, 1/24, 2/45, ...) are exact in neither
half nor float, and the weight transform computes in float in every build.
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
