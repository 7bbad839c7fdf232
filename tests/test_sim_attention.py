"""Attention numerics simulations (sdsim/sim/attention.py) against float64 attention written
here, the fp16 error ordering they exist to show, and agreement with the OpenCL kernels."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.sim import attention as sim

U16 = 2.0 ** -11
U32 = 2.0 ** -24


def ref64(q, k, v, heads, causal=False):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, nq, c = q.shape
    d = c // heads
    split = lambda x: x.reshape(b, -1, heads, d).transpose(0, 2, 1, 3)
    s = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    o = (p / p.sum(-1, keepdims=True)) @ split(v)
    return o.transpose(0, 2, 1, 3).reshape(b, nq, c)


def inputs(seed, b, heads, nq, nk, d, scale=1.0):
    rng = np.random.default_rng(seed)
    c = heads * d
    return ((rng.standard_normal((b, nq, c)) * scale).astype(np.float32),
            rng.standard_normal((b, nk, c)).astype(np.float32),
            rng.standard_normal((b, nk, c)).astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(variant=st.sampled_from(sorted(sim.VARIANTS)), precision=st.sampled_from(["fp32", "fp16"]),
       heads=st.integers(1, 3), nq=st.integers(1, 80), nk=st.integers(1, 80),
       d=st.sampled_from([1, 8, 40, 80]), causal=st.booleans(), seed=st.integers(0, 2**31))
def test_simulations_match_float64(variant, precision, heads, nq, nk, d, causal, seed):
    """Bound as in test_cl_attention: logit errors (float32 dots, fp16-stored scores) move the
    output by at most 2 e max|v|; fp16 adds the stored probabilities and output (u16 max|v| each)."""
    if causal:
        nk = max(nq, nk)
    q, k, v = inputs(seed, 1, heads, nq, nk, d)
    if precision == "fp16":
        q, k, v = (a.astype(np.float16).astype(np.float32) for a in (q, k, v))
    out = sim.VARIANTS[variant](q, k, v, heads, causal=causal, precision=precision)
    ref = ref64(q, k, v, heads, causal)
    smax = float(np.abs(q).max() * np.abs(k).max() * d / math.sqrt(d))
    vmax = float(np.abs(v).max())
    e = 2 * (d + 4) * U32 * smax * vmax + (nk + 2) * U32 * vmax
    if precision == "fp16":
        e += 2 * U16 * float(np.abs(ref_logits(q, k, heads)).max()) * vmax + 2 * U16 * vmax
    assert np.abs(out - ref).max() <= 1.5 * e + 1e-6


def ref_logits(q, k, heads):
    b, nq, c = q.shape
    d = c // heads
    split = lambda x: np.asarray(x, np.float64).reshape(b, -1, heads, d).transpose(0, 2, 1, 3)
    return split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(d)


@pytest.mark.parametrize("bk", [1, 7, 32, 100])
def test_flash_key_tile_does_not_change_fp32_result(bk):
    """The online softmax is exact algebra: any key tile gives the float64 answer to float32
    rounding, with logits of order 1e4 (the max-subtraction must hold)."""
    q, k, v = inputs(3, 1, 2, 50, 90, 40, scale=1000.0)
    out = sim.flash(q, k, v, 2, precision="fp32", bk=bk)
    assert np.isfinite(out).all()
    assert np.abs(out - ref64(q, k, v, 2)).max() < 2e-3


def test_fp16_error_ordering():
    """What the simulation is for: with fp16 storage, rounding the stored score matrix (naive and
    partial softmax) costs accuracy that FlashAttention, keeping scores in float32 registers,
    does not; and float16 accumulators (a native-half flash) are worse than float32 ones."""
    for seed in range(3):
        q, k, v = inputs(seed, 1, 2, 256, 256, 40, scale=3.0)
        q, k, v = (a.astype(np.float16).astype(np.float32) for a in (q, k, v))
        ref = ref64(q, k, v, 2)
        err = {n: np.abs(f(q, k, v, 2, precision="fp16") - ref).max()
               for n, f in sim.VARIANTS.items()}
        half_acc = np.abs(sim.flash(q, k, v, 2, precision="fp16", acc="fp16") - ref).max()
        assert err["flash"] < err["partial_softmax"]
        assert err["flash"] < err["naive"]
        assert err["flash"] < half_acc


def test_error_table_rows():
    rows = sim.fp16_error_table(seqs=(16, 40), head_dim=8, heads=1)
    assert [r["seq"] for r in rows] == [16, 40]
    assert all(0 < r["flash"] < 1e-2 and 0 < r["naive"] < 1e-1 for r in rows)


@pytest.mark.opencl
@pytest.mark.parametrize("variant", sorted(sim.VARIANTS))
def test_kernels_round_where_the_simulation_rounds(variant):
    """fp16 kernels and their simulations differ only by float32 summation order, so each flash
    and partial-softmax output agrees to within one fp16 ulp; naive stores S and P, where a
    score that rounds the other way moves whole rows, so it gets 2 u16 of max|out|."""
    from sdsim.kernels.attention import attention_host
    from sdsim.cl.runtime import Runtime

    rt = Runtime(arith="fp32")   # float arithmetic, as the simulation's
    q, k, v = inputs(9, 2, 2, 45, 70, 40, scale=2.0)
    out, _ = attention_host(rt, q, k, v, 2, variant=variant, precision="fp16")
    s = sim.VARIANTS[variant](q, k, v, 2, precision="fp16")
    if variant == "naive":
        assert np.abs(out - s).max() <= 2 * U16 * np.abs(s).max()
    else:
        ulp = np.spacing(np.abs(s).astype(np.float16)).astype(np.float32)
        assert (np.abs(out - s) <= ulp + 1e-6).all()


@settings(max_examples=20, deadline=None)
@given(variant=st.sampled_from(sorted(sim.VARIANTS)), arith=st.sampled_from(["fp16", "fp16acc"]),
       heads=st.integers(1, 2), nq=st.integers(1, 40), nk=st.integers(1, 80),
       d=st.sampled_from([1, 8, 40]), causal=st.booleans(), seed=st.integers(0, 2**31))
def test_half_arithmetic_simulations_match_float64(variant, arith, heads, nq, nk, d, causal,
                                                   seed):
    """The half-arithmetic simulations within the fp16-storage bound plus what half arithmetic
    adds: half products in each score (u16 of |q|.|k| each), e = exp_h(fp16(s - max)) (u16
    relative, and u16 |s - max| in the exponent: p |s - max| <= 1/e), half P.V products (u16
    max|v|); fp16acc's half accumulators another u16 of the running sum per term (d for a
    score, nk for P.V, whose sums stay within max|v|, or l max|v| unnormalized in flash)."""
    if causal:
        nk = max(nq, nk)
    q, k, v = (a.astype(np.float16).astype(np.float32) for a in inputs(seed, 1, heads, nq, nk, d))
    kw = dict(body="cpu", bk=8) if variant == "flash" else {}
    out = sim.VARIANTS[variant](q, k, v, heads, causal=causal, arith=arith, **kw)
    ref = ref64(q, k, v, heads, causal)
    absdot = float(np.abs(q).max() * np.abs(k).max() * d / math.sqrt(d))
    vmax = float(np.abs(v).max())
    logit = 2 * U16 * absdot * (d if arith == "fp16acc" else 1)
    e = 2 * (d + 4) * U32 * absdot * vmax + (nk + 2) * U32 * vmax
    e += 2 * (U16 * float(np.abs(ref_logits(q, k, heads)).max()) + logit) * vmax
    e += (2 + 2 + 1) * U16 * vmax + (nk * U16 * vmax if arith == "fp16acc" else 0)
    assert np.abs(out - ref).max() <= 1.5 * e + 1e-6


def test_half_arithmetic_needs_fp16_storage():
    from sdsim.errors import SdsimError

    q = np.zeros((1, 2, 8), np.float32)
    with pytest.raises(SdsimError, match="fp16 storage"):
        sim.naive(q, q, q, 1, precision="fp32", arith="fp16")
    with pytest.raises(SdsimError, match="body"):
        sim.flash(q, q, q, 1, arith="fp16", body="npu")
