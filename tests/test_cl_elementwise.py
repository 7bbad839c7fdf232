"""Elementwise and data-movement kernels (opencl/elementwise.cl) against NumPy: broadcast add,
nearest 2x upsample, concat, NCHW <-> tokens transposes, embedding gather, timestep embedding."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

U16 = 2.0 ** -11
U32 = 2.0 ** -24


def rounded(a, precision):
    return a.astype(np.float16).astype(np.float32) if precision == "fp16" else a


@st.composite
def broadcast_pair(draw):
    """An a-shape of 1-4 dims and a b-shape broadcastable onto it (dims dropped or set to 1)."""
    a = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    keep = draw(st.integers(0, len(a)))
    b = [d if draw(st.booleans()) else 1 for d in a[len(a) - keep:]]
    return tuple(a), tuple(b)


@settings(max_examples=30, deadline=None)
@given(shapes=broadcast_pair(), precision=st.sampled_from(["fp32", "fp16"]),
       seed=st.integers(0, 2**31))
def test_add_broadcasts_like_numpy(rt, shapes, precision, seed):
    """One rounding of the exact sum: u32 (fp32) or u16 (fp16) of |a + b|."""
    from sdsim.kernels.elementwise import add_host

    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    out, _ = add_host(rt, a, b, precision=precision)
    ref = np.asarray(rounded(a, precision), np.float64) + rounded(b, precision)
    u = U16 if precision == "fp16" else U32
    assert out.shape == ref.shape
    assert (np.abs(out - ref) <= u * np.abs(ref)).all()


@pytest.mark.parametrize("a_shape,b_shape", [((2, 320, 8, 8), (2, 320, 1, 1)),
                                             ((2, 320, 8, 8), (320, 1, 1)),
                                             ((2, 77, 768), (768,)), ((2, 77, 768), (1, 77, 768))])
def test_add_sd14_broadcasts(rt, a_shape, b_shape):
    """Time embedding onto NCHW, conv/linear bias, CLIP's position embedding."""
    from sdsim.kernels.elementwise import add_host

    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    out, _ = add_host(rt, a, b)
    np.testing.assert_array_equal(out, a + b)   # one float32 rounding, as NumPy's float32 add


def test_add_rejects_non_broadcastable(rt):
    from sdsim.kernels.elementwise import add_host
    from sdsim.errors import SdsimError

    with pytest.raises(SdsimError, match="broadcast"):
        add_host(rt, np.zeros((2, 3), np.float32), np.zeros((2,), np.float32))


@settings(max_examples=15, deadline=None)
@given(precision=st.sampled_from(["fp32", "fp16"]), b=st.integers(1, 2), c=st.integers(1, 5),
       h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_data_movement_is_exact(rt, precision, b, c, h, w, seed):
    """upsample, concat (channels and last axis), both transposes: bit-exact copies."""
    from sdsim.errors import SdsimError
    from sdsim.kernels import elementwise as E

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    y = rng.standard_normal((b, c + 1, h, w)).astype(np.float32)
    xr, yr = rounded(x, precision), rounded(y, precision)
    up, _ = E.upsample_host(rt, x, precision=precision)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(xr, 2, axis=2), 2, axis=3))
    # cropped to an odd skip connection's size: the 2x image less its last row or column
    for oh, ow in ((2 * h - 1, 2 * w), (2 * h, 2 * w - 1), (2 * h - 1, 2 * w - 1)):
        buf, ev = E.upsample_nearest2x(rt, rt.to_device(x, precision), x.shape, size=(oh, ow),
                                       precision=precision)
        np.testing.assert_array_equal(rt.from_device(buf, (b, c, oh, ow), precision, wait_for=ev),
                                      np.repeat(np.repeat(xr, 2, axis=2), 2, axis=3)[..., :oh, :ow])
    with pytest.raises(SdsimError, match="twice the input, or one less"):
        E.upsample_nearest2x(rt, rt.to_device(x, precision), x.shape, size=(2 * h + 1, 2 * w))
    cat, _ = E.concat_host(rt, [x, y], 1, precision=precision)
    np.testing.assert_array_equal(cat, np.concatenate([xr, yr], 1))
    cat3, _ = E.concat_host(rt, [x, x, y[:, :c]], -1, precision=precision)
    np.testing.assert_array_equal(cat3, np.concatenate([xr, xr, yr[:, :c]], -1))
    nlc, _ = E.nchw_to_nlc_host(rt, x, precision=precision)
    np.testing.assert_array_equal(nlc, xr.reshape(b, c, h * w).transpose(0, 2, 1))
    back, _ = E.nlc_to_nchw_host(rt, nlc, h, w, precision=precision)
    np.testing.assert_array_equal(back, xr)


def test_transpose_sd14_shape(rt):
    """SD1.4 transformer input at 64x64: (2, 320, 64, 64) -> (2, 4096, 320)."""
    from sdsim.kernels import elementwise as E

    x = np.random.default_rng(1).standard_normal((2, 320, 64, 64)).astype(np.float32)
    nlc, _ = E.nchw_to_nlc_host(rt, x)
    np.testing.assert_array_equal(nlc, x.reshape(2, 320, -1).transpose(0, 2, 1))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_embedding_with_positions(rt, precision):
    """CLIP token + position embedding (gather then one rounded add)."""
    from sdsim.kernels.elementwise import embedding_host

    rng = np.random.default_rng(2)
    table = rng.standard_normal((50, 24)).astype(np.float32)
    pos = rng.standard_normal((7, 24)).astype(np.float32)
    ids = rng.integers(0, 50, (2, 7))
    out, _ = embedding_host(rt, ids, table, pos, precision=precision)
    tr, pr = rounded(table, precision), rounded(pos, precision)
    ref = np.asarray(tr[ids], np.float64) + pr
    u = U16 if precision == "fp16" else U32
    assert (np.abs(out - ref) <= u * np.abs(ref)).all()
    plain, _ = embedding_host(rt, ids, table, precision=precision)
    np.testing.assert_array_equal(plain, tr[ids])


def test_embedding_rejects_out_of_range_ids(rt):
    from sdsim.kernels.elementwise import embedding_host
    from sdsim.errors import SdsimError

    with pytest.raises(SdsimError, match="token ids"):
        embedding_host(rt, np.array([[0, 50]]), np.zeros((50, 4), np.float32))


@pytest.mark.parametrize("dim,flip,shift", [(320, True, 0.0), (7, False, 1.0), (2, True, 0.0)])
def test_timestep_embedding(rt, dim, flip, shift):
    """diffusers' sinusoid, written here in float64. The kernel, like the float32 reference,
    forms t * f in float32: an argument off by u32 * t (999 -> 6e-5) moves sin/cos by as much."""
    from sdsim.kernels.elementwise import timestep_embedding_host

    t = np.array([0.0, 1.0, 500.0, 999.0])
    out, _ = timestep_embedding_host(rt, t, dim, flip, shift)
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / (half - shift))
    args = t[:, None] * freqs
    sin, cos = np.sin(args), np.cos(args)
    ref = np.concatenate([cos, sin] if flip else [sin, cos], axis=1)
    ref = np.pad(ref, ((0, 0), (0, dim % 2)))
    assert np.abs(out - ref).max() <= 4 * U32 * 999 + 8 * U32

