"""Winograd simulation: transform matrices are exact, and fp16 error grows with the tile size."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.sim import winograd as W


def direct64(x, w, b=None):
    """float64 3x3 conv, stride 1, padding 1, by an explicit 7-loop-free sum over taps."""
    n, c, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = sum(np.einsum("nchw,kc->nkhw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j].astype(np.float64),
                      optimize=True) for i in range(3) for j in range(3))
    return y + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("m", [2, 4, 6])
def test_one_dimensional_identity_is_exact(m):
    """A^T [(G g) . (B^T d)] equals the correlation sum_k g_k d_{i+k} in exact rational math."""
    from fractions import Fraction
    at, g, bt = W.matrices_exact(m)
    alpha = m + 2
    for k in range(3):
        for l in range(alpha):
            # coefficient of g_k d_l in output i: sum_j AT[i][j] G[j][k] BT[j][l]
            for i in range(m):
                coef = sum((at[i][j] * g[j][k] * bt[j][l] for j in range(alpha)), Fraction(0))
                assert coef == (1 if l == i + k else 0)


def test_lavin_f2_matrices():
    """F(2x2,3x3) with points 0, 1, -1 is Lavin & Gray's published transform."""
    at, g, bt = W.matrices(2)
    np.testing.assert_array_equal(bt, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
                                  * np.array([[-1], [1], [1], [-1]]))
    np.testing.assert_array_equal(np.abs(g), [[1, 0, 0], [.5, .5, .5], [.5, .5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(np.abs(at), [[1, 1, 1, 0], [0, 1, 1, 1]])


@settings(max_examples=20, deadline=None)
@given(m=st.sampled_from([2, 4, 6]), n=st.integers(1, 2), c=st.integers(1, 6),
       k=st.integers(1, 6), h=st.integers(1, 15), w=st.integers(1, 15), seed=st.integers(0, 99))
def test_float64_winograd_equals_direct_conv(m, n, c, k, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c, 3, 3))
    b = rng.standard_normal(k)
    y = W.conv3x3(x, wt, b, m, "fp32", dtype=np.float64)
    np.testing.assert_allclose(y, direct64(x, wt, b), rtol=0, atol=1e-10 * 10 ** (m / 2))


def test_fp16_error_grows_with_tile_size():
    """The paper's point: in fp16, F(2x2) < F(4x4) < F(6x6) in error. RMS error over 5 seeds
    of a 64-channel conv at 32x32 (measured ~7e-4, 4e-3, 7e-3: a factor >1.5 between steps)."""
    err = {2: [], 4: [], 6: []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((1, 64, 32, 32)).astype(np.float32)
        wt = (rng.standard_normal((64, 64, 3, 3)) / np.sqrt(576)).astype(np.float32)
        ref = direct64(x, wt)
        for m in err:
            err[m].append(np.sqrt(np.mean((W.conv3x3(x, wt, None, m, "fp16") - ref) ** 2)))
    e2, e4, e6 = (np.mean(err[m]) for m in (2, 4, 6))
    assert 1.5 * e2 < e4 and 1.5 * e4 < e6
    # and fp32 Winograd stays far below any fp16 error
    x32 = W.conv3x3(x, wt, None, 6, "fp32")
    assert np.sqrt(np.mean((x32 - ref) ** 2)) < 0.05 * e2
