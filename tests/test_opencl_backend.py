"""The OpenCL backend (sdsim/backends/opencl) against the NumPy reference backend, on PoCL.

The tiny preset has every block type of SD1.4 (resnets, spatial transformers with self- and
cross-attention and GEGLU, down/up-samplers, VAE mid-block attention, CLIP's causal attention,
quick-GELU MLP and embeddings), so each op's device path runs here. Tolerances: fp32 kernels accumulate in float32 like the NumPy backend, differing only
in summation order and Winograd's transforms (~1e-6 of the output scale per op, compounded over
~200 ops) -> 1e-4 of max|ref|. fp16 storage rounds every activation to 2^-11 relative on both
sides, but at different points (Winograd tiles, scores), so the outputs drift apart by ~1e-3 of
the output scale per block -> 2e-2 of max|ref|; a wrong index or kernel gives O(1) errors.
"""

import numpy as np
import pytest

from conftest import KERNEL_PLATFORM

pytestmark = pytest.mark.opencl

TOL = {"fp32": 1e-4, "fp16": 2e-2}


@pytest.fixture(scope="module")
def rt():
    from sdsim.cl.runtime import Runtime

    # float arithmetic, as PoCL's (Intel's runtime, where PoCL builds nothing, defaults to half)
    return Runtime(KERNEL_PLATFORM, arith="fp32")


def _reference(runner, inputs):
    """The same component on the NumPy backend with the same weights, in float32."""
    from sdsim.backends.numpy_backend import NumpyBackend

    F = NumpyBackend(runner.weights, "fp32")
    args = [a if a.dtype == np.int32 or (runner.name == "unet" and a.ndim == 1) else F.input(a)
            for a in inputs]
    return np.asarray(runner.fn(F, *args), np.float64)


@pytest.mark.parametrize("component,opt,precision", [
    ("unet", "paper", "fp32"), ("unet", "none", "fp32"), ("unet", "paper", "fp16"),
    ("vae_decoder", "paper", "fp32"), ("vae_decoder", "none,conv3x3=winograd_f6", "fp32"),
    ("text_encoder", "paper", "fp32"),
])
def test_component_equals_numpy_backend(rt, component, opt, precision):
    from sdsim.backends.opencl.run import ComponentRunner, random_inputs
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config

    cfg = load_model_config("tiny")
    runner = ComponentRunner(rt, component, cfg, parse_opt(opt), precision, 64, 2, seed=3)
    inputs = random_inputs(component, runner.graph, cfg, seed=3)
    res = runner.run(inputs)
    ref = _reference(runner, inputs)
    assert res.output.shape == ref.shape
    err = np.max(np.abs(res.output - ref))
    assert err <= TOL[precision] * np.max(np.abs(ref)), (err, np.max(np.abs(ref)))
    # every planned dispatch ran and was timed, under the plan's identity, in plan order
    assert [c.identity for c, _ in res.timings] == [c.identity for c in runner.plan]
    assert all(t > 0 for _, t in res.timings)
    # activation buffers are pooled: far fewer buffers than tensors
    assert res.pool_buffers < len(runner.graph.ops) / 3


def test_second_run_reuses_buffers_and_weights(rt):
    from sdsim.backends.opencl.run import ComponentRunner
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config

    runner = ComponentRunner(rt, "vae_decoder", load_model_config("tiny"), parse_opt("paper"),
                             "fp32", 64, 2)
    a = runner.run()
    weights = len(runner.backend._wcache)
    b = runner.run()
    assert b.pool_buffers == a.pool_buffers and b.pool_bytes == a.pool_bytes
    assert len(runner.backend._wcache) == weights
    np.testing.assert_array_equal(a.output, b.output)


def test_gated_run_is_the_ungated_run(rt):
    """A gated run (Runtime.gated: every dispatch enqueued before any runs) gives the same
    output and the same dispatches as the host-fed run; the first run (weight uploads) is never
    gated."""
    from sdsim.backends.opencl.run import ComponentRunner
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config

    runner = ComponentRunner(rt, "unet", load_model_config("tiny"), parse_opt("paper"), "fp32",
                             64, 2)
    first = runner.run(gated=True)
    host = runner.run()
    gated = runner.run(gated=True)
    assert not first.gated and not host.gated and gated.gated
    assert [c.identity for c, _ in gated.timings] == [c.identity for c, _ in host.timings]
    np.testing.assert_array_equal(gated.output, host.output)
