"""GroupNorm and LayerNorm with native half arithmetic (Intel's OpenCL CPU runtime on CI) against
sdsim.sim.norm: the float statistics in the kernels' order and the half normalize step with its
fused SiLU, bit for bit (the simulation takes the device's half exp)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")

from conftest import needs_half  # noqa: E402
from sdsim.sim.half import library  # noqa: E402

F16 = np.float16


def _halves(rng, shape, scale=3.0, offset=1.0):
    return (rng.standard_normal(shape) * scale + offset).astype(F16)


@needs_half
@settings(max_examples=25, deadline=None)
@given(variant=st.sampled_from(["naive", "fused"]), chunk=st.sampled_from([None, 1, 7, 300]),
       act=st.sampled_from([None, "silu"]), b=st.integers(1, 2),
       groups=st.sampled_from([1, 3, 32]), cpg=st.integers(1, 3), h=st.integers(1, 24),
       w=st.integers(1, 24), offset=st.sampled_from([0.0, 1.0, 300.0]),
       seed=st.integers(0, 2**31))
def test_group_norm_half_arithmetic_is_the_simulation(half_rt, half_library, variant, chunk, act, b,
                                                     groups, cpg, h, w, offset, seed):
    """The naive chain, the fused kernel and its split form (chunks shorter than a work-group,
    more chunks than lanes) with and without SiLU (a half exp: the device's), slices with a
    large common offset too."""
    from sdsim.kernels import norm
    from sdsim.sim import norm as sim

    rng = np.random.default_rng(seed)
    c = groups * cpg
    x = _halves(rng, (b, c, h, w), offset=offset)
    gamma, beta = _halves(rng, c, 1.0, 0.0), _halves(rng, c, 1.0, 0.0)
    with pytest.MonkeyPatch.context() as mp:
        if chunk:
            mp.setattr(norm, "CHUNK", chunk)
        got = norm.group_norm_host(half_rt, x, gamma, beta, groups, 1e-5, act=act,
                                   variant=variant, precision="fp16")[0].astype(F16)
        with library(half_library):
            want = sim.group_norm(x, gamma, beta, groups, 1e-5, act=act, variant=variant,
                                  arith=half_rt.arith)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@needs_half
@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 20), dim=st.integers(1, 800), offset=st.sampled_from([0.0, 50.0]),
       seed=st.integers(0, 2**31))
def test_layer_norm_half_arithmetic_is_the_simulation(half_rt, rows, dim, offset, seed):
    from sdsim.kernels.norm import layer_norm_host
    from sdsim.sim import norm as sim

    rng = np.random.default_rng(seed)
    x = _halves(rng, (rows, dim), 1.0, offset)
    gamma, beta = _halves(rng, dim, 1.0, 0.0), _halves(rng, dim, 1.0, 0.0)
    got = layer_norm_host(half_rt, x, gamma, beta, 1e-5, precision="fp16")[0].astype(F16)
    want = sim.layer_norm(x, gamma, beta, 1e-5, arith=half_rt.arith)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@needs_half
def test_float_statistics_replay_the_work_group_order(half_rt):
    """gn_mean's and gn_var's float tensors and gn_partial's float partial sums equal the
    simulation's bit for bit on halves over 28 binades, where float32 sums round at almost every
    step, so a sum taken in another order (one lane, in element order) differs."""
    from sdsim.kernels import norm
    from sdsim.sim import norm as sim

    rng = np.random.default_rng(3)
    slices, n, chunk = 6, 3000, 700
    x = (rng.standard_normal((slices, n)) * np.exp2(rng.integers(-14, 14, (slices, n)))).astype(F16)
    xs = x.astype(np.float32)
    xb = half_rt.to_device(x, "fp16")
    i32 = np.int32
    defs = {"WG": norm.WG, "ACT": 0}
    mean, var = (half_rt.alloc(slices, "fp32", s) for s in ("mean", "var"))
    splits = -(-n // chunk)
    parts = half_rt.alloc(slices * splits * 2, "fp32", "partials")
    launch = norm.group_launch(slices, n)
    evs = [launch.enqueue(half_rt, half_rt.kernel("norm", "gn_mean", "fp16", defs), xb, mean,
                          i32(n))]
    evs.append(launch.enqueue(half_rt, half_rt.kernel("norm", "gn_var", "fp16", defs), xb, mean,
                              var, i32(n), wait_for=evs))
    evs.append(norm.group_launch(slices * splits, chunk).enqueue(
        half_rt, half_rt.kernel("norm", "gn_partial", "fp16", defs), xb, parts, i32(n),
        i32(chunk), i32(splits), wait_for=evs))
    got = [half_rt.from_device(buf, shape, "fp32", wait_for=evs)
           for buf, shape in ((mean, (slices,)), (var, (slices,)), (parts, (slices, splits, 2)))]
    want = [*sim.naive_stats(xs, norm.WG), sim.partial_sums(xs, norm.WG, chunk)]
    for g, w_ in zip(got, want):
        np.testing.assert_array_equal(g.view(np.uint32), w_.astype(np.float32).view(np.uint32))
    assert (sim.naive_stats(xs, 1)[1] != want[1]).any()


def test_simulated_lanes_sum_in_the_kernel_order():
    """Hand-worked: 2^24 + 1 is a float32 tie that rounds to even (2^24). One lane adds
    2^24, 1, 1, 1 in order and keeps 2^24; two lanes hold 2^24 + 1 = 2^24 and 1 + 1 = 2, whose
    tree sum 2^24 + 2 is exact."""
    from sdsim.sim.norm import lane_sum

    t = np.array([2.0 ** 24, 1, 1, 1], np.float32)
    assert lane_sum(t, 1) == 2.0 ** 24
    assert lane_sum(t, 2) == 2.0 ** 24 + 2
    assert lane_sum(t, 8) == 2.0 ** 24 + 2   # lanes past the end hold 0


def _hand_cases(rt, x, gamma, beta, eps, act):
    """Every kernel's output for one (1, channels, 2) GroupNorm of one group, and LayerNorm of
    the row when there is one channel, as float16."""
    from sdsim.kernels.norm import group_norm_host, layer_norm_host

    out = [group_norm_host(rt, x, gamma, beta, 1, eps, act=act, variant=v,
                           precision="fp16")[0] for v in ("naive", "fused")]
    if act is None:
        out.append(layer_norm_host(rt, x[0], np.repeat(gamma, 2), np.repeat(beta, 2), eps,
                                   precision="fp16")[0][None])
    return [o.astype(F16) for o in out]


@needs_half
def test_rstd_rounds_to_half_before_the_affine(half_rt):
    """Hand-worked: x = (-1, 1) has mean 0 and variance 1 in every kernel's statistics; with
    eps 0.5, rstd = 1 / sqrt(1.5) = 0.8164966 rounds to half 0.81640625 = 1672 * 2^-11, and
    times gamma 1.7001953125 (half's 1.7) makes 1421.36 * 2^-10, which rounds to
    1.3876953125. Float arithmetic, rounding once at the store, gives 1422 * 2^-10."""
    from sdsim.sim import norm as sim

    x = np.array([[[-1.0, 1.0]]], F16)
    gamma, beta = np.array([1.7], F16), np.zeros(1, F16)
    want = np.array([[[-1.3876953125, 1.3876953125]]], F16)
    for v in ("naive", "fused"):
        np.testing.assert_array_equal(sim.group_norm(x, gamma, beta, 1, 0.5, variant=v), want)
    np.testing.assert_array_equal(sim.layer_norm(x[0], np.repeat(gamma, 2), np.repeat(beta, 2),
                                                 0.5), want[0])
    assert sim.group_norm(x, gamma, beta, 1, 0.5, arith="fp32")[0, 0, 1] == 1.388671875
    for got in _hand_cases(half_rt, x, gamma, beta, 0.5, None):
        np.testing.assert_array_equal(got, want)


@needs_half
def test_rstd_is_float_one_over_sqrt_then_half(half_rt):
    """Hand-worked: x = (-1, 1) with eps 0.25039172 (float32; var + eps = 1.2503917 exactly):
    1 / sqrt(1.2503917) is 1831.49993 * 2^-11; float32 sqrt, then divide, gives the half
    midpoint 1831.5 * 2^-11, which rounds to even 1832 * 2^-11 = 0.89453125. (Intel's rsqrt,
    vectorised over a wide NDRange, returns 1831.49988 * 2^-11 for it, which rounds to 1831: the
    kernels use 1 / sqrt, which the simulation can replay.)"""
    from sdsim.sim import norm as sim

    x = np.array([[[-1.0, 1.0]]], F16)
    gamma, beta, eps = np.ones(1, F16), np.zeros(1, F16), float(np.float32(0.25039172))
    want = np.array([[[-0.89453125, 0.89453125]]], F16)
    np.testing.assert_array_equal(sim.group_norm(x, gamma, beta, 1, eps), want)
    for got in _hand_cases(half_rt, x, gamma, beta, eps, None):
        np.testing.assert_array_equal(got, want)


@needs_half
def test_half_silu_of_a_large_negative_is_minus_zero(half_rt):
    """Hand-worked: gamma 0 and beta -12 make y = -12 everywhere; exp(12) = 162755 overflows
    half to inf, so the half SiLU is -12 / inf = -0, where float gives -7.37e-5 (a normal half)."""
    from sdsim.sim import norm as sim

    x = np.array([[[-1.0, 1.0]]], F16)
    gamma, beta = np.zeros(1, F16), np.array([-12.0], F16)
    for v in ("naive", "fused"):
        got = sim.group_norm(x, gamma, beta, 1, 1e-5, act="silu", variant=v)
        assert (got == 0).all() and np.signbit(got).all()
    assert sim.group_norm(x, gamma, beta, 1, 1e-5, act="silu", arith="fp32")[0, 0, 0] == \
        F16(-12 / (1 + np.exp(12)))
    for got in _hand_cases(half_rt, x, gamma, beta, 1e-5, "silu"):
        assert (got == 0).all() and np.signbit(got).all()
