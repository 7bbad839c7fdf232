"""Attention kernels (opencl/attention.cl): naive, partially fused softmax and FlashAttention
against float64 NumPy attention, written here independently of sdsim."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

U16 = 2.0 ** -11
U32 = 2.0 ** -24
VARIANTS = ("naive", "partial_softmax", "flash")


def ref64(q, k, v, heads, causal):
    """Per-head loops in float64 with a max-subtracted softmax."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, nq, c = q.shape
    d = c // heads
    out = np.zeros_like(q)
    for bi in range(b):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            s = q[bi, :, sl] @ k[bi, :, sl].T / math.sqrt(d)
            if causal:
                s[np.triu_indices(nq, 1, s.shape[1])] = -np.inf
            p = np.exp(s - s.max(1, keepdims=True))
            out[bi, :, sl] = (p / p.sum(1, keepdims=True)) @ v[bi, :, sl]
    return out


def bound(q, k, v, heads, precision, nk):
    """Error bound. A logit perturbation of size e moves a softmax-weighted average of v rows by
    at most 2 e max|v|. Logits carry float32 dot-product error (d+4) u32 max(|q|.|k|)/sqrt(d),
    the P.V sum (nk+2) u32 max|v|. fp16 adds the stored scores (u16 max|s|, naive/partial), the
    stored probabilities (u16 max|v|, naive) and the stored output (u16 max|v|)."""
    d = q.shape[-1] // heads
    q64, k64 = np.asarray(q, np.float64), np.asarray(k, np.float64)
    absdot = smax = 0.0
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qa, ka = q64[..., sl], k64[..., sl]
        absdot = max(absdot, float((np.abs(qa) @ np.abs(ka).transpose(0, 2, 1)).max()))
        smax = max(smax, float(np.abs(qa @ ka.transpose(0, 2, 1)).max()))
    absdot, smax = absdot / math.sqrt(d), smax / math.sqrt(d)
    vmax = float(np.abs(v).max()) if v.size else 0.0
    e = 2 * (d + 4) * U32 * absdot * vmax + (nk + 2) * U32 * vmax
    if precision == "fp16":
        e += 2 * U16 * smax * vmax + U16 * vmax + U16 * vmax
    return 1.5 * e + 1e-6


def rounded(a, precision):
    return a.astype(np.float16).astype(np.float32) if precision == "fp16" else a


def check(rt, variant, precision, b, heads, nq, nk, d, causal, seed, scale=1.0):
    from sdsim.kernels.attention import attention_host

    rng = np.random.default_rng(seed)
    c = heads * d
    q = (rng.standard_normal((b, nq, c)) * scale).astype(np.float32)
    k = rng.standard_normal((b, nk, c)).astype(np.float32)
    v = rng.standard_normal((b, nk, c)).astype(np.float32)
    out, _ = attention_host(rt, q, k, v, heads, causal=causal, variant=variant,
                            precision=precision)
    qr, kr, vr = (rounded(a, precision) for a in (q, k, v))
    ref = ref64(qr, kr, vr, heads, causal)
    assert out.shape == ref.shape
    err = float(np.abs(out - ref).max())
    assert np.isfinite(out).all()
    assert err <= bound(qr, kr, vr, heads, precision, nk), (variant, precision, err)


@settings(max_examples=30, deadline=None)
@given(variant=st.sampled_from(VARIANTS), precision=st.sampled_from(["fp32", "fp16"]),
       b=st.integers(1, 2), heads=st.integers(1, 3), nq=st.integers(1, 70),
       nk=st.integers(1, 70), d=st.sampled_from([1, 8, 40, 64, 80, 160]), causal=st.booleans(),
       seed=st.integers(0, 2**31))
def test_attention_matches_float64(rt, variant, precision, b, heads, nq, nk, d, causal, seed):
    if causal:
        nk = max(nq, nk)     # the causal mask (key j visible to query i iff j <= i) needs nq <= nk
    check(rt, variant, precision, b, heads, nq, nk, d, causal, seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_large_logits_fp32_use_max_subtraction(rt, variant):
    """Logits of order 1e4: exp without max-subtraction overflows to inf and the result is NaN."""
    from sdsim.kernels.attention import attention_host

    rng = np.random.default_rng(1)
    q = (rng.standard_normal((1, 33, 40)) * 1000).astype(np.float32)
    k = (rng.standard_normal((1, 50, 40)) * 3).astype(np.float32)
    v = rng.standard_normal((1, 50, 40)).astype(np.float32)
    assert np.abs(ref_s := q[0] @ k[0].T / math.sqrt(40)).max() > 5e3, ref_s.max()
    out, _ = attention_host(rt, q, k, v, 1, variant=variant, precision="fp32")
    assert np.isfinite(out).all()
    ref = ref64(q, k, v, 1, False)
    assert np.abs(out - ref).max() <= bound(q, k, v, 1, "fp32", 50)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_clip_causal_and_vae_head_dims(rt, variant, precision):
    """CLIP's causal self-attention (12 heads of 64, 77 tokens) and the VAE mid-block's single
    head of 512 channels (at a reduced 10x10 latent)."""
    check(rt, variant, precision, 1, 12, 77, 77, 64, True, 3)
    check(rt, variant, precision, 1, 1, 100, 100, 512, False, 4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sd14_cross_attention_shape(rt, variant):
    """SD1.4 cross-attention at 64x64: 8 heads of 40, 4096 queries onto 77 text tokens."""
    check(rt, variant, "fp16", 1, 8, 4096, 77, 40, False, 5)


def test_sd14_self_attention_flash_4096(rt):
    """SD1.4 self-attention at 64x64 (4096 x 4096, d=40), one head, FlashAttention: the length
    the naive variant would need a 64 MiB score matrix per head for."""
    check(rt, "flash", "fp32", 1, 1, 4096, 4096, 40, False, 6)


def test_errors_name_the_problem(rt):
    from sdsim.kernels.attention import attention_host
    from sdsim.errors import SdsimError

    x = np.zeros((1, 4, 6), np.float32)
    with pytest.raises(SdsimError, match="heads"):
        attention_host(rt, x, x, x, 4)
    with pytest.raises(SdsimError, match="causal"):
        attention_host(rt, x, x[:, :2], x[:, :2], 2, causal=True)
    with pytest.raises(SdsimError, match="variant"):
        attention_host(rt, x, x, x, 2, variant="bogus")

