"""Native half arithmetic on a device with cl_khr_fp16 (Intel's OpenCL CPU runtime on CI) against
the NumPy simulation of each kernel's rounding points (sdsim/sim), bit for bit."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")

from conftest import needs_half  # noqa: E402
from sdsim.sim.half import library  # noqa: E402


def _tunings():
    from sdsim.kernels import tuning
    gpu = tuning.DEFAULTS["gpu"]
    return {"cpu-microkernel": tuning.DEFAULTS["cpu"], "local-memory": gpu,
            "local-memory-split-k": dataclasses.replace(gpu, split_groups=100_000)}


def _operands(rng, shape, spread):
    """Halves of both signs over `spread` binades below 1 (products that round, and with a wide
    spread products in half's subnormal range)."""
    x = rng.standard_normal(shape) * np.exp2(-rng.integers(0, spread + 1, shape))
    return x.astype(np.float16)


@needs_half
@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), m=st.integers(1, 70), k=st.integers(1, 300),
       n=st.integers(1, 70), bias_mode=st.sampled_from([0, 1, 2]),
       alpha=st.sampled_from([1.0, 0.125]), spread=st.sampled_from([0, 6, 14]),
       build=st.sampled_from(sorted(_tunings())), seed=st.integers(0, 2**31))
def test_gemm_half_arithmetic_is_the_simulation_bit_for_bit(half_rt, half_library, batch, m, k,
                                                           n, bias_mode, alpha, spread, build,
                                                           seed):
    """Both GEMM bodies, split K or not, transposed or not, with either bias: the device's
    C equals sdsim.sim.gemm's bit for bit, with the device's subnormal fma rule (no GELU: its
    erf differs by design, below)."""
    from sdsim.kernels import gemm as g
    from sdsim.kernels import tuning
    from sdsim.sim import gemm as sim

    rng = np.random.default_rng(seed)
    a, b = _operands(rng, (batch, m, k), spread), _operands(rng, (batch, k, n), spread)
    bias = _operands(rng, (n if bias_mode == 1 else m,), 0)
    with tuning.use(_tunings()[build]):
        kslice, k_step = g.k_walk(batch, m, k, n)
        c = half_rt.alloc(batch * m * n, "fp16", "c")
        evs = g.gemm(half_rt, half_rt.to_device(a, "fp16"), half_rt.to_device(b, "fp16"), c,
                     m, n, k, batch=batch, strides_a=(m * k, k, 1), strides_b=(k * n, n, 1),
                     strides_c=(m * n, n, 1), bias=half_rt.to_device(bias, "fp16") if bias_mode
                     else None, bias_mode=bias_mode, alpha=alpha, precision="fp16")
        got = half_rt.from_device(c, (batch, m, n), "fp16", wait_for=evs).astype(np.float16)
    with library(half_library):
        want = sim.gemm(a, b, arith=half_rt.arith, bias=bias, bias_mode=bias_mode, alpha=alpha,
                        kslice=kslice, k_step=k_step)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@needs_half
def test_gemm_gelu_epilogue_within_the_erf_difference(half_rt):
    """With the GELU epilogue the device's float erf and SciPy's (rounded to float32) may differ
    in float32's last bits: the stored half then moves by one ulp, and where v << 0 the
    cancellation in 1 + erf(v / sqrt 2) turns an erf difference of a few float32 ulps near -1
    into 0.5 |v| * 4 * 2^-24 absolute. Everything else matches bit for bit."""
    from sdsim.kernels.gemm import linear_host
    from sdsim.sim import gemm as sim

    rng = np.random.default_rng(1)
    x, w, bias = (_operands(rng, s, 4) for s in ((77, 96), (130, 96), (130,)))
    got = linear_host(half_rt, x, w, bias, gelu=True, precision="fp16")[0].astype(np.float64)
    kw = dict(arith=half_rt.arith, bias=bias, bias_mode=1)
    v = sim.gemm(x[None], w.T[None], **kw)[0].astype(np.float64)
    want = sim.gemm(x[None], w.T[None], act=1, **kw)[0]
    ulp = np.spacing(np.abs(want)).astype(np.float64)
    allowed = ulp + 0.5 * np.abs(v) * 4 * 2.0 ** -24
    err = np.abs(got - want)
    assert (err <= allowed).all(), f"worst excess {np.max(err - allowed)} at v = {v.flat[np.argmax(err - allowed)]}"
    assert (err == 0).mean() > 0.9


@needs_half
@pytest.mark.parametrize("build", ["cpu-microkernel", "local-memory"])
def test_gemm_sign_of_a_zero_sum(half_rt, build):
    """A single product that rounds to -0 in half: a float accumulator (from +0) makes it +0; a
    half accumulator keeps -0 in the micro-kernel, while the local-memory body's zero-padded K
    steps add +0 and store +0; device and simulation agree on the sign."""
    from sdsim.kernels import gemm as g
    from sdsim.kernels import tuning
    from sdsim.sim import gemm as sim

    a, b = np.full((1, 1, 1), -2.0 ** -12, np.float16), np.full((1, 1, 1), 2.0 ** -13, np.float16)
    with tuning.use(_tunings()[build]):
        _, k_step = g.k_walk(1, 1, 1, 1)
        c = half_rt.alloc(1, "fp16", "c")
        evs = g.gemm(half_rt, half_rt.to_device(a, "fp16"), half_rt.to_device(b, "fp16"), c,
                     1, 1, 1, strides_a=(1, 1, 1), strides_b=(1, 1, 1), strides_c=(1, 1, 1),
                     precision="fp16")
        got = half_rt.from_device(c, (1, 1, 1), "fp16", wait_for=evs).astype(np.float16)
    want = sim.gemm(a, b, arith=half_rt.arith, k_step=k_step)
    assert got.view(np.uint16)[0, 0, 0] == want.view(np.uint16)[0, 0, 0]
    assert np.signbit(want[0, 0, 0]) == (half_rt.arith == "fp16acc" and k_step is None)


def test_simulated_half_products_round_once():
    """The simulation's rounding points themselves, against hand-worked halves: 1 + 2^-11 is a
    tie that rounds to even (1.0); fp16 keeps the float accumulator, fp16acc rounds every step;
    300 * 300 overflows half."""
    from sdsim.sim import gemm as sim

    a = np.array([[[1.0, 2.0 ** -11, 2.0 ** -11]]], np.float16)   # (1, 1, 3)
    b = np.ones((1, 3, 1), np.float16)
    assert sim.gemm(a, b, arith="fp16")[0, 0, 0] == np.float16(1.0 + 2.0 ** -10)
    assert sim.gemm(a, b, arith="fp16acc")[0, 0, 0] == np.float16(1.0)
    big = np.array([[[300.0, 300.0]]], np.float16), np.array([[[300.0], [-300.0]]], np.float16)
    assert np.isinf(sim.gemm(big[0][:, :, :1], big[1][:, :1], arith="fp16acc")[0, 0, 0])
    # each product rounds to half (+inf, -inf) before the float sum: NaN, not float's exact 0
    assert np.isnan(sim.gemm(*big, arith="fp16")[0, 0, 0])
    assert sim.gemm(*big, arith="fp32")[0, 0, 0] == 0.0
