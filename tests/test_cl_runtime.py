"""OpenCL runtime: device choice, build cache and errors, allocation limits, fp16 storage."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.cl.vendors import intel_library
from sdsim.errors import SdsimError

pytestmark = pytest.mark.opencl

cl = pytest.importorskip("pyopencl")


@pytest.fixture(scope="module")
def rt():
    from sdsim.cl.runtime import Runtime
    return Runtime()


@pytest.fixture(scope="module")
def kernels_dir(tmp_path_factory):
    from sdsim import paths
    tmp_path = tmp_path_factory.mktemp("opencl")
    (tmp_path / "prelude.cl").write_text((Path(paths.OPENCL_DIR) / "prelude.cl").read_text())
    mp = pytest.MonkeyPatch()
    mp.setattr(paths, "OPENCL_DIR", tmp_path)
    (tmp_path / "copy.cl").write_text(
        "__kernel void copy(__global const store_t* a, __global store_t* b, const int n) {\n"
        "  int i = get_global_id(0); if (i < n) STORE(b, i, LOAD(a, i) * SCALE); }\n")
    (tmp_path / "broken.cl").write_text("__kernel void broken() { undeclared_thing = 1; }\n")
    yield tmp_path
    mp.undo()


class FakeDevice:
    def __init__(self, name, kind):
        self.name, self.type = name, kind

    def __eq__(self, other):
        return self.name == other

    __hash__ = None


class FakePlatform:
    def __init__(self, name, kind=None):
        self.name = name
        self.kind = cl.device_type.CPU if kind is None else kind

    def get_devices(self):
        return [FakeDevice(f"{self.name} device", self.kind)]


@pytest.mark.parametrize("names,expected", [
    (["Oclgrind", "Intel(R) OpenCL", "Portable Computing Language", "NVIDIA CUDA"], "NVIDIA CUDA"),
    (["Oclgrind", "Intel(R) OpenCL", "Portable Computing Language"], "Portable Computing Language"),
    (["Oclgrind", "Intel(R) OpenCL"], "Intel(R) OpenCL"),
    (["Oclgrind"], "Oclgrind"),
])
def test_default_is_a_gpu_then_pocl_then_other_cpus_then_simulators(monkeypatch, names, expected):
    from sdsim.cl import runtime
    gpu = {"NVIDIA CUDA": cl.device_type.GPU}
    monkeypatch.setattr(runtime.cl, "get_platforms",
                        lambda: [FakePlatform(n, gpu.get(n)) for n in names])
    monkeypatch.setattr(runtime, "unusable", lambda dev: None)
    assert runtime.select_device() == f"{expected} device"


def test_default_passes_over_a_device_that_cannot_build(monkeypatch):
    """PoCL 3.0's LLVM 14 names an AMD Zen 5 CPU "generic" and refuses to build for it: the
    default goes on to Intel's runtime; with no device that builds, the error lists each
    device's reason, and an explicit choice still gets the device asked for."""
    from sdsim.cl import runtime
    monkeypatch.setattr(runtime.cl, "get_platforms", lambda: [
        FakePlatform("Oclgrind"), FakePlatform("Intel(R) OpenCL"),
        FakePlatform("Portable Computing Language")])
    broken = {"Portable Computing Language device": "error: unknown target CPU 'generic'"}
    monkeypatch.setattr(runtime, "unusable", lambda dev: broken.get(dev.name))
    assert runtime.select_device() == "Intel(R) OpenCL device"
    assert runtime.select_device("Portable") == "Portable Computing Language device"
    broken["Intel(R) OpenCL device"] = "error: no compiler"
    with pytest.raises(SdsimError, match="no OpenCL device here can build programs: .*"
                       "Portable.*unknown target CPU.*Intel.*no compiler"):
        runtime.select_device()


def test_a_name_shared_by_two_platforms_picks_the_one_that_builds(monkeypatch):
    """PyPI's PoCL and Debian's are both "Portable Computing Language": on a CPU the first's
    LLVM does not know, `--platform Portable` (and the default) take the second, in either
    loader order; an index still takes exactly the platform it names."""
    from sdsim.cl import runtime

    class Named(FakePlatform):
        def __init__(self, device):
            super().__init__("Portable Computing Language")
            self.device = device

        def get_devices(self):
            return [FakeDevice(self.device, self.kind)]

    broken = {"pthread-AMD EPYC": "error: unknown target CPU 'generic'"}
    monkeypatch.setattr(runtime, "unusable", lambda dev: broken.get(dev.name))
    for order in (["pthread-AMD EPYC", "pthread-znver4"], ["pthread-znver4", "pthread-AMD EPYC"]):
        monkeypatch.setattr(runtime.cl, "get_platforms", lambda: [
            FakePlatform("Intel(R) OpenCL")] + [Named(d) for d in order])
        assert runtime.select_device("Portable") == "pthread-znver4"
        assert runtime.select_device() == "pthread-znver4"
        assert runtime.select_device(1 + order.index("pthread-AMD EPYC")) == "pthread-AMD EPYC"
    broken["pthread-znver4"] = "error: no compiler"     # none builds: the first by name, as asked
    assert runtime.select_device("Portable") == "pthread-znver4"


def test_unusable_names_the_compiler_error_and_the_remedy(monkeypatch):
    """A device whose compiler fails the probe kernel is named with its error (and, for the
    unknown-CPU failure, what to use instead); one that builds it is usable."""
    from sdsim.cl import runtime

    class Program:
        log = None   # the build's error, or None for a build that succeeds

        def __init__(self, *a):
            pass

        def build(self):
            if self.log:
                raise cl.RuntimeError(self.log)

    device = cl.get_platforms()[0].get_devices()[0]
    monkeypatch.setattr(runtime.cl, "Program", Program)
    monkeypatch.setattr(runtime, "_unusable", {})
    assert runtime.unusable(device) is None
    monkeypatch.setattr(runtime, "_unusable", {})
    Program.log = "clBuildProgram failed\n\nerror: no such builtin\nDevice failed"
    assert runtime.unusable(device) == "error: no such builtin"
    monkeypatch.setattr(runtime, "_unusable", {})
    Program.log = ("clBuildProgram failed: BUILD_PROGRAM_FAILURE\n\n"
                   "error: unknown target CPU 'generic'\nDevice failed")
    why = runtime.unusable(device)
    assert why.startswith("error: unknown target CPU 'generic' (PoCL's LLVM does not know")
    assert "--platform Intel" in why


def test_default_passes_over_oclgrind_unless_it_is_asked_for(monkeypatch):
    from sdsim.cl import runtime
    monkeypatch.setattr(runtime, "unusable", lambda dev: None)
    monkeypatch.setattr(runtime.cl, "get_platforms",
                        lambda: [FakePlatform("Oclgrind"), FakePlatform("Portable Computing Language")])
    assert runtime.select_device() == "Portable Computing Language device"
    assert runtime.select_device("oclgrind") == "Oclgrind device"
    assert runtime.select_device(0) == "Oclgrind device"


def _platforms_in_fresh_process(env):
    import json
    import subprocess
    import sys
    code = ("import json, os, sdsim.cl, pyopencl as cl; print(json.dumps("
            "[os.environ.get('OCL_ICD_VENDORS'), [p.name.strip() for p in cl.get_platforms()]]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(intel_library() is None,
                    reason="Intel's OpenCL CPU runtime (intel-opencl-rt) is not installed")
def test_intel_runtime_is_registered_without_icd_files(tmp_path):
    """With intel-opencl-rt installed, importing sdsim.cl makes Intel's runtime a platform beside
    PoCL (the wheel's own ICD file names a path that does not exist); a loader folder the user
    set is left alone."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "OCL_ICD_VENDORS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    folder, names = _platforms_in_fresh_process(env)
    assert folder.startswith(str(tmp_path / "cache"))
    assert "Intel(R) OpenCL" in names and "Portable Computing Language" in names
    mine = tmp_path / "mine"
    mine.mkdir()
    folder, names = _platforms_in_fresh_process({**env, "OCL_ICD_VENDORS": str(mine)})
    assert folder == str(mine) and "Intel(R) OpenCL" not in names


def test_select_by_index_and_name_substring():
    from sdsim.cl.runtime import select_device
    d0 = cl.get_platforms()[0].get_devices()[0]
    assert select_device("0", 0) == d0
    assert select_device(cl.get_platforms()[0].name[:4].lower(), d0.name[-5:].upper()) == d0


@pytest.mark.parametrize("platform,device,msg", [
    ("99", None, "platform index 99 out of range"),
    ("no-such-vendor", None, "no OpenCL platform matches 'no-such-vendor'"),
    (None, "no-such-gpu", "no OpenCL device matches 'no-such-gpu'"),
])
def test_bad_selection_lists_what_exists(platform, device, msg):
    from sdsim.cl.runtime import select_device
    with pytest.raises(SdsimError, match=msg) as e:
        select_device(platform, device)
    assert "available: 0:" in str(e.value)


def test_no_platform_names_what_to_install(monkeypatch):
    from sdsim.cl import runtime
    monkeypatch.setattr(runtime.cl, "get_platforms", lambda: [])
    with pytest.raises(SdsimError, match="pocl-binary-distribution"):
        runtime.Runtime()


def test_arith_defaults_to_half_where_the_device_has_it(rt):
    from sdsim.cl.runtime import Runtime
    assert rt.arith == ("fp16" if rt.has_fp16 else "fp32")
    with pytest.raises(SdsimError, match="unknown arithmetic 'fp8'"):
        Runtime(arith="fp8")
    if not rt.has_fp16:
        with pytest.raises(SdsimError, match="no cl_khr_fp16"):
            Runtime(arith="fp16")


def test_build_failure_shows_log_and_device(rt, kernels_dir):
    with pytest.raises(SdsimError) as e:
        rt.kernel("broken", "broken")
    msg = str(e.value)
    assert "broken.cl" in msg and rt.device.name.strip() in msg
    assert "undeclared_thing" in msg       # the compiler's build log


def test_program_cache_per_options(rt, kernels_dir):
    k1 = rt.kernel("copy", "copy", "fp32", {"SCALE": 2})
    assert rt.kernel("copy", "copy", "fp32", {"SCALE": 2}) is k1
    p2 = rt.program("copy", rt.build_options("fp32", {"SCALE": 3}))
    assert p2 is not rt.program("copy", rt.build_options("fp32", {"SCALE": 2}))
    assert rt.program("copy", rt.build_options("fp32", {"SCALE": 3})) is p2


def test_kernel_builds_are_quiet_unless_asked(rt, kernels_dir, capfd, monkeypatch):
    """A kernel's compiler warnings reach neither Python's warnings nor the process's stderr
    (Debian's PoCL prints "1 warning generated." itself); without QUIET they do, so the check
    can fail. A fresh source each time keeps PyOpenCL's binary cache from hiding the build."""
    import uuid
    import warnings
    from sdsim.cl import runtime
    if not os.environ.get("SDSIM_CL_WARNINGS"):
        assert runtime.QUIET == ("-w",)
    for quiet, expect in ((("-w",), False), ((), True)):
        monkeypatch.setattr(runtime, "QUIET", quiet)
        (kernels_dir / "warns.cl").write_text(
            f'// {uuid.uuid4()}\n#warning "a warning for the test"\n'
            "__kernel void warns(__global float* x) { x[0] = 1.0f; }\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rt.program("warns", rt.build_options("fp32", {"RUN": str(uuid.uuid4().int)}))
        printed = capfd.readouterr().err
        said = [str(w.message) for w in caught if issubclass(w.category, cl.CompilerWarning)]
        assert bool(said or "warning" in printed) is expect, (quiet, said, printed)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_storage_precision_roundtrip_and_event_time(rt, kernels_dir, precision):
    """fp16 storage rounds to nearest even exactly as NumPy's float16 does; fp32 is exact."""
    from sdsim.cl.runtime import event_ms
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal(997) * 10.0 ** rng.integers(-6, 4, 997),
                        [65504.0, 1e-7, 0.0, -2.0 ** -24]]).astype(np.float32)
    k = rt.kernel("copy", "copy", precision, {"SCALE": "1.0f"})
    a_buf, b_buf = rt.to_device(a, precision), rt.alloc(a.size, precision)
    ev = rt.launch(k, (a.size,), rt.local_size(k, (256,)), a_buf, b_buf, np.int32(a.size))
    out = rt.from_device(b_buf, a.shape, precision)
    expect = a if precision == "fp32" else a.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out, expect)
    assert 0 <= event_ms(ev) < 1e4


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "float64"])
def test_large_arrays_convert_in_chunks_as_numpy_converts_them(monkeypatch, dtype, layout):
    """`converted` splits a large array across threads: every value lands where NumPy's own
    conversion puts it, chunk edges and a last partial chunk included."""
    from sdsim.cl import runtime
    monkeypatch.setattr(runtime, "CONVERT_CHUNK", 1000)
    a = np.random.default_rng(1).standard_normal((7, 1503)) * 300
    a = {"contiguous": a.astype(np.float32), "strided": a.astype(np.float32)[:, ::3],
         "float64": a}[layout]
    out = runtime.converted(a, dtype)
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a.astype(dtype))


def test_oversized_buffer_refused_before_launch(rt, monkeypatch):
    monkeypatch.setattr(rt, "max_alloc", 1000)
    with pytest.raises(SdsimError, match="'im2col workspace'.*MAX_MEM_ALLOC_SIZE"):
        rt.alloc(251, "fp32", "im2col workspace")
    rt.alloc(250, "fp32", "fits")
    with pytest.raises(SdsimError, match="x"):
        rt.to_device(np.zeros(600, np.float16), "fp16", "x")


def test_unknown_precision(rt):
    with pytest.raises(SdsimError, match="precision 'bf16'"):
        rt.build_options("bf16")


@settings(max_examples=30, deadline=None)
@given(pref=st.lists(st.integers(1, 4096), min_size=1, max_size=3))
def test_local_size_fits_device_and_kernel(rt, kernels_dir, pref):
    k = rt.kernel("copy", "copy", "fp32", {"SCALE": 1})
    ls = rt.local_size(k, tuple(pref))
    assert len(ls) == len(pref)
    assert all(1 <= s <= p for s, p in zip(ls, pref))
    assert all(s <= rt.device.max_work_item_sizes[i] for i, s in enumerate(ls))
    assert np.prod(ls) <= rt.device.max_work_group_size


def test_build_options_select_storage_and_arithmetic(rt, monkeypatch):
    """fp16 storage is -DSTORE_HALF=1; half arithmetic (-DNATIVE_HALF -DARITH=1|2) follows the
    runtime's arith, fp32 storage always computes in float; defines follow in a fixed (sorted)
    order so the cache key is stable."""
    assert rt.build_options("fp32", {"B": 2, "A": 1}) == ("-DSTORE_HALF=0", "-DA=1", "-DB=2")
    monkeypatch.setattr(rt, "arith", "fp32")
    assert rt.build_options("fp16") == ("-DSTORE_HALF=1",)
    monkeypatch.setattr(rt, "arith", "fp16")
    assert rt.build_options("fp16") == ("-DSTORE_HALF=1", "-DNATIVE_HALF", "-DARITH=1")
    monkeypatch.setattr(rt, "arith", "fp16acc")
    assert rt.build_options("fp16") == ("-DSTORE_HALF=1", "-DNATIVE_HALF", "-DARITH=2")
    assert rt.build_options("fp32") == ("-DSTORE_HALF=0",)


def test_event_ms_converts_nanoseconds():
    from sdsim.cl.runtime import event_ms, total_ms

    class Profile:
        def __init__(self, start, end):
            self.start, self.end = start, end

    class Event:
        def __init__(self, start, end):
            self.profile = Profile(start, end)

        def wait(self):
            pass

    assert event_ms(Event(1_000, 2_501_000)) == pytest.approx(2.5)
    assert total_ms([Event(0, 1_000_000), Event(5, 500_005)]) == pytest.approx(1.5)


@pytest.mark.skipif(not any("cl_khr_fp16" in d.extensions for p in cl.get_platforms()
                            for d in p.get_devices()), reason="no device with cl_khr_fp16")
def test_native_half_builds_where_available(kernels_dir):
    """On a device with cl_khr_fp16 the prelude enables the extension and half_t is half."""
    from sdsim.cl.runtime import Runtime
    dev = next((p.name, d.name) for p in cl.get_platforms() for d in p.get_devices()
               if "cl_khr_fp16" in d.extensions)
    rt16 = Runtime(dev[0], dev[1])
    (kernels_dir / "half.cl").write_text(
        "__kernel void h(__global const store_t* a, __global store_t* b) {\n"
        "  half_t v = (half_t)LOAD(a, get_global_id(0)); STORE(b, get_global_id(0), (float)(v * v)); }\n")
    k = rt16.kernel("half", "h", "fp16")
    a = np.array([1.5, -3.0, 0.25], np.float32)
    b = rt16.alloc(3, "fp16")
    rt16.launch(k, (3,), (1,), rt16.to_device(a, "fp16"), b)
    np.testing.assert_array_equal(rt16.from_device(b, (3,), "fp16"), a * a)


def _record(monkeypatch, rt, method: str, order: list) -> None:
    """Wrap `rt.<method>` for the test: each call appends (method, *args) to `order`, then runs."""
    real = getattr(rt, method)

    def spy(*args):
        order.append((method, *args))
        return real(*args)

    monkeypatch.setattr(rt, method, spy)


def _marker_launch(rt, order: list):
    """A launch of one marker (an event with profiling times) that appends "launch" to `order`."""
    import pyopencl as cl

    def launch():
        order.append("launch")
        return [cl.enqueue_marker(rt.queue)]

    return launch


def test_cold_timing_flushes_before_every_run_and_leaves_buffers_intact(rt, monkeypatch):
    """time_events(cold=True) enqueues the cache flush (keeping the activation inputs cached)
    before each run's dispatches (in-order queue: it finishes before the timed kernel starts);
    the flush writes only its own buffer."""
    from sdsim.cl.bench import time_events

    x = np.arange(1000, dtype=np.float32)
    buf = rt.to_device(x, "fp32", "x")
    order = []
    _record(monkeypatch, rt, "flush_caches", order)
    t = time_events(rt, _marker_launch(rt, order), 3, cold_keeping=[buf])
    assert order == [("flush_caches", [buf]), "launch"] * 3
    assert t.shape == (3, 1)
    flush = rt.constant("flush", None)
    assert flush.size == min(256 << 20, rt.max_alloc)
    np.testing.assert_array_equal(rt.from_device(buf, x.shape, "fp32"), x)


def test_a_lead_runs_its_dispatches_between_the_flush_and_the_launch(rt, monkeypatch):
    """time_events(lead=N) enqueues N small dispatches after each run's flush and before its
    launch (the stream a pipeline's dispatch sits in), none of them timed; Runtime.lead(n) runs
    the read kernel n times (none for 0) and leaves the other buffers intact."""
    from sdsim.cl.bench import time_events

    x = np.arange(1000, dtype=np.float32)
    buf = rt.to_device(x, "fp32", "x")
    order = []
    _record(monkeypatch, rt, "lead", order)
    t = time_events(rt, _marker_launch(rt, order), 2, cold_keeping=[buf], lead=7)
    time_events(rt, _marker_launch(rt, order), 1, cold_keeping=[buf])
    monkeypatch.undo()
    assert order == [("lead", 7), "launch"] * 2 + [("lead", 0), "launch"]
    assert t.shape == (2, 1)
    real_touch, calls = rt._touch(), []

    def touch(queue, gsize, lsize, *args):
        calls.append(gsize)
        return real_touch(queue, gsize, lsize, *args)

    monkeypatch.setattr(rt, "_touch", lambda: touch)
    rt.lead(0)
    assert calls == []
    rt.lead(3)
    rt.finish()
    assert len(calls) == 3
    np.testing.assert_array_equal(rt.from_device(buf, x.shape, "fp32"), x)


def test_timed_runs_wait_behind_a_gate_until_the_run_is_enqueued(rt):
    """time_events (gated, the default) holds each run's flush and dispatches until the last is
    enqueued: a marker enqueued inside the run has not completed 50 ms later; ungated it has."""
    import time

    import pyopencl as cl

    from sdsim.cl.bench import time_events

    done = []

    def launch():
        ev = cl.enqueue_marker(rt.queue)
        time.sleep(0.05)
        done.append(ev.command_execution_status == cl.command_execution_status.COMPLETE)
        return [ev]

    buf = rt.to_device(np.zeros(16, np.float32), "fp32", "x")
    time_events(rt, launch, 2, cold_keeping=[buf])
    time_events(rt, launch, 1, gated=False)
    assert done == [False, False, True]


def test_gate_holds_the_queue_until_the_body_is_enqueued(rt, kernels_dir):
    """Nothing enqueued inside a gate starts before the gate opens: the kernels' start stamps
    all follow the moment the body finished enqueueing, and the results are the ungated ones."""
    import time

    x = np.arange(4096, dtype=np.float32)
    a = rt.to_device(x, "fp32", "a")
    b = rt.alloc(x.size, "fp32", "b")
    k = rt.kernel("copy", "copy", "fp32", {"SCALE": 2.0})
    rt.finish()
    with rt.gated() as gate:
        evs = [rt.launch(k, (x.size,), (64,), a, b, np.int32(x.size)) for _ in range(3)]
        time.sleep(0.3)   # a slow host: ungated, the device would have run all three by now
        statuses = [e.command_execution_status for e in evs]
    rt.finish()
    assert not gate.timed_out
    assert all(s != cl.command_execution_status.COMPLETE for s in statuses)
    np.testing.assert_array_equal(rt.from_device(b, x.shape, "fp32"), 2 * x)


def test_gate_watchdog_opens_a_gate_whose_body_blocks(rt, kernels_dir):
    """A body that waits on the queue (here: finish) would wait for itself; the watchdog opens
    the gate after its timeout and says so."""
    x = np.ones(64, dtype=np.float32)
    a = rt.to_device(x, "fp32", "a")
    b = rt.alloc(x.size, "fp32", "b")
    k = rt.kernel("copy", "copy", "fp32", {"SCALE": 3.0})
    with rt.gated(timeout_s=0.5) as gate:
        rt.launch(k, (x.size,), (64,), a, b, np.int32(x.size))
        rt.finish()
    assert gate.timed_out
    np.testing.assert_array_equal(rt.from_device(b, x.shape, "fp32"), 3 * x)


def test_programs_built_in_processes_run_from_their_binaries():
    """`build(processes=True)`, a GPU's default: each program compiled in a spawned process and
    loaded here from its binary; the GEMM cases then run on those programs and pass against the
    float64 reference."""
    from sdsim.cl import dryrun
    from sdsim.cl.bench import all_cases, run_case
    from sdsim.cl.runtime import Runtime

    rt = Runtime()
    cases = all_cases("quick", ["linear"], precisions=("fp32",))
    programs, missed = dryrun.programs(rt, [(c.record, c.shape) for c in cases], "fp32")
    assert programs and missed == 0
    assert rt.build(programs, workers=2, processes=True) == len(programs)
    built = dict(rt._programs)
    assert rt.build(programs, processes=True) == 0          # nothing left to build
    for case in cases:
        assert run_case(rt, case, repeat=1)["ok"], case.shape
    assert rt._programs == built                              # the runs built nothing anew


def test_programs_compiling_in_processes_load_when_asked_for():
    """`building(processes=True)`: the caller goes on while the programs compile; a program
    joins the runtime when `wait` or `ready` asks for it, the others only when asked for in
    turn, and a case run on them passes against the float64 reference."""
    from sdsim.cl import dryrun
    from sdsim.cl.bench import all_cases, run_case
    from sdsim.cl.runtime import Runtime

    rt = Runtime()
    cases = all_cases("quick", ["linear"], precisions=("fp32",))
    needs = dryrun.case_programs(rt, [(c.record, c.shape) for c in cases], "fp32")
    programs = sorted(set().union(*needs))
    assert len(programs) >= 2
    first, rest = needs[0], [p for p in programs if p not in needs[0]]
    assert rest
    with rt.building(programs, workers=2, processes=True) as builds:
        builds.wait(first)
        assert builds.ready(first)
        assert all(rt._key(*p) in rt._programs for p in first)
        assert not any(rt._key(*p) in rt._programs for p in rest)
        assert run_case(rt, cases[0], repeat=1)["ok"]
        builds.wait()
        assert builds.ready(set(programs)) and builds.count == len(programs)
    assert all(rt._key(*p) in rt._programs for p in programs)

