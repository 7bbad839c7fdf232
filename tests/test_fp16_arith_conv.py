"""Native half arithmetic of the convolutions (opencl/conv.cl: conv_direct, the Winograd
transforms, and whole Winograd convs through gemm.cl) on a device with cl_khr_fp16 against
sdsim.sim.conv and sdsim.sim.winograd, bit for bit."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.kernels.winograd_transforms import matrices
from sdsim.sim import conv as sim_conv
from sdsim.sim import winograd as sim_wino
from sdsim.sim.half import library

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")

from conftest import needs_half  # noqa: E402

#: a half whose products with F6's 21/4 round: 21/4 * (1 + 2^-10) rounds to 5.25 + 2^-8 in half
X_F6 = 1 + 2.0 ** -10


def _tunings():
    from sdsim.kernels import tuning
    gpu = tuning.DEFAULTS["gpu"]
    return {"cpu-microkernel": tuning.DEFAULTS["cpu"], "local-memory": gpu,
            "local-memory-split-k": dataclasses.replace(gpu, split_groups=100_000)}


def _halves(rng, shape, spread, scale=1.0):
    """Halves of both signs over `spread` binades below `scale` (products that round, and with
    a wide spread products in half's subnormal range)."""
    x = rng.standard_normal(shape) * np.exp2(-rng.integers(0, spread + 1, shape)) * scale
    return x.astype(np.float16)


def _same(got, want):
    np.testing.assert_array_equal(np.asarray(got, np.float16).view(np.uint16),
                                  np.asarray(want, np.float16).view(np.uint16))


@needs_half
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), cin=st.integers(1, 24), cout=st.integers(1, 20),
       h=st.integers(1, 14), w=st.integers(1, 14), k=st.sampled_from([1, 3]),
       stride=st.sampled_from([1, 2]),
       padding=st.one_of(st.integers(0, 2), st.tuples(*[st.integers(0, 2)] * 4)),
       bias=st.booleans(), spread=st.sampled_from([0, 6, 14]), seed=st.integers(0, 2**31))
def test_direct_conv_is_the_simulation_bit_for_bit(half_rt, half_library, n, cin, cout, h, w, k,
                                                   stride, padding, bias, spread, seed):
    """Every blocking (4, 8, 16 output channels per work-item; CB = 16, 8, 4 staged channels,
    cin not a multiple of them), strides, asymmetric padding, with and without bias. Kernel
    sizes 1 and 3 only: the fully unrolled half build of a 5x5 takes Intel's compiler 20-40 s."""
    from sdsim.kernels.conv import conv2d_host
    t, bo, l, r = (padding,) * 4 if isinstance(padding, int) else padding
    if h + t + bo < k or w + l + r < k:
        return
    rng = np.random.default_rng(seed)
    x = _halves(rng, (n, cin, h, w), spread)
    wt = _halves(rng, (cout, cin, k, k), spread, 1 / np.sqrt(cin * k * k))
    b = _halves(rng, (cout,), 0) if bias else None
    got, _ = conv2d_host(half_rt, x, wt, b, stride, padding, variant="direct", precision="fp16")
    with library(half_library):
        _same(got, sim_conv.conv_direct(x, wt, b, stride, padding, arith=half_rt.arith))


@needs_half
@settings(max_examples=25, deadline=None)
@given(m=st.sampled_from([2, 4, 6]), n=st.integers(1, 2), cin=st.integers(1, 16),
       cout=st.integers(1, 16), h=st.integers(1, 20), w=st.integers(1, 20),
       bias=st.booleans(), spread=st.sampled_from([0, 6]),
       build=st.sampled_from(sorted(_tunings())), seed=st.integers(0, 2**31))
def test_winograd_conv_is_the_simulation_bit_for_bit(half_rt, half_library, m, n, cin, cout, h,
                                                     w, bias, spread, build, seed):
    """The whole F(m x m, 3x3) conv: weight transform, input transform, batched GEMM (either
    GEMM body, split K or not, as sdsim.kernels.gemm.k_walk says it walks the channels) and
    output transform."""
    from sdsim.kernels import gemm as g
    from sdsim.kernels import tuning
    from sdsim.kernels.conv import conv2d_host
    rng = np.random.default_rng(seed)
    x = _halves(rng, (n, cin, h, w), spread)
    wt = _halves(rng, (cout, cin, 3, 3), spread, 1 / np.sqrt(cin * 9))
    b = _halves(rng, (cout,), 0) if bias else None
    tiles = n * -(-h // m) * -(-w // m)
    with tuning.use(_tunings()[build]):
        kslice, k_step = g.k_walk((m + 2) ** 2, cout, cin, tiles)
        got, _ = conv2d_host(half_rt, x, wt, b, variant=f"winograd_f{m}", precision="fp16")
    with library(half_library):
        want = sim_wino.conv3x3(x, wt, b, m, "fp16", arith=half_rt.arith, kslice=kslice,
                                k_step=k_step)
    _same(got, want)


@needs_half
@settings(max_examples=20, deadline=None)
@given(m=st.sampled_from([2, 4, 6]), n=st.integers(1, 2), c=st.integers(1, 6),
       k=st.integers(1, 6), h=st.integers(1, 15), w=st.integers(1, 15), bias=st.booleans(),
       spread=st.sampled_from([0, 6, 14]), seed=st.integers(0, 2**31))
def test_each_winograd_transform_is_the_simulation_bit_for_bit(half_rt, m, n, c, k, h, w, bias,
                                                               spread, seed):
    """wino_weight (float, one rounding), wino_input and wino_output (half arithmetic) alone;
    the output transform from arbitrary halves M, not only a GEMM's."""
    from sdsim.kernels.conv import winograd_input, winograd_output, winograd_weights
    rt, a = half_rt, m + 2
    th, tw = -(-h // m), -(-w // m)
    rng = np.random.default_rng(seed)
    x = _halves(rng, (n, c, h, w), spread)
    wt = _halves(rng, (k, c, 3, 3), spread)
    mm = _halves(rng, (a, a, k, n, th, tw), spread)
    b = _halves(rng, (k,), 0) if bias else None

    u, evs = winograd_weights(rt, rt.to_device(wt, "fp16"), k, c, m, "fp16")
    _same(rt.from_device(u, (a, a, k, c), "fp16", wait_for=evs), sim_wino.weight_transform(wt, m))

    v, ev = winograd_input(rt, rt.to_device(x, "fp16"), n, c, h, w, m, "fp16")
    _same(rt.from_device(v, (a, a, c, n, th, tw), "fp16", wait_for=[ev]),
          sim_wino.input_transform(x, m, arith=rt.arith))

    y = rt.alloc(n * k * h * w, "fp16", "y")
    ev = winograd_output(rt, rt.to_device(mm, "fp16"),
                         rt.to_device(b, "fp16") if bias else None, y, n, k, h, w, m, "fp16")
    _same(rt.from_device(y, (n, k, h, w), "fp16", wait_for=[ev]),
          sim_wino.output_transform(mm, b, m, h, w, arith=rt.arith))


# Hand-worked rounding points. Direct conv, 1x1 kernel of ones over 4 channels: even and odd
# channels are two chains, summed at the end. [1, u, u, 0] (u = 2^-11, half an ulp of 1): a
# float chain keeps 1 + u and the sum is 1 + 2u; a half chain rounds 1 + u to 1 (ties to even),
# then 1 + u again to 1. [1, u, 0, u]: the odd chain is 2u, so both give 1 + 2u, where one
# sequential half chain would give 1.
U = 2.0 ** -11
DIRECT_CASES = [([1, U, U, 0], {"fp32": 1 + 2 * U, "fp16": 1 + 2 * U, "fp16acc": 1.0}),
                ([1, U, 0, U], {"fp32": 1 + 2 * U, "fp16": 1 + 2 * U, "fp16acc": 1 + 2 * U})]
# F6 input transform of one 6x6 tile holding X_F6 at (1, 1) (the window's (2, 2)):
# V[0][0] = B^T[0][2]^2 X_F6 = (21/4)^2 (1 + 2^-10) = 27.589..., 27.59375 rounded once (float
# arithmetic); in half arithmetic (both builds: one product per step) 21/4 * X_F6 rounds to
# 5.25390625, then * 21/4 = 27.583... rounds to 27.578125, an ulp (2^-6) lower.
F6_V00_FLOAT, F6_V00_HALF = 27.59375, 27.578125


def _direct_case(xs):
    return (np.array(xs, np.float16).reshape(1, 4, 1, 1), np.ones((1, 4, 1, 1), np.float16))


def _f6_tile():
    x = np.zeros((1, 1, 6, 6), np.float16)
    x[0, 0, 1, 1] = X_F6
    return x


@pytest.mark.parametrize("arith", ["fp32", "fp16", "fp16acc"])
def test_simulation_rounds_at_the_hand_worked_points(arith):
    for xs, want in DIRECT_CASES:
        x, w = _direct_case(xs)
        assert sim_conv.conv_direct(x, w, None, 1, 0, arith=arith)[0, 0, 0, 0] == want[arith]
    if arith != "fp32":
        v = sim_wino.input_transform(_f6_tile(), 6, arith=arith)
        assert v[0, 0, 0, 0, 0, 0] == F6_V00_HALF
    assert np.float16(5.25 * 5.25 * X_F6) == F6_V00_FLOAT


@needs_half
def test_device_rounds_at_the_hand_worked_points(half_rt):
    from sdsim.kernels.conv import conv2d_host, winograd_input
    for xs, want in DIRECT_CASES:
        x, w = _direct_case(xs)
        got, _ = conv2d_host(half_rt, x, w, None, 1, 0, variant="direct", precision="fp16")
        assert got[0, 0, 0, 0] == want[half_rt.arith]
    v, ev = winograd_input(half_rt, half_rt.to_device(_f6_tile(), "fp16"), 1, 1, 6, 6, 6, "fp16")
    assert half_rt.from_device(v, (64,), "fp16", wait_for=[ev])[0] == F6_V00_HALF


@pytest.mark.parametrize("m", [2, 4, 6])
def test_transform_constants_the_half_builds_use_are_exact_in_half(m):
    """B^T and A^T enter half multiplies: each entry converts to half exactly. G (float in every
    build) has entries half cannot hold from F4 on (1/6, 2/45, ...)."""
    at, g, bt = matrices(m, np.float32)
    for t in (at, bt):
        np.testing.assert_array_equal(t.astype(np.float16).astype(np.float32), t)
    assert (g.astype(np.float16).astype(np.float32) != g).any() == (m > 2)
