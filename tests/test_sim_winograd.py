"""Winograd simulation (sdsim.sim.winograd): transform matrices exact, conv equal to the direct conv
in float64, fp16 error growing with tile size."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.kernels.winograd_transforms import matrices, matrices_exact
from sdsim.sim.winograd import conv3x3

# Published matrices (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks").
LAVIN = {
    2: {"BT": [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        "G": [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        "AT": [[1, 1, 1, 0], [0, 1, -1, -1]]},
    4: {"BT": [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        "G": [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        "AT": [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]]},
}


def conv_ref(x, w):
    """float64 3x3 conv, stride 1, zero padding 1, written as a loop over taps (not sdsim code)."""
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, h + 2, wd + 2))
    xp[:, :, 1:-1, 1:-1] = x
    y = np.zeros((n, w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            y += np.tensordot(w[:, :, ky, kx].astype(np.float64), xp[:, :, ky:ky + h, kx:kx + wd],
                              axes=([1], [1])).transpose(1, 0, 2, 3)
    return y


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_are_lavin_grays(m):
    """Same algorithm as the paper's matrices: each of the alpha products A^T[:, j] G[j] B^T[j]
    is equal (a row's sign may move between the three matrices, as it does for F2)."""
    at, g, bt = matrices(m)
    ours = np.einsum("oj,jc,jd->jocd", at, g, bt)
    lg = {k: np.array(v, dtype=np.float64) for k, v in LAVIN[m].items()}
    theirs = np.einsum("oj,jc,jd->jocd", lg["AT"], lg["G"], lg["BT"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=1e-15)
    if m == 4:   # F4's construction gives the published matrices exactly
        np.testing.assert_array_equal(bt, lg["BT"])
        np.testing.assert_array_equal(at, lg["AT"])
        np.testing.assert_allclose(g, lg["G"], rtol=1e-15)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_1d_identity_holds_exactly(m):
    """y = A^T [(G g) . (B^T d)] equals the correlation of d (length m+2) with g (length 3) in
    exact rational arithmetic, for every unit g and d (so for all g, d by linearity)."""
    at, g, bt = matrices_exact(m)
    alpha = m + 2
    for gi in range(3):
        for di in range(alpha):
            gv = [Fraction(int(i == gi)) for i in range(3)]
            dv = [Fraction(int(i == di)) for i in range(alpha)]
            u = [sum(g[r][c] * gv[c] for c in range(3)) for r in range(alpha)]
            v = [sum(bt[r][c] * dv[c] for c in range(alpha)) for r in range(alpha)]
            y = [sum(at[o][r] * u[r] * v[r] for r in range(alpha)) for o in range(m)]
            want = [sum(dv[o + t] * gv[t] for t in range(3)) for o in range(m)]
            assert y == want


@settings(max_examples=20, deadline=None)
@given(m=st.sampled_from([2, 4, 6]), n=st.integers(1, 2), c=st.integers(1, 5),
       k=st.integers(1, 5), h=st.integers(1, 15), w=st.integers(1, 15), seed=st.integers(0, 2**31))
def test_float64_equals_direct_conv(m, n, c, k, h, w, seed):
    """In float64 the only error is rounding: ~1e-15 relative; any wrong matrix entry or tile
    index gives O(1) errors. Sizes cover partial tiles and 1x1 images."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c, 3, 3))
    b = rng.standard_normal(k)
    y = conv3x3(x, wt, b, m, "fp32", dtype=np.float64)
    ref = conv_ref(x, wt) + b[None, :, None, None]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def fp16_rms_error(m, seeds=range(6)):
    errs = []
    for s in seeds:
        rng = np.random.default_rng(s)
        x = rng.standard_normal((1, 64, 24, 24)).astype(np.float32)
        wt = (rng.standard_normal((32, 64, 3, 3)) / np.sqrt(64 * 9)).astype(np.float32)
        ref = conv_ref(x, wt)
        errs.append(np.sqrt(np.mean((conv3x3(x, wt, None, m, "fp16") - ref) ** 2)))
    return float(np.mean(errs))


def test_fp16_error_grows_with_tile_size():
    """The paper's observation: larger Winograd tiles lose more precision in fp16 (bigger
    transform entries, more cancellation). Averaged over 6 seeds the ratios are far from 1
    (measured rms errors 6.8e-4, 3.8e-3, 7.3e-3: 5.6x from F2 to F4, 1.9x from F4 to F6), so the order is robust."""
    e2, e4, e6 = (fp16_rms_error(m) for m in (2, 4, 6))
    assert 1.5 * e2 < e4 and 1.5 * e4 < e6, (e2, e4, e6)


def test_fp16_rounds_every_stored_value():
    """With fp16 storage the output is representable in fp16, and F2 fp16 stays within a few
    fp16 roundings of float64 (its transforms are exact in binary)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    wt = (rng.standard_normal((4, 8, 3, 3)) / np.sqrt(72)).astype(np.float32)
    y = conv3x3(x, wt, None, 2, "fp16")
    np.testing.assert_array_equal(y, y.astype(np.float16).astype(np.float32))
    ref = conv_ref(x, wt)
    scale = conv_ref(np.abs(x), np.abs(wt)).max()
    assert np.abs(y - ref).max() < 8 * 2.0 ** -11 * scale
