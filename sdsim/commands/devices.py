"""`sdsim devices`: the device profiles sdsim knows, one line each; with --opencl, this machine's
OpenCL devices, the indices --platform and --cl-device take."""

from __future__ import annotations

import warnings

from sdsim.cost.profile import known_profiles, load_profile
from sdsim.output import FORMATS, dumps, in_units, render_rows
from sdsim.schemas import SCHEMA_VERSION

HELP = "list the device profiles (device_profiles/*.yaml), or with --opencl this machine's devices"
DESCRIPTION = ("One line per profile sdsim knows: GPU, SoC, API, peak FP16/FP32 rate, DRAM "
               "bandwidth and launch overhead; every number's source is in the YAML file. "
               "--opencl lists this machine's OpenCL devices instead: the platform and device "
               "indices --platform and --cl-device take, type, compute units, clock, memory, "
               "native half (cl_khr_fp16), which one the commands use by default (the first GPU, "
               "else PoCL, passing over a device that builds no program, as PoCL on a CPU its "
               "LLVM does not know), and the calibrated profiles measured on it; --half adds "
               "each half device's half library (its half exp and subnormal fma, which --backend "
               "sim --half-of mirrors), read off it in about a second.")

#: SI field -> (table column, factor)
UNITS = {"peak_fp16_flops_per_s": ("fp16_TFLOPs", 1e-12),
         "peak_fp32_flops_per_s": ("fp32_TFLOPs", 1e-12),
         "dram_bandwidth_bytes_per_s": ("DRAM_GBps", 1e-9), "launch_overhead_s": ("launch_us", 1e6)}


def add_arguments(p):
    p.add_argument("--opencl", action="store_true",
                   help="list this machine's OpenCL devices instead of the profiles")
    p.add_argument("--half", action="store_true",
                   help="with --opencl: read each cl_khr_fp16 device's half library off it")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")


def _opencl(args) -> int:
    from sdsim.cl.runtime import device_table
    from sdsim.cost.profile import measured_on, other_device

    calibrated = [load_profile(n) for n in known_profiles()]
    calibrated = [p for p in calibrated if p.coefficients]
    rows = []
    for platform, device, name, r in device_table():
        api = measured_on(name, r["opencl"], r["driver"])["api"]
        r["profiles"] = [p.name for p in calibrated if other_device(p, name, api) is None]
        r["half_library"] = None
        if args.half and r["fp16"]:
            from sdsim.cl.half_probe import probe
            from sdsim.errors import SdsimError
            with warnings.catch_warnings():   # PyOpenCL's "Non-empty compiler output"
                warnings.simplefilter("ignore")
                try:
                    r["half_library"] = probe(platform, device).describe()
                except SdsimError as e:   # a device whose half fma follows no one rule
                    r["half_library"] = f"not read: {e}"
        rows.append(r)
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "opencl_devices": rows}))
        return 0
    table = [{**{k: v for k, v in r.items()
                 if k not in ("global_memory_bytes", "build_error", "opencl")},
              "global_memory_GiB": round(r["global_memory_bytes"] / 2**30, 1),
              "profiles": ", ".join(r["profiles"]) or "-"} for r in rows]
    if not args.half:
        for r in table:
            del r["half_library"]
    print(render_rows(table, args.format, floatfmt=".3g"))
    if args.format == "table":
        print("default: the device the commands use without --platform and --cl-device; "
              "profiles: the calibrated profiles measured on it, through this platform and driver "
              "(a profile measured elsewhere "
              "predicts this device only roughly: `sdsim calibrate --platform N --cl-device M`)")
        for r in rows:
            if r["build_error"]:
                print(f"{r['platform']} / {r['device']} builds no program here, so the "
                      f"commands pass it over unless asked for it: {r['build_error']}")
        for line in _shared_names(rows):
            print(line)
    return 0


def _shared_names(rows) -> list[str]:
    """A line for each platform name several platforms share (PyPI's and Debian's PoCL): which
    one `--platform NAME` takes, so that a user names the other by its index."""
    from sdsim.cl.runtime import platforms, select_device
    from sdsim.errors import SdsimError

    by_name: dict = {}
    for r in rows:
        index, name = r["platform"].split(": ", 1)
        by_name.setdefault(name, set()).add(int(index))
    lines = []
    for name, indices in by_name.items():
        if len(indices) < 2:
            continue
        try:
            taken = platforms().index(select_device(name).platform)
        except SdsimError:   # none of them builds programs
            continue
        lines.append(f"platforms {', '.join(map(str, sorted(indices)))} share the name "
                     f"'{name}': --platform '{name}' takes {taken}, the first whose device "
                     "builds programs; name another by its index")
    return lines


def run(args) -> int:
    if args.half and not args.opencl:
        from sdsim.errors import SdsimError
        raise SdsimError("--half reads the half library of this machine's OpenCL devices: add "
                         "--opencl")
    if args.opencl:
        return _opencl(args)
    rows = []
    for name in known_profiles():
        p = load_profile(name)
        rows.append({"name": p.name, "gpu": p.gpu, "soc": p.soc, "api": p.api,
                     "peak_fp16_flops_per_s": p.peak_flops["fp16"],
                     "peak_fp32_flops_per_s": p.peak_flops["fp32"], "native_half": p.native_half,
                     "dram_bandwidth_bytes_per_s": p.dram_bandwidth,
                     "launch_overhead_s": p.launch_overhead})
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "devices": rows}))
    else:
        print(render_rows(in_units(rows, UNITS), args.format, floatfmt=".3g"))
    return 0
