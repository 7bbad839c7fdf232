"""GELU-family kernels (opencl/gelu.cl): erf GELU, quick_gelu, SiLU, GEGLU standalone/fused and
the feed-forward GEGLU with GELU in the GEMM epilogue, against float64 NumPy written here."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

U16 = 2.0 ** -11
U32 = 2.0 ** -24


def gelu64(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


REF = {"gelu": gelu64,
       "quick_gelu": lambda x: x / (1.0 + np.exp(-1.702 * x)),
       "silu": lambda x: x / (1.0 + np.exp(-x))}


def rounded(a, precision):
    return a.astype(np.float16).astype(np.float32) if precision == "fp16" else a


def tol(ref, precision, extra=0.0, arith="fp32"):
    """float32 exp is within 4 ulp and erfc within 16 in OpenCL: 24 u32 |y| plus 24 u32 absolute for
    outputs near zero; fp16 rounds the stored output once (u16 |y|) plus `extra`. The native-half
    build (`arith` fp16 or fp16acc) is within 2 half ulps instead (opencl/gelu.cl): 2 ulp <= 4 u16
    |y|, or 2 * 2^-24 below half's normal range."""
    t = 24 * U32 * (np.abs(ref) + 1) + extra
    if precision == "fp16":
        t = t + (U16 * np.abs(ref) if arith == "fp32" else 4 * U16 * np.abs(ref) + 2 * 2.0 ** -24)
    return t


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["gelu", "quick_gelu", "silu"]),
       precision=st.sampled_from(["fp32", "fp16"]), n=st.integers(1, 3000),
       scale=st.sampled_from([1.0, 10.0, 100.0]), seed=st.integers(0, 2**31))
def test_activations_match_float64(rt, kind, precision, n, scale, seed):
    from sdsim.kernels.elementwise import activation_host

    x = (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)
    out, _ = activation_host(rt, x, kind, precision=precision)
    ref = REF[kind](np.asarray(rounded(x, precision), np.float64))
    assert (np.abs(out - ref) <= tol(ref, precision, arith=rt.arith_for(precision))).all()


@settings(max_examples=20, deadline=None)
@given(variant=st.sampled_from(["standalone", "geglu_fused"]),
       precision=st.sampled_from(["fp32", "fp16"]), rows=st.integers(1, 70),
       dim=st.integers(1, 150), seed=st.integers(0, 2**31))
def test_geglu_matches_float64(rt, variant, precision, rows, dim, seed):
    from sdsim.kernels.gelu import geglu_host

    x = (np.random.default_rng(seed).standard_normal((rows, 2 * dim)) * 3).astype(np.float32)
    out, _ = geglu_host(rt, x, variant=variant, precision=precision)
    xr = np.asarray(rounded(x, precision), np.float64)
    hidden, gate = xr[:, :dim], xr[:, dim:]
    ref = hidden * gelu64(gate)
    # standalone stores gelu(gate) in fp16 first: a second u16 rounding of |hidden * gelu|; the
    # native-half build rounds gelu(gate) in both (its 2 ulp, times |hidden|)
    arith = rt.arith_for(precision)
    extra = U16 * np.abs(ref) if (precision == "fp16" and variant == "standalone") else 0.0
    if arith != "fp32":
        extra = U16 * np.abs(ref) + 2 * 2.0 ** -24 * np.abs(hidden)
    assert out.shape == (rows, dim)
    assert (np.abs(out - ref) <= tol(ref, precision, extra, arith)).all()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", ["standalone", "geglu_fused"])
def test_feed_forward_geglu_variants(rt, variant, precision):
    """GEGLU(h W^T + b): the linear, then each GEGLU variant on its stored output, 67 tokens x 40 -> 2 x 24 (not tile multiples).
    Bound: the k-term float32 dot ((k+2) u32 |h||W|, GELU is 1.13-Lipschitz, times |hidden| +
    |gelu(gate)|); fp16 also rounds h, W, b (3 u16 |h||W|), the projection (u16 each half) and the
    output (u16 |y|)."""
    from sdsim.kernels.gelu import geglu_host
    from sdsim.kernels.gemm import linear_host

    rng = np.random.default_rng(11)
    rows, k, dim = 67, 40, 24
    h = rng.standard_normal((rows, k)).astype(np.float32)
    w = (rng.standard_normal((2 * dim, k)) / math.sqrt(k)).astype(np.float32)
    b = (rng.standard_normal(2 * dim) * 0.1).astype(np.float32)
    proj, _ = linear_host(rt, h, w, b, precision=precision)   # already rounded to storage
    out, _ = geglu_host(rt, proj, variant=variant, precision=precision)
    hr, wr, br = (np.asarray(rounded(a, precision), np.float64) for a in (h, w, b))
    y = hr @ wr.T + br
    hid, gate = y[:, :dim], y[:, dim:]
    ref = hid * gelu64(gate)
    absy = np.abs(hr) @ np.abs(wr).T + np.abs(br)
    e = (k + 2) * U32 * absy
    if precision == "fp16":
        e = e + 3 * U16 * absy + U16 * np.abs(y)
    bound = 1.13 * e[:, dim:] * np.abs(hid) + e[:, :dim] * np.abs(gelu64(gate)) + e[:, :dim] * e[:, dim:]
    assert (np.abs(out - ref) <= 1.5 * bound + tol(ref, precision, U16 * np.abs(ref))).all()


def test_unknown_names_raise(rt):
    from sdsim.errors import SdsimError
    from sdsim.kernels.elementwise import activation_host
    from sdsim.kernels.gelu import geglu_host

    x = np.zeros(4, np.float32)
    with pytest.raises(SdsimError, match="activation"):
        activation_host(rt, x, "relu")
    with pytest.raises(SdsimError, match="unknown variant"):
        geglu_host(rt, x.reshape(1, 4), variant="bogus")

