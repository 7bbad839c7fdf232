"""Attention's native half arithmetic (opencl/attention.cl and gemm.cl's QK^T, P.V and softmax
prologue) on a device with cl_khr_fp16 (Intel's OpenCL CPU runtime on CI) against
sdsim.sim.attention's half-arithmetic simulations, bit for bit."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")

from conftest import needs_half  # noqa: E402
from sdsim.sim.half import HalfLibrary, exp16, library, ulps  # noqa: E402

VARIANTS = ("naive", "partial_softmax", "flash")


def _tunings():
    """Each FlashAttention body and both GEMM bodies, split K included (P.V's K is the keys)."""
    from sdsim.kernels import tuning
    gpu = tuning.DEFAULTS["gpu"]
    return {"cpu": tuning.DEFAULTS["cpu"], "gpu-unrolled": gpu,
            "gpu-looped": dataclasses.replace(gpu, flash_unroll=False, flash_rows=8),
            "gpu-split-k": dataclasses.replace(gpu, split_groups=100_000)}


def _device_and_sim(rt, variant, q, k, v, heads, causal):
    """(device output, simulated output) as float16 under the active tuning."""
    from sdsim.kernels import attention as attn

    got = attn.attention_host(rt, q, k, v, heads, causal=causal, variant=variant,
                              precision="fp16")[0]
    want = attn.simulate(variant, q, k, v, heads, causal, rt.arith)
    return got.astype(np.float16), want.astype(np.float16)


@needs_half
@settings(max_examples=25, deadline=None)
@given(variant=st.sampled_from(VARIANTS), build=st.sampled_from(sorted(_tunings())),
       b=st.integers(1, 2), heads=st.integers(1, 3), nq=st.integers(1, 40),
       nk=st.integers(1, 300), d=st.sampled_from([1, 8, 40, 64]), causal=st.booleans(),
       logits=st.sampled_from([1.0, 8.0]), small_v=st.booleans(), seed=st.integers(0, 2**31))
def test_attention_half_arithmetic_is_the_simulation_bit_for_bit(
        half_rt, half_library, variant, build, b, heads, nq, nk, d, causal, logits, small_v,
        seed):
    """Every variant and kernel body, causal or not: the device's output equals the
    simulation's bit for bit. Large logits spread the exponentials over many binades; small v
    puts P.V's products in half's subnormal range, and with fp16acc its accumulators, where
    Intel's half fma rounds through float (test_half_fma_of_a_subnormal_result), as both
    sdsim.sim.gemm and the flash simulation model. The simulation takes the device's half exp."""
    from sdsim.kernels import tuning

    if causal:
        nk = max(nq, nk)
    rng = np.random.default_rng(seed)
    c = heads * d
    q = (rng.standard_normal((b, nq, c)) * logits).astype(np.float16).astype(np.float32)
    k = rng.standard_normal((b, nk, c)).astype(np.float16).astype(np.float32)
    v = (rng.standard_normal((b, nk, c)) * (2.0 ** -12 if small_v else 1.0)
         ).astype(np.float16).astype(np.float32)
    with tuning.use(_tunings()[build]), library(half_library):
        got, want = _device_and_sim(half_rt, variant, q, k, v, heads, causal)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@needs_half
def test_half_exp_is_within_one_ulp_of_the_float_exp_rounded_to_half(half_library):
    """The device's half exp (softmax_normalize with max 0 and sum 1 stores exp_h(s)) is within
    one half ulp of float's exp rounded to half on every half, on every runtime (Intel's on an
    AMD EPYC host is that exactly, on an Intel Xeon host one ulp off on 17% of the finite
    halves); at s = 0x1F79 (0.0073) the float exp is the tie 1 + 7.5 * 2^-10 and rounds to
    even, 0x3C08, where the correctly rounded half is 0x3C07."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    table = half_library.exp
    assert ulps(table, exp16(halves)).max() <= 1
    assert exp16(halves[0x1F79]).view(np.uint16) == 0x3C08
    assert table[0x3C00] == np.float16(np.e) and table[0xFC00] == 0   # exp(1), exp(-inf)


def test_the_simulations_take_the_library_half_exp():
    """Inside library(HalfLibrary(exp=table)) every half exp of the simulations is the table's,
    outside it float's rounded. Two keys with scores 0 and -1 (head dim 1) and values 1 and 3:
    the output is (1 + 3 e) / (1 + e), e = exp(-1) (the kernels take exp(0) as 1); altering the
    table's exp(-1) to 1/4 moves every variant's output to that formula's; a table of the wrong
    size is refused."""
    from sdsim.errors import SdsimError
    from sdsim.sim import attention as sim

    table = exp16(np.arange(1 << 16, dtype=np.uint16).view(np.float16))
    table[np.float16(-1).view(np.uint16)] = np.float16(0.25)
    q, k = np.ones((1, 1, 1), np.float32), np.array([[[0.0], [-1.0]]], np.float32)
    v = np.array([[[1.0], [3.0]]], np.float32)

    def out(e):
        return (1 + 3 * e) / (1 + e)

    for variant, fn in sim.VARIANTS.items():
        kw = dict(body="cpu") if variant == "flash" else {}
        plain = float(fn(q, k, v, 1, arith="fp16", **kw)[0, 0, 0])
        with library(HalfLibrary(exp=table)):
            assert exp16(np.float16(-1)) == np.float16(0.25)
            moved = float(fn(q, k, v, 1, arith="fp16", **kw)[0, 0, 0])
        assert plain == pytest.approx(out(np.exp(-1)), rel=2e-3), variant
        assert moved == pytest.approx(out(0.25), rel=2e-3), variant
    assert exp16(np.float16(-1)) == np.float16(np.exp(-1))
    with pytest.raises(SdsimError, match="65536 float16"):
        HalfLibrary(exp=table[:10])


@needs_half
@pytest.mark.parametrize("variant", VARIANTS)
def test_uniform_attention_over_4096_keys(half_rt, variant):
    """q = 0: 4096 equal scores, every exponential 1 and v = 1, so the answer is 1. The row sum
    is float: 4096 exactly, each probability 2^-12 (a half sum of ones stalls at 2048, where
    half's spacing is 2, and would make every probability twice too large). "fp16" (float
    accumulators) gives 1 exactly; "fp16acc"'s half accumulators stall: P.V's at 0.5, where
    adding 2^-12 is a tie to even, flash's unnormalized one at 2048 over a float l of 4096."""
    from sdsim.kernels.attention import attention_host
    from sdsim.sim import attention as sim

    assert np.cumsum(np.ones(4096, np.float16), dtype=np.float16)[-1] == 2048
    q, kv = np.zeros((1, 1, 8), np.float32), np.ones((1, 4096, 8), np.float32)
    want = 1.0 if half_rt.arith == "fp16" else 0.5
    got = attention_host(half_rt, q, kv, kv, 1, variant=variant, precision="fp16")[0]
    assert (got == want).all()
    kw = dict(body="cpu") if variant == "flash" else {}
    assert (sim.VARIANTS[variant](q, kv, kv, 1, arith=half_rt.arith, **kw) == want).all()


def test_half_fma_of_a_subnormal_result():
    """FlashAttention's fp16acc P.V step: -0.04965 * -9.423e-5 + 3.868e-5 is exactly
    (727.5 - 2^-15) * 2^-24, a subnormal half; correctly rounded 727 * 2^-24, but Intel's runtime
    on an AMD EPYC host (the default library) rounds it to float32 first (the tie 727.5) and then
    to even, 728 * 2^-24; a library that rounds once (AVX512-FP16) gives 727. Normal results
    round once either way: 1840.5 + 4.6e-5 half ulps gives 1841, where float32 first would give
    1840."""
    from sdsim.sim.attention import _mac

    def mac(a, b, c):
        return _mac(*(np.float32(np.float16(x)) for x in (a, b, c)), "fp16acc")

    tie = (-0.049652099609375, -9.423494338989258e-05, 3.8683414459228516e-05)
    assert mac(*tie) == np.float32(728 * 2.0 ** -24)
    with library(HalfLibrary(fma_through_float=False)):
        assert mac(*tie) == np.float32(727 * 2.0 ** -24)
    for through in (True, False):
        with library(HalfLibrary(fma_through_float=through)):
            assert np.float16(mac(0.409423828125, 0.300537109375, 7.06640625)).view(
                np.uint16) == 0x4731


def test_the_fma_probe_triples_part_the_two_rules():
    """The half fma probe's operands: every triple's exact fma rounds to different halves
    through float32 and at once (worked in float64 here, not through fma16)."""
    from sdsim.cl.half_probe import _parting_triples

    a, b, c = _parting_triples(64, np.random.default_rng(1))
    ex = a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)
    assert (np.abs(ex) < 2.0 ** -14).all()
    assert (ex.astype(np.float32).astype(np.float16) != ex.astype(np.float16)).all()
