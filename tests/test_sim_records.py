"""Every kernel variant's NumPy simulation (Variant.simulate) against its native-half build on a
device with cl_khr_fp16 (Intel's OpenCL CPU runtime on CI): at the record's tiny and quick bench
shapes, in each half arithmetic, the device stores what the simulation says, bit for bit or
within the record's documented ulps (Variant.sim_ulps: a float library function that differs); the
simulations take the device's own half exp and fma (sdsim.sim.half.library)."""

import numpy as np
import pytest

from conftest import needs_half
from sdsim.sim.half import library, ulps

pytestmark = pytest.mark.opencl


def _simulated():
    from sdsim import kernels
    return [r for r in kernels.records() if r.simulate is not None]


def _cases():
    return [pytest.param(r.key, s, id=f"{r.key}-{i}") for r in _simulated()
            for i, s in enumerate(r.bench.get("tiny", []) + r.bench.get("quick", []))]


def test_every_variant_has_a_simulation():
    from sdsim import kernels
    assert [r.key for r in kernels.records() if r.simulate is None] == []


@needs_half
@pytest.mark.parametrize("key,shape", _cases())
def test_device_stores_what_the_simulation_says(half_rt, half_library, key, shape):
    from sdsim import kernels
    from sdsim.cl.bench import BenchCase, stored_inputs

    record = kernels.get(*key.split("/"))
    inputs = record.make_inputs(shape, np.random.default_rng(3))
    got, _ = BenchCase(record, shape, "fp16").run(half_rt, inputs)
    with library(half_library):
        want = record.simulate(shape, *stored_inputs(inputs, "fp16"), half_rt.arith)
    got, want = got.astype(np.float16).reshape(-1), np.asarray(want, np.float16).reshape(-1)
    d = ulps(got, want)
    assert d.max() <= record.sim_ulps, f"{key}: {int((d > record.sim_ulps).sum())} of {d.size} " \
        f"outputs more than {record.sim_ulps} ulp off the simulation (worst {d.max()})"
    assert (d == 0).mean() >= 0.9


def test_ulps_count_along_the_half_line():
    h = np.float16
    a = np.array([1.0, -0.0, 0.0, np.inf, np.nan, -1.0], h)
    b = np.array([np.nextafter(h(1), h(2)), 0.0, np.nextafter(h(0), h(-1)), np.inf, np.nan,
                  np.nextafter(h(-1), h(0))], h)
    assert ulps(a, b).tolist() == [1, 0, 1, 0, 0, 1]
