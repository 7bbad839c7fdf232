"""Each NumPy-backend op against independent float64 math (direct loops, scipy)."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import erf

from sdsim.backends import numpy_backend as nb
from sdsim.backends.numpy_backend import NumpyBackend
from sdsim.errors import SdsimError
from sdsim.model.module import Param

SET = settings(max_examples=12, deadline=None)


def rng(seed):
    return np.random.default_rng(seed)


def close(got, want, tol=2e-5):
    """float32 result vs float64 reference, relative to the reference's scale."""
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got.astype(np.float64), want, atol=tol * scale, rtol=0)


def conv_ref(x, w, b, stride, pad):
    t, bo, l, r = pad
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    n, c, h, wd = xp.shape
    o, _, k, _ = w.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("ncij,ocij->no", patch, w.astype(np.float64))
    return out + (0 if b is None else b[None, :, None, None])


@SET
@given(seed=st.integers(0, 2**16), k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       pad=st.sampled_from([0, 1, (0, 1, 0, 1)]), bias=st.booleans(),
       hw=st.tuples(st.integers(3, 9), st.integers(3, 9)), cin=st.integers(1, 5),
       cout=st.integers(1, 6))
def test_conv2d_matches_direct_float64(seed, k, stride, pad, bias, hw, cin, cout):
    r = rng(seed)
    x = r.standard_normal((2, cin, *hw), dtype=np.float32)
    w = r.standard_normal((cout, cin, k, k), dtype=np.float32)
    b = r.standard_normal(cout, dtype=np.float32) if bias else None
    got = NumpyBackend().conv2d(x, w, b, stride, pad)
    close(got, conv_ref(x, w, b, stride, nb.padding4(pad)))


@pytest.mark.parametrize("transposed", [False, True])
def test_conv2d_row_blocks_give_same_result(monkeypatch, transposed):
    r = rng(1)
    x = r.standard_normal((1, 3, 11, 7), dtype=np.float32)
    w = r.standard_normal((4, 3, 3, 3), dtype=np.float32)
    monkeypatch.setattr(nb, "WORKSPACE_BYTES", 4 * 27 * 7 * 3)  # 3 output rows per block
    monkeypatch.setattr(nb, "TRANSPOSED_GEMM_MIN_POSITIONS", 0 if transposed else 1 << 62)
    close(nb.conv2d_f32(x, w, None, 1, 1), conv_ref(x, w, None, 1, (1, 1, 1, 1)))


@SET
@given(seed=st.integers(0, 2**16), groups=st.sampled_from([1, 2, 4]), silu=st.booleans())
def test_group_norm_matches_float64(seed, groups, silu):
    r = rng(seed)
    x = (r.standard_normal((2, 8, 5, 3)) * 3 + 1).astype(np.float32)
    g = r.standard_normal(8).astype(np.float32)
    b = r.standard_normal(8).astype(np.float32)
    got = NumpyBackend().group_norm(x, groups, g, b, 1e-5, act="silu" if silu else None)
    x64 = x.astype(np.float64).reshape(2, groups, -1)
    y = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    y = y.reshape(x.shape) * g[None, :, None, None] + b[None, :, None, None]
    if silu:
        y = y / (1 + np.exp(-y))
    close(got, y)


def test_layer_norm_matches_float64():
    r = rng(2)
    x = (r.standard_normal((2, 5, 16)) * 4 - 2).astype(np.float32)
    g, b = r.standard_normal(16).astype(np.float32), r.standard_normal(16).astype(np.float32)
    got = NumpyBackend().layer_norm(x, g, b, 1e-5)
    x64 = x.astype(np.float64)
    y = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * g + b
    close(got, y)


def attention_ref(q, k, v, heads, causal):
    b, nq, c = q.shape
    d = c // heads
    q, k, v = (t.astype(np.float64).reshape(b, -1, heads, d).transpose(0, 2, 1, 3) for t in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(b, nq, c)


@SET
@given(seed=st.integers(0, 2**16), heads=st.sampled_from([1, 2, 4]), nq=st.integers(1, 40),
       nk=st.integers(1, 40), causal=st.booleans())
def test_attention_matches_float64(seed, heads, nq, nk, causal):
    if causal:
        nk = nq
    r = rng(seed)
    q = r.standard_normal((2, nq, 8 * heads), dtype=np.float32)
    k = r.standard_normal((2, nk, 8 * heads), dtype=np.float32)
    v = r.standard_normal((2, nk, 8 * heads), dtype=np.float32)
    close(NumpyBackend().attention(q, k, v, heads, causal), attention_ref(q, k, v, heads, causal))


@pytest.mark.parametrize("threaded", [False, True])
def test_attention_query_blocks_and_threads_give_same_result(monkeypatch, threaded):
    r = rng(3)
    q, k, v = (r.standard_normal((2, 23, 24), dtype=np.float32) for _ in range(3))
    monkeypatch.setattr(nb, "ATTENTION_BLOCK_BYTES", 4 * 23 * 5)  # 5 queries per block
    monkeypatch.setattr(nb, "THREADED_ATTENTION_WORK", 0 if threaded else 1 << 62)
    got = nb.attention_f32(q, k, v, 3, True)
    close(got, attention_ref(q, k, v, 3, True))
    monkeypatch.setattr(nb, "THREADED_ATTENTION_WORK", 1 << 62 if threaded else 0)
    assert np.array_equal(got, nb.attention_f32(q, k, v, 3, True))  # bit-identical either way


def test_activations_match_float64():
    x = np.linspace(-12, 12, 2 * 3 * 40, dtype=np.float32).reshape(2, 3, 40)
    x64 = x.astype(np.float64)
    F = NumpyBackend()
    gelu = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
    close(F.gelu(x), gelu)
    close(F.quick_gelu(x), x64 / (1 + np.exp(-1.702 * x64)))
    close(F.silu(x), x64 / (1 + np.exp(-x64)))
    h = x[..., :20]
    g64 = x64[..., 20:]
    close(F.geglu(x), h * 0.5 * g64 * (1 + erf(g64 / math.sqrt(2))))


def test_linear_and_shape_ops():
    r = rng(4)
    F = NumpyBackend()
    x = r.standard_normal((2, 3, 5), dtype=np.float32)
    w, b = r.standard_normal((7, 5), dtype=np.float32), r.standard_normal(7, dtype=np.float32)
    close(F.linear(x, w, b), np.einsum("bnk,ok->bno", x.astype(np.float64), w) + b)
    close(F.linear(x, w), np.einsum("bnk,ok->bno", x.astype(np.float64), w))
    img = r.standard_normal((2, 3, 4, 5), dtype=np.float32)
    up = F.upsample_nearest2x(img)
    assert up.shape == (2, 3, 8, 10)
    for i in range(8):
        for j in range(10):
            assert np.array_equal(up[:, :, i, j], img[:, :, i // 2, j // 2])
    # to an odd skip's size: nearest resizing by its definition (PyTorch's 'nearest'), source
    # row floor(i * h / oh)
    odd = F.upsample_nearest2x(img, (7, 10))
    assert odd.shape == (2, 3, 7, 10)
    for i in range(7):
        assert np.array_equal(odd[:, :, i], np.repeat(img[:, :, (i * 4) // 7], 2, axis=-1))
    with pytest.raises(SdsimError, match="4x5 to 6x10"):
        F.upsample_nearest2x(img, (6, 10))
    nlc = F.nchw_to_nlc(img)
    assert np.array_equal(nlc[1, 4 * 5 - 1], img[1, :, 3, 4])
    assert np.array_equal(F.nlc_to_nchw(nlc, 4, 5), img)
    assert np.array_equal(F.concat([img, img[:, :1]]), np.concatenate([img, img[:, :1]], 1))
    assert np.array_equal(F.add(img, img[:, :, :1, :1]), img + img[:, :, :1, :1])
    table = r.standard_normal((10, 4), dtype=np.float32)
    ids = np.array([[3, 0, 9]])
    assert np.array_equal(F.embedding(ids, table)[0, 2], table[9])
    pos = r.standard_normal((5, 4), dtype=np.float32)
    close(F.embedding(ids, table, pos)[0], table[[3, 0, 9]].astype(np.float64) + pos[:3])


@pytest.mark.parametrize("dim,flip,shift", [(320, True, 0), (8, False, 1), (7, True, 1)])
def test_timestep_embedding_matches_formula(dim, flip, shift):
    t = np.array([0, 1, 999, 500.5])
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / (half - shift))
    args = t[:, None] * freqs[None]
    sin, cos = np.sin(args), np.cos(args)
    want = np.concatenate([cos, sin] if flip else [sin, cos], axis=1)
    if dim % 2:
        want = np.pad(want, ((0, 0), (0, 1)))
    close(NumpyBackend().timestep_embedding(t, dim, flip, shift), want, tol=5e-4)


def test_params_resolved_by_name_and_checked():
    p = Param((2, 3))
    p.name = "a.weight"
    F = NumpyBackend({"a.weight": np.ones((3, 2), np.float32)})
    with pytest.raises(SdsimError, match="a.weight"):
        F.value(p)
    q = Param((4,))
    q.name = "missing.bias"
    with pytest.raises(SdsimError, match="missing.bias"):
        F.value(q)


def test_fp16_stores_half_and_names_first_overflow():
    F = NumpyBackend(precision="fp16")
    x = np.full((1, 4), 300.0, np.float32)
    w = np.full((2, 4), 100.0, np.float32)  # 4 * 300 * 100 = 120000 > fp16 max
    with F.scope("down_blocks.0.proj"):
        y = F.linear(x[None], np.ones((2, 4), np.float32))
        assert y.dtype == np.float16
        with pytest.warns(RuntimeWarning, match="linear in down_blocks.0.proj"):
            F.linear(x, w)
    assert F.first_nonfinite == ("linear", "down_blocks.0.proj")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.silu(np.full((3,), np.inf, np.float32))  # only the first one is reported
    strict = NumpyBackend(precision="fp16", strict=True)
    with pytest.raises(SdsimError, match="linear"):
        strict.linear(x, w)


def test_fp16_rounds_each_output():
    r = rng(5)
    x = r.standard_normal((1, 9, 16), dtype=np.float32)
    w = r.standard_normal((16, 16), dtype=np.float32)
    got = NumpyBackend(precision="fp16").linear(x, w)
    want = (x.astype(np.float16).astype(np.float64) @ w.astype(np.float16).astype(np.float64).T)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-3)
    assert np.array_equal(got, got.astype(np.float32).astype(np.float16))
