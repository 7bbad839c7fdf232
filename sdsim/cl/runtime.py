"""PyOpenCL runtime: device choice, program cache, buffers, launches and event timing.

API (everything an `sdsim/cl/<family>.py` module needs):

- `Runtime(platform=None, device=None, arith=None)`: pick a device (index or name substring for
  each; default the first GPU, else PoCL's CPU device, passing over Intel's CPU runtime and the
  Oclgrind debugging simulator, which is thousands of times slower, unless nothing else is
  there, and passing over a device that cannot build a program: PoCL on a CPU its LLVM does
  not know); `rt.ctx`, `rt.queue` (profiling enabled), `rt.device`, `rt.has_fp16` (cl_khr_fp16),
  `rt.name`.
- `rt.kernel(family, name, precision="fp32", defines=None)`: the kernel `name` of
  `opencl/<family>.cl`, built once per (device, source file, build options) and cached.
- `rt.build(programs, workers=None)`: build many (family, options) programs at once: on a GPU
  each in a process of its own, loaded back from its binary (NVIDIA's compiler takes seconds
  per large kernel and overlaps builds within a process only in part), on a CPU in threads;
  `rt.building(programs)` starts them and goes on (sdsim/cl/builds.py); sdsim/cl/dryrun.py
  finds which programs a sweep needs.
- `rt.build_options(precision, defines)`: the options list (`-DSTORE_HALF=0|1`; with fp16
  storage and half arithmetic `-DNATIVE_HALF -DARITH=1|2`; plus `-DNAME=value` per define).
- `rt.arith`: the arithmetic of fp16-storage builds (ARITHS): "fp32" float; "fp16" half
  multiplies, float accumulators; "fp16acc" half accumulators too. Default "fp16" where the device
  has cl_khr_fp16, else "fp32"; `rt.arith_for(precision)` is what a build of that storage
  computes in (fp32 storage always float).
- `rt.launch(kernel, global_size, local_size, *args, wait_for=None) -> cl.Event`: enqueue with the
  global size rounded up to a multiple of the local size (kernels bound-check their indices).
- `rt.local_size(kernel, preferred)`: a work-group shape that fits the device and kernel limits.
- `rt.alloc(n_elems, precision, what)`, `rt.to_device(array, precision, what)`,
  `rt.from_device(buf, shape, precision)`: buffers in storage precision (fp32 = float, fp16 =
  half bits); an allocation over CL_DEVICE_MAX_MEM_ALLOC_SIZE raises SdsimError before launching.
- `rt.constant(key, make)`: a device object made once per runtime (e.g. transform matrices).
- `rt.flush_caches(keep=())`: enqueue a fill of FLUSH_BYTES, evicting what the device caches
  hold, then a read of the `keep` buffers (a pipeline's state: weights cold, activations cached).
- `with rt.gated() as gate:`: the queue held while the body enqueues, then released, so the
  body's dispatches run back to back (see Gate).
- `event_ms(event)`: a profiled event's duration in milliseconds.

Making a Runtime activates the default kernel tuning of its device type (sdsim/kernels/tuning.py)
unless a tuning (a profile's) is already active.

Every kernel source is compiled with `opencl/prelude.cl` in front: storage (`store_t`,
`LOAD` / `STORE`), the arithmetic of a half build (`ARITH`, `acc_t`, `MAC`) and the macros the
families share. It is one of opencl/*.cl, so the kernels' hash covers it.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sdsim import paths
from sdsim.errors import SdsimError
from sdsim.precision import ARITHS

try:  # pyopencl is a hard dependency, but keep import errors readable
    import pyopencl as cl
except ImportError as e:  # pragma: no cover - depends on the install
    raise SdsimError(f"pyopencl is not installed ({e}); install it with 'pip install pyopencl "
                     "pocl-binary-distribution'") from None

PRECISIONS = ("fp32", "fp16")
DTYPES = {"fp32": np.float32, "fp16": np.float16, "int32": np.int32}
#: platforms chosen only by name or index: they interpret kernels to find bugs, not to run them
SIMULATORS = ("Oclgrind",)
#: CPU platforms a default choice passes over for PoCL, the documented default CPU device (the
#: bundled pocl-cpu profile is calibrated on it); chosen by name: `--platform Intel`
LATER = ("Intel(R) OpenCL",)
#: bytes `flush_caches` writes: several times any GPU's L2 (H100/H200: 50 MB) or CPU's last-level
#: cache, so none of a dispatch's inputs stays cached
FLUSH_BYTES = 256 << 20
#: reads a buffer into the caches without writing to memory (a copy would leave dirty lines
#: whose write-back the next, timed dispatch pays for); a timing utility, not a model kernel
TOUCH_SOURCE = r"""
__kernel void touch(__global const uint *x, uint n, __global uint *sink) {
    uint acc = 0;
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) acc ^= x[i];
    if (acc == 0x9e3779b9u) sink[0] = acc;
}
"""

#: copies a buffer's words into another: the destination's lines written by a dispatch, as the
#: dispatch before a pipeline's dispatch writes its input (the write-back probe,
#: sdsim/calibration/writeback.py); a timing utility, not a model kernel
COPY_SOURCE = r"""
__kernel void copy_words(__global uint *dst, __global const uint *src, uint n) {
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) dst[i] = src[i];
}
"""

#: bytes each of `Runtime.lead`'s dispatches reads (small enough to leave the caches as the
#: flush set them)
LEAD_BYTES = 16 << 10

#: values per thread of a large host array's conversion to a buffer's storage (`converted`)
CONVERT_CHUNK = 1 << 22

#: seconds a gate waits for its body before a watchdog opens it (a driver whose queue filled up
#: blocks the enqueueing host, which then could never open the gate)
GATE_TIMEOUT_S = 60.0


def converted(array, dtype) -> np.ndarray:
    """`array` as a contiguous array of `dtype`, a large one converted in chunks on every host
    core: NumPy converts float32 to float16 at ~0.3 G values/s on one core, which was 45 s of
    an H200 fp16 calibration's inputs."""
    a = np.asarray(array)
    if a.dtype == dtype or a.size < CONVERT_CHUNK:
        return np.ascontiguousarray(a, dtype=dtype)
    out = np.empty(a.shape, dtype)
    flat_in, flat_out = a.reshape(-1), out.reshape(-1)   # a copy where `a` is not contiguous

    def chunk(i):
        np.copyto(flat_out[i:i + CONVERT_CHUNK], flat_in[i:i + CONVERT_CHUNK], casting="unsafe")

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:    # NumPy's casts release the GIL
        list(pool.map(chunk, range(0, a.size, CONVERT_CHUNK)))
    return out


class Gate:
    """Holds a queue while the host enqueues, then lets it run.

    Entering enqueues a marker that waits on a user event, so every command enqueued after it
    waits too; leaving completes the event. The device then runs the body's dispatches back to
    back, as a host that keeps ahead of the device feeds them, instead of one at a time as a
    slow host does (sdsim's Python host takes ~300 us to enqueue an op, and an H200 dispatch
    that starts on an idle device measures up to twice what it does right behind another). The
    body must not block on the queue (blocking copies, finish): it would wait for itself. A
    watchdog opens the gate after `timeout_s` in case the driver blocks the enqueueing host;
    `timed_out` says whether it did (the run was then fed by the host as it went)."""

    def __init__(self, rt, timeout_s: float = GATE_TIMEOUT_S):
        self.rt, self.timeout_s = rt, timeout_s
        self.timed_out = False
        self._lock = threading.Lock()
        self._event = None
        self._timer = None

    def _open(self, by_watchdog: bool = False) -> None:
        with self._lock:
            if self._event is None:
                return
            self._event.set_status(cl.command_execution_status.COMPLETE)
            self._event = None
            self.timed_out = by_watchdog

    def __enter__(self) -> "Gate":
        self._event = cl.UserEvent(self.rt.ctx)
        cl.enqueue_marker(self.rt.queue, wait_for=[self._event])
        self._timer = threading.Timer(self.timeout_s, self._open, kwargs={"by_watchdog": True})
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._open()


def event_ms(event) -> float:
    """Duration of a profiled event in milliseconds."""
    event.wait()
    return (event.profile.end - event.profile.start) * 1e-6


def total_ms(events) -> float:
    """Summed duration of several profiled events, in milliseconds."""
    return sum(event_ms(e) for e in events)


def round_up(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m


def _pick(items, wanted, kind: str, describe):
    """Choose from `items` by index (int or digit string) or case-insensitive name substring."""
    if wanted is None or wanted == "":
        return items[0]
    names = [describe(i) for i in items]
    if isinstance(wanted, int) or str(wanted).isdigit():
        idx = int(wanted)
        if not 0 <= idx < len(items):
            raise SdsimError(f"OpenCL {kind} index {idx} out of range; available: "
                             + "; ".join(f"{i}: {n}" for i, n in enumerate(names)))
        return items[idx]
    hits = [it for it, n in zip(items, names) if str(wanted).lower() in n.lower()]
    if not hits:
        raise SdsimError(f"no OpenCL {kind} matches '{wanted}'; available: "
                         + "; ".join(f"{i}: {n}" for i, n in enumerate(names)))
    return hits[0]


def platforms():
    """All OpenCL platforms; SdsimError naming what to install when there are none."""
    try:
        plats = cl.get_platforms()
    except cl.Error:
        plats = []
    if not plats:
        raise SdsimError("no OpenCL platform found; install a driver for your GPU or the CPU "
                         "implementation with 'pip install pocl-binary-distribution'")
    return plats


#: a kernel any OpenCL C compiler takes: a device that cannot build it cannot run sdsim
PROBE_SOURCE = "__kernel void probe(__global float *x) { x[0] += 1.0f; }"
#: what a PoCL whose LLVM does not know the host CPU says (PoCL 3.0 from PyPI has LLVM 14, which
#: names an AMD Zen 5, family 26, "generic" and then refuses that name), and what to do then
UNKNOWN_CPU = "unknown target CPU"
UNKNOWN_CPU_HELP = ("PoCL's LLVM does not know this CPU, so PoCL builds no kernel on it; install "
                    "a PoCL built with a newer LLVM (Debian 12 / Ubuntu: `apt install "
                    "pocl-opencl-icd`, PoCL 3.1 with LLVM 15, which sdsim then takes as the "
                    "default device), or use Intel's CPU runtime (`pip install 'sdsim[intel]'`, "
                    "then `--platform Intel`) or another OpenCL driver")
_unusable: dict[int, str | None] = {}


def unusable(dev) -> str | None:
    """Why `dev` cannot build OpenCL programs (its build log, shortened), or None where it can;
    probed once per process with PROBE_SOURCE."""
    key = dev.int_ptr
    if key not in _unusable:
        try:
            with warnings.catch_warnings():   # PyOpenCL's "Non-empty compiler output"
                warnings.simplefilter("ignore")
                cl.Program(cl.Context([dev]), PROBE_SOURCE).build()
            _unusable[key] = None
        except cl.Error as e:
            lines = [ln.strip() for ln in str(e).splitlines() if "error" in ln.lower()]
            why = lines[-1] if lines else str(e).strip().splitlines()[0]
            _unusable[key] = (f"{why} ({UNKNOWN_CPU_HELP})" if UNKNOWN_CPU in str(e)
                              else why)
    return _unusable[key]


def _default(pairs):
    """The default device of `pairs` (platform, device): the first by `_default_rank` that
    builds programs (`sdsim devices --opencl` names the ones passed over, and why); SdsimError
    where no device but a debugging simulator does."""
    ranked = sorted(pairs, key=lambda pd: _default_rank(*pd))
    real = [pd for pd in ranked if pd[0].name.strip() not in SIMULATORS]
    if not real:
        return ranked[0][1]
    broken = []
    for plat, dev in real:
        why = unusable(dev)
        if why is None:
            return dev
        broken.append((plat, dev, why))
    raise SdsimError("no OpenCL device here can build programs: " + "; ".join(
        f"{p.name.strip()} / {d.name.strip()}: {w}" for p, d, w in broken))


def _default_rank(plat, dev) -> tuple:
    """Sort key of the default device: GPUs and accelerators first, then CPUs in loader order
    with the CPU runtimes of LATER after PoCL, debugging simulators last."""
    name = plat.name.strip()
    return (name in SIMULATORS, bool(dev.type & cl.device_type.CPU), name in LATER)


def device_table() -> list[tuple]:
    """Every OpenCL device on this machine as (platform index, device index, "platform /
    device" name, row): the indices --platform and --cl-device take, and a row for listing it
    (platform and device as "index: name", type, compute units, clock, global memory,
    cl_khr_fp16, OpenCL version and driver, whether it is the device chosen when neither is
    given, and why it cannot build programs, or None)."""
    try:
        chosen = select_device()
    except SdsimError:   # no device builds programs: list them all the same
        chosen = None
    out = []
    for pi, p in enumerate(platforms()):
        for di, d in enumerate(p.get_devices()):
            out.append((pi, di, f"{p.name.strip()} / {d.name.strip()}", {
                "platform": f"{pi}: {p.name.strip()}", "device": f"{di}: {d.name.strip()}",
                "type": " | ".join(n for n in ("GPU", "CPU", "ACCELERATOR")
                                   if d.type & getattr(cl.device_type, n)),
                "compute_units": int(d.max_compute_units),
                "clock_mhz": int(d.max_clock_frequency),
                "global_memory_bytes": int(d.global_mem_size),
                "fp16": "cl_khr_fp16" in d.extensions, "opencl": d.version.strip(),
                "driver": d.driver_version.strip(), "default": d == chosen,
                "build_error": unusable(d)}))
    return out


def _builders_first(plats, wanted):
    """`plats` with, where the name `wanted` matches several platforms (PyPI's PoCL beside a
    system PoCL), those whose first device builds programs ahead of those whose does not, so a
    name picks a working one; an index or a unique name is left as given."""
    if wanted is None or isinstance(wanted, int) or str(wanted).isdigit():
        return plats
    hits = [p for p in plats if str(wanted).lower() in p.name.lower()]
    if len(hits) < 2:
        return plats
    return sorted(plats, key=lambda p: p in hits and (not p.get_devices()
                                                      or unusable(p.get_devices()[0]) is not None))


def select_device(platform=None, device=None):
    """The device chosen by platform/device index or name substring (default: see
    `_default_rank`)."""
    plats = platforms()
    if (platform is None or platform == "") and (device is None or device == ""):
        pairs = [(p, d) for p in plats for d in p.get_devices()]
        if not pairs:
            raise SdsimError("no OpenCL device found on platforms "
                             + ", ".join(p.name.strip() for p in plats))
        return _default(pairs)
    if platform is None or platform == "":
        plats = [p for p in plats if p.name.strip() not in SIMULATORS] or plats
    plat = _pick(_builders_first(plats, platform), platform, "platform", lambda p: p.name)
    devs = plat.get_devices()
    if not devs:
        raise SdsimError(f"OpenCL platform '{plat.name}' has no devices")
    return _pick(devs, device, "device", lambda d: d.name)


#: options every kernel build adds to its own (not part of a program's cache key): `-w`, the
#: OpenCL option that silences compiler warnings, since the kernels' warnings are for their
#: authors, not the user (Debian's PoCL 3.1 prints "1 warning generated." for each GEMM build,
#: an unroll pragma it could not apply); SDSIM_CL_WARNINGS=1 shows them
QUIET = () if os.environ.get("SDSIM_CL_WARNINGS") else ("-w",)

#: sources of shared device functions compiled in front of a family's own (opencl/<name>.cl)
LIBRARIES = {"gelu": ("activation",), "gemm": ("activation",)}


def _source(family: str) -> Path:
    return Path(paths.OPENCL_DIR) / f"{family}.cl"


def _built(ctx, family: str, options: tuple) -> "cl.Program":
    """`opencl/<family>.cl` (after prelude.cl and its LIBRARIES) built from source with
    `options` in `ctx`; `#line 1` keeps the compiler's line numbers those of the family's file."""
    path = _source(family)
    try:
        front = ("prelude",) + LIBRARIES.get(family, ())
        src = "".join(_source(f).read_text() for f in front) + "#line 1\n" + path.read_text()
    except OSError as e:
        raise SdsimError(f"cannot read kernel source {e.filename}: {e.strerror}") from None
    try:
        return cl.Program(ctx, src).build(options=[*options, *QUIET])
    except cl.RuntimeError as e:
        dev = ctx.devices[0]
        hint = f"\n{UNKNOWN_CPU_HELP}" if UNKNOWN_CPU in str(e) else ""
        raise SdsimError(f"OpenCL build of {path.name} failed on {dev.platform.name.strip()} / "
                         f"{dev.name.strip()} with options {' '.join(options)}:\n{e}{hint}") \
            from None


class Runtime:
    """One device, one context, one profiling queue, and the programs built for it."""

    def __init__(self, platform=None, device=None, arith: str | None = None):
        self.device = select_device(platform, device)
        self.ctx = cl.Context([self.device])
        self.queue = cl.CommandQueue(
            self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self.has_fp16 = "cl_khr_fp16" in self.device.extensions
        self.arith = self._arith(arith)
        self.max_alloc = int(self.device.max_mem_alloc_size)
        self.max_wg = int(self.device.max_work_group_size)
        self.max_wg_dims = [int(s) for s in self.device.max_work_item_sizes]
        self.local_mem = int(self.device.local_mem_size)
        self._programs: dict[tuple, cl.Program] = {}
        self._kernels: dict[tuple, cl.Kernel] = {}
        self._constants: dict = {}
        from sdsim.kernels import tuning

        tuning.activate_default(tuning.for_device(tuning.device_type(self.device),
                                                    self.device.max_compute_units))

    def _arith(self, arith: str | None) -> str:
        if arith is None:
            return "fp16" if self.has_fp16 else "fp32"
        if arith not in ARITHS:
            raise SdsimError(f"unknown arithmetic '{arith}'; expected one of {', '.join(ARITHS)}")
        if arith != "fp32" and not self.has_fp16:
            raise SdsimError(f"arithmetic '{arith}' needs half precision, and "
                             f"{self.device.name.strip()} has no cl_khr_fp16 (use --arith fp32, or "
                             "a device that has it: --platform Intel)")
        return arith

    def arith_for(self, precision: str) -> str:
        """The arithmetic builds of `precision` storage run: the runtime's for fp16, else fp32."""
        return self.arith if precision == "fp16" else "fp32"

    @property
    def name(self) -> str:
        return f"{self.device.platform.name.strip()} / {self.device.name.strip()}"

    # --- programs ---------------------------------------------------------------------------
    def build_options(self, precision: str = "fp32", defines: dict | None = None) -> tuple:
        if precision not in PRECISIONS:
            raise SdsimError(f"unknown precision '{precision}'; expected one of {PRECISIONS}")
        opts = [f"-DSTORE_HALF={int(precision == 'fp16')}"]
        if self.arith_for(precision) != "fp32":
            opts += ["-DNATIVE_HALF", f"-DARITH={ARITHS[self.arith]}"]
        for k, v in sorted((defines or {}).items()):
            opts.append(f"-D{k}={v}")
        return tuple(opts)

    def _key(self, family: str, options: tuple) -> tuple:
        return (self.device.int_ptr, str(_source(family)), tuple(options))

    def _compile(self, family: str, options: tuple, binary: bytes | None = None) -> "cl.Program":
        """The program of `opencl/<family>.cl` built with `options`, from its source or from a
        `binary` another process compiled for this device."""
        if binary is None:
            return _built(self.ctx, family, options)
        try:
            return cl.Program(self.ctx, [self.device], [binary]).build(
                options=[*options, *QUIET])
        except cl.RuntimeError as e:
            raise SdsimError(f"OpenCL could not load the compiled {family}.cl on {self.name} "
                             f"(options {' '.join(options)}):\n{e}") from None

    def program(self, family: str, options: tuple = ()) -> "cl.Program":
        """`opencl/<family>.cl` built with `options`, cached per (device, file, options)."""
        key = self._key(family, options)
        if key not in self._programs:
            self._programs[key] = self._compile(family, options)
        return self._programs[key]

    def build(self, programs, workers: int | None = None, processes: bool | None = None) -> int:
        """Build the (family, options) `programs` not built yet, `workers` at a time, as
        sdsim.cl.builds.Builds does (on a GPU each in a process of its own), and wait for them
        all. Returns how many were built."""
        with self.building(programs, workers, processes) as builds:
            builds.wait()
        return builds.count

    def building(self, programs, workers: int | None = None,
                 processes: bool | None = None) -> "Builds":
        """The (family, options) `programs` not built yet, compiling while the caller goes on
        (sdsim.cl.builds.Builds): `ready(programs)`, `wait(programs)`."""
        from sdsim.cl.builds import Builds

        return Builds(self, programs, workers, processes)

    def kernel(self, family: str, name: str, precision: str = "fp32",
               defines: dict | None = None) -> "cl.Kernel":
        """Kernel `name` of `opencl/<family>.cl` for `precision` and `defines` (cached)."""
        options = self.build_options(precision, defines)
        key = (family, name, options)
        k = self._kernels.get(key)
        if k is None:
            k = getattr(self.program(family, options), name)
            self._kernels[key] = k
        return k

    # --- work-group sizes -------------------------------------------------------------------
    def local_size(self, kernel, preferred: tuple) -> tuple:
        """Shrink `preferred` (halving the largest dim) until it fits device and kernel limits."""
        limit = min(self.max_wg, kernel.get_work_group_info(
            cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device))
        ls = list(preferred)
        for i, s in enumerate(ls):
            ls[i] = max(1, min(s, self.max_wg_dims[i]))
        while math.prod(ls) > limit:
            i = max(range(len(ls)), key=lambda j: ls[j])
            ls[i] = max(1, ls[i] // 2)
        return tuple(ls)

    def launch(self, kernel, global_size, local_size, *args, wait_for=None):
        """Enqueue `kernel`; the global size is rounded up to the local size. Returns the event."""
        gs = tuple(round_up(int(g), int(l)) for g, l in zip(global_size, local_size))
        kernel.set_args(*args)
        return cl.enqueue_nd_range_kernel(self.queue, kernel, gs, tuple(local_size),
                                          wait_for=wait_for)

    # --- buffers ----------------------------------------------------------------------------
    def check_alloc(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_alloc:
            raise SdsimError(f"buffer '{what}' needs {nbytes / 2**20:.1f} MiB, more than "
                             f"{self.device.name.strip()}'s CL_DEVICE_MAX_MEM_ALLOC_SIZE "
                             f"({self.max_alloc / 2**20:.1f} MiB)")

    def alloc(self, n_elems: int, precision: str = "fp32", what: str = "buffer"):
        """An uninitialised device buffer of `n_elems` elements in storage precision."""
        nbytes = max(1, int(n_elems)) * np.dtype(DTYPES[precision]).itemsize
        self.check_alloc(nbytes, what)
        return cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, nbytes)

    def to_device(self, array, precision: str = "fp32", what: str = "buffer"):
        """Copy a host array to a new device buffer, converted to storage precision."""
        host = converted(array, DTYPES[precision])
        self.check_alloc(host.nbytes, what)
        if host.nbytes == 0:
            return self.alloc(1, precision, what)
        return cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                         hostbuf=host)

    def from_device(self, buf, shape, precision: str = "fp32", wait_for=None) -> np.ndarray:
        """Read a device buffer back as a float32 array of `shape`."""
        host = np.empty(shape, dtype=DTYPES[precision])
        if host.size:
            cl.enqueue_copy(self.queue, host, buf, wait_for=wait_for)
        return host.astype(np.float32)

    def constant(self, key, make):
        """A device object made once per runtime by `make()` (transform matrices, dummy buffers)."""
        if key not in self._constants:
            self._constants[key] = make()
        return self._constants[key]

    def finish(self) -> None:
        self.queue.finish()

    def gated(self, timeout_s: float = GATE_TIMEOUT_S) -> "Gate":
        """A Gate on this runtime's queue (use as a context manager)."""
        return Gate(self, timeout_s)

    def lead(self, n: int) -> list:
        """Enqueue `n` small dispatches (a read of a 16 KiB buffer each): the stream a pipeline's
        dispatch sits deep in. Behind a gate, an H100's small kernels measure 1.2-2 us longer
        after a hundred dispatches than right behind a cache flush (ew_add of 2x77x768: 4.4 us
        behind the flush, 5.6 us after 100), as they do in `sdsim validate`'s gated runs; its
        GEMMs the same either way. Returns their events."""
        if n <= 0:
            return []
        buf = self.constant("lead", lambda: cl.Buffer(
            self.ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
            hostbuf=np.zeros(LEAD_BYTES // 4, np.uint32)))
        touch = self._touch()
        return [touch(self.queue, (1024,), None, buf, np.uint32(LEAD_BYTES // 4), buf)
                for _ in range(n)]

    def _touch(self):
        """The kernel that reads a buffer (TOUCH_SOURCE), built once: the cache flush and the
        lead dispatches run it."""
        return self.constant("touch", lambda: cl.Program(self.ctx, TOUCH_SOURCE).build().touch)

    def duplicate(self, buf):
        """A new buffer holding a copy of `buf` (enqueued; the queue orders it)."""
        out = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, buf.size)
        cl.enqueue_copy(self.queue, out, buf)
        return out

    def copy_words(self, pairs) -> list:
        """Enqueue a kernel copy (COPY_SOURCE) of each (source, destination) pair of buffers of
        one size: the destination written by a dispatch, its lines as that leaves them in the
        caches. Returns the events."""
        kernel = self.constant("copy_words", lambda: cl.Program(self.ctx, COPY_SOURCE)
                               .build().copy_words)
        return [kernel(self.queue, (min(65536, dst.size // 4),), None, dst, src,
                       np.uint32(dst.size // 4)) for src, dst in pairs if dst.size // 4]

    def flush_caches(self, keep=()) -> None:
        """Enqueue a fill of FLUSH_BYTES (capped at the largest allocation), then a read of each
        buffer of `keep`: the state a pipeline's dispatch starts in, its weights last read a
        whole network earlier (cold) and its activations just written by the previous dispatch
        (cached), not the inputs its previous repeat left cached."""
        flush = self.constant("flush", lambda: cl.Buffer(
            self.ctx, cl.mem_flags.READ_WRITE, min(FLUSH_BYTES, self.max_alloc)))
        touch = self._touch()
        cl.enqueue_fill_buffer(self.queue, flush, np.uint32(0), 0, flush.size)
        for buf in keep:
            n = buf.size // 4
            if n:
                touch(self.queue, (min(65536, n),), None, buf, np.uint32(n), flush)
