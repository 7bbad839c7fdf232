"""Determinism: the same command with the same seed gives bit-identical outputs run to run on the
NumPy backend (separate processes, so thread scheduling and allocation differ), and the same kernel
on the same device gives bit-identical results run to run (two runtimes, two contexts)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import needs_pocl


def generate(tmp_path, name, *extra):
    out = tmp_path / name
    r = subprocess.run([sys.executable, "-m", "sdsim", "generate", "--random-weights", "--preset",
                        "tiny", "--steps", "3", "--no-progress", "--prompt", "a red fox",
                        "--out", str(out), *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.parametrize("precision,scheduler", [("fp32", "pndm"), ("fp16", "dpmpp2m")])
def test_generate_same_seed_same_bytes(tmp_path, precision, scheduler):
    args = ("--seed", "7", "--precision", precision, "--scheduler", scheduler)
    a = generate(tmp_path, "a.png", *args)
    b = generate(tmp_path, "b.png", *args)
    assert a == b
    if precision == "fp32":  # the seed matters, so equal bytes are not a constant image
        assert generate(tmp_path, "c.png", "--seed", "8", "--precision", precision,
                        "--scheduler", scheduler) != a


def test_predict_json_is_identical_run_to_run(tmp_path):
    cmd = [sys.executable, "-m", "sdsim", "predict", "--device", "pixel7", "--by", "kernel",
           "--format", "json", "--resolution", "256"]
    a, b = (subprocess.run(cmd, capture_output=True, text=True, timeout=600) for _ in range(2))
    assert a.returncode == 0 and a.stdout, a.stderr
    assert a.stdout == b.stdout


@pytest.mark.opencl
@needs_pocl
def test_every_kernel_is_bitwise_repeatable_on_pocl():
    """Every variant at tiny shapes, run twice on each of two runtimes of the first PoCL device."""
    pytest.importorskip("pyopencl")
    from sdsim.cl.runtime import Runtime
    from sdsim.errors import SdsimError
    from sdsim.testing.oclgrind import tiny_cases

    try:
        rts = [Runtime("Portable"), Runtime("Portable")]
    except SdsimError as e:
        pytest.skip(f"no PoCL device: {e}")
    differing = []
    for case in tiny_cases():
        inputs = case.make_inputs(np.random.default_rng(1))
        outs = [rt_out for rt in rts for rt_out in (case.run(rt, inputs)[0], case.run(rt, inputs)[0])]
        err, ok = case.check(outs[0], case.reference(inputs))
        assert ok, f"{case.family}/{case.variant} {case.precision}: error {err}"
        if not all(np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)) for o in outs[1:]):
            differing.append(f"{case.family}/{case.variant} {case.precision} {case.shape}")
    assert not differing, "results differ run to run:\n" + "\n".join(differing)
