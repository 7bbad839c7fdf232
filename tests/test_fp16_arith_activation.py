"""Native half arithmetic of the activation and elementwise kernels (opencl/gelu.cl,
opencl/elementwise.cl) on a device with cl_khr_fp16 (Intel's OpenCL CPU runtime on CI) against
sdsim.sim.activation, on every finite half where the op has one input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")

from conftest import needs_half

H = np.float16
#: every finite half
_ALL = np.arange(65536, dtype=np.uint16).view(H)
HALVES = _ALL[np.isfinite(_ALL)]


def ulps(got, want):
    """Distance of each pair of halves along the ordered half line (equal values and NaNs 0)."""
    def line(x):
        i = np.asarray(x, H).view(np.int16).astype(np.int64)
        return np.where(i < 0, -32768 - i, i)
    same = (np.asarray(got) == np.asarray(want)) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0, np.abs(line(got) - line(want)))


def assert_within_the_exp_difference(got, want):
    """Bit for bit but where the device's float exp (not correctly rounded for ~3% of arguments)
    and NumPy's float64 exp rounded to float32 land on either side of a half rounding: one half
    ulp, on at most 8 inputs (the half build on Intel's runtime: none for GELU and SiLU,
    x = -0.0001872 for quick_gelu)."""
    d = ulps(got, want)
    assert d.max() <= 1, f"{int((d > 1).sum())} outputs more than 1 ulp off, worst {d.max()}"
    assert (d > 0).sum() <= 8, f"{int((d > 0).sum())} outputs differ"


@needs_half
@pytest.mark.parametrize("kind", ["gelu", "quick_gelu", "silu"])
def test_activation_of_every_half_is_the_simulation(half_rt, kind):
    from sdsim.kernels.elementwise import activation_host
    from sdsim.sim import activation as sim

    got = activation_host(half_rt, HALVES, kind, precision="fp16")[0].astype(H)
    assert_within_the_exp_difference(got, sim.ACTIVATIONS[kind](HALVES, half_rt.arith))


@needs_half
@pytest.mark.parametrize("variant", ["standalone", "geglu_fused"])
def test_geglu_of_every_half_gate_is_the_simulation(half_rt, variant):
    """Every finite half as a gate, rows of 61 columns (seven 8-wide vectors and a scalar tail of
    5), random hidden halves: both variants store the simulation's hidden * gelu(gate)."""
    from sdsim.kernels.gelu import geglu_host
    from sdsim.sim import activation as sim

    dim = 61
    gate = np.resize(HALVES, (-(-HALVES.size // dim), dim))
    hidden = np.random.default_rng(0).standard_normal(gate.shape).astype(H)
    x = np.concatenate([hidden, gate], axis=1)
    got = geglu_host(half_rt, x, variant=variant, precision="fp16")[0].astype(H)
    assert_within_the_exp_difference(got, sim.geglu(x, half_rt.arith,
                                                    two_pass=variant == "standalone"))


def test_float_build_within_one_ulp_of_its_simulation(rt):
    """At fp16 storage on each platform, in its arithmetic (float on PoCL, which has no half):
    the float build's activations and GEGLU on every finite half. The simulation's float32 is the
    kernel as written, which the compiler may contract to FMA: one half ulp, on a few inputs."""
    from sdsim.kernels.elementwise import activation_host
    from sdsim.kernels.gelu import geglu_host
    from sdsim.sim import activation as sim

    arith = rt.arith_for("fp16")
    for kind, fn in sim.ACTIVATIONS.items():
        got = activation_host(rt, HALVES, kind, precision="fp16")[0].astype(H)
        assert_within_the_exp_difference(got, fn(HALVES, arith))
    gate = np.resize(HALVES, (-(-HALVES.size // 61), 61))
    x = np.concatenate([np.random.default_rng(1).standard_normal(gate.shape).astype(H), gate], 1)
    got = geglu_host(rt, x, precision="fp16")[0].astype(H)
    assert_within_the_exp_difference(got, sim.geglu(x, arith))


def _halves(rng, shape, spread):
    """Halves of both signs over `spread` binades around 1 (sums that round, overflow and reach
    the subnormals)."""
    scale = np.exp2(rng.integers(-spread, spread + 1, shape))
    return (rng.standard_normal(shape) * scale).astype(H)


@needs_half
@settings(max_examples=20, deadline=None)
@given(a_shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), keep=st.integers(0, 4),
       spread=st.sampled_from([0, 14]), seed=st.integers(0, 2**31))
def test_add_and_embedding_are_the_half_sum(half_rt, a_shape, keep, spread, seed):
    """Broadcast add and the embedding's token + position: the half sum, bit for bit."""
    from sdsim.kernels.elementwise import add_host, embedding_host
    from sdsim.sim import activation as sim

    rng = np.random.default_rng(seed)
    b_shape = [d if rng.integers(2) else 1 for d in a_shape[max(0, len(a_shape) - keep):]]
    a, b = _halves(rng, a_shape, spread), _halves(rng, b_shape, spread)
    got = add_host(half_rt, a, b, precision="fp16")[0].astype(H)
    np.testing.assert_array_equal(got.view(np.uint16), sim.add(a, b, half_rt.arith).view(np.uint16))
    table, pos = _halves(rng, (9, 12), spread), _halves(rng, (5, 12), spread)
    ids = rng.integers(0, 9, (2, 5))
    got = embedding_host(half_rt, ids, table, pos, precision="fp16")[0].astype(H)
    want = sim.add(table[ids], pos, half_rt.arith)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@needs_half
def test_timestep_embedding_stays_float(half_rt):
    """sin and cos of t f in float, one rounding to half: the device's float library against
    float64 ones rounded to float32 moves an output by at most 2^-11 (a float ulp of t f near
    1000 is 6e-5), and almost never at all."""
    from sdsim.kernels.elementwise import timestep_embedding_host
    from sdsim.sim import activation as sim

    t = np.arange(1000, dtype=np.float32)
    got = timestep_embedding_host(half_rt, t, 320, True, 0.0, precision="fp16")[0].astype(H)
    want = sim.timestep_embedding(t, 320, True, 0.0, half_rt.arith)
    assert np.abs(got.astype(np.float64) - want).max() <= 2.0 ** -11
    assert (got != want).mean() < 1e-3


def test_simulated_rounding_points():
    """Hand-worked halves: GELU's 0.5 x is a half product, a tie at x = +-2^-24 that rounds to
    (signed) zero and at 3 * 2^-24 up to 2^-23; SiLU(-12) is a normal half (-7.373e-5), where
    x / (1 + exp(-x)) in half overflows exp(12) to inf and gives -0; quick_gelu(-6.8203125)
    forms x e in float: e = exp(-11.61) = 9.09e-6 is subnormal in half, and x times the half e
    stores 4 ulps off the correctly rounded -6.2e-5, which the simulation gives."""
    from sdsim.sim import activation as sim

    g = sim.gelu(np.array([2.0 ** -24, -2.0 ** -24, 3 * 2.0 ** -24], H))
    assert g.tolist() == [0.0, 0.0, 2.0 ** -23] and np.signbit(g[1]) and not np.signbit(g[0])
    x = np.array([-12.0], H)
    assert sim.silu(x)[0] == H(-12.0 / (1.0 + np.exp(12.0)))
    with np.errstate(over="ignore"):
        assert x / (H(1) + np.exp(-x)) == 0.0
    x = np.array([-6.8203125], H)
    exact = H(-6.8203125 / (1.0 + np.exp(6.8203125 * 1.702)))
    e = np.exp(np.float32(-1.702) * np.float32(6.8203125))
    assert sim.quick_gelu(x)[0] == exact
    assert ulps((x * e.astype(H)) / (H(1) + e.astype(H)), exact)[0] == 4
