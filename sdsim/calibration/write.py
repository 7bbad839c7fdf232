"""A Calibration as a device profile (YAML, schema of device_profiles/README.md) and as the
Markdown report every number of that profile cites."""

from __future__ import annotations

from pathlib import Path

import yaml

from sdsim import atomic
from sdsim.cost.profile import parse_profile
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES
from sdsim.output import render_rows


def _q(value, unit, source):
    return {"value": float(f"{value:.6g}"), "unit": unit, "source": source}


def profile_dict(cal, report_rel: str) -> dict:
    """The profile of a calibration; sources name the report and the section of each figure."""
    m, info = cal.micro, cal.device_info
    src = lambda what: f"sdsim calibrate, {report_rel} ({what}); measured {cal.date}"
    eff = {}
    for cls in KERNEL_CLASSES:
        c = cal.classes.get(cls)
        if c is None:
            raise SdsimError(f"calibration of {cal.device} measured no kernel of class '{cls}'; "
                             "cannot write efficiency." + cls)
        eff[cls] = _q(c["efficiency"], "fraction", src(
            f"kernel classes: time-weighted roofline/measured over {c['samples']} dispatches on "
            f"synthetic shapes, {cal.precision} storage"
            + (f"; measured ratio {c['ratio']:.3g} capped at 1" if c["ratio"] > 1 else "")))
    return {
        "name": cal.name,
        "soc": f"OpenCL {info['type']} device, {info['compute_units']} compute units "
               f"(host {info['host']})",
        "gpu": cal.device.split(" / ", 1)[-1],
        "api": f"{' '.join(info['opencl'].split()[:2])} ({cal.device.split(' / ', 1)[0]}, "
               f"driver {cal.driver})",
        "notes": (f"Calibrated by `{cal.command}` on {cal.date}; every figure is a measurement in "
                  f"{report_rel}. Peak rates and bandwidth are what microbenchmarks reach through "
                  "this OpenCL implementation, not spec-sheet numbers."),
        "peak_fp32": _q(m["rates"]["fp32"] / 1e9, "GFLOP/s", src(
            "arithmetic rate: independent multiply-add chains, fp32")),
        "peak_fp16": _q(m["rates"]["fp16"] / 1e9, "GFLOP/s", src(
            "arithmetic rate: the same chains in the fp16 build, "
            + ("native half arithmetic (cl_khr_fp16)" if info["fp16"] else
               "float arithmetic since the device lacks cl_khr_fp16, as fp16-storage kernels do"))),
        "dram_bandwidth": _q(m["bandwidth"] / 1e9, "GB/s", src(
            f"streaming float4 copy of {m['bandwidth_bytes'] / 2**20:.0f} MiB, read+write")),
        "local_memory": _q(info["local_mem"], "B", "CL_DEVICE_LOCAL_MEM_SIZE queried by sdsim "
                           f"calibrate ({report_rel})"),
        "cache": _q(max(info["cache"], 1), "B", "CL_DEVICE_GLOBAL_MEM_CACHE_SIZE queried by sdsim "
                    f"calibrate ({report_rel})"),
        "max_allocation": _q(info["max_alloc"], "B", "CL_DEVICE_MAX_MEM_ALLOC_SIZE queried by "
                             f"sdsim calibrate ({report_rel})"),
        "launch_overhead": _q(cal.launch_s * 1e6, "us", src(
            "launch overhead: median OpenCL event duration of an empty dispatch, the per-dispatch "
            "cost that event-timed kernels show")),
        "efficiency": eff,
    }


def report_markdown(cal, profile_rel: str, plot_name: str | None = None) -> str:
    m, info = cal.micro, cal.device_info
    lines = [
        f"# Calibration of {cal.device}",
        "",
        f"- Command: `{cal.command}`",
        f"- Date: {cal.date}",
        f"- Device: {cal.device}, driver {cal.driver}, {info['opencl']}; {info['compute_units']} "
        f"compute units at {info['clock_mhz']} MHz, {info['global_mem'] / 2**30:.1f} GiB global "
        f"memory, {info['local_mem'] / 1024:.0f} KiB local memory, "
        f"cl_khr_fp16: {'yes' if info['fp16'] else 'no'}; host {info['host']}",
        f"- Profile written: `{profile_rel}`",
        f"- Kernel-class mix: `{cal.mix}`, {cal.precision} storage",
        "",
        "## Device microbenchmarks (opencl/calibrate.cl)",
        "",
        "| figure | value | how |",
        "|---|---|---|",
        f"| streaming bandwidth | {m['bandwidth'] / 1e9:.4g} GB/s | float4 copy of "
        f"{m['bandwidth_bytes'] / 2**20:.0f} MiB, 2 x bytes / time, best of 5 |",
        f"| arithmetic rate fp32 | {m['rates']['fp32'] / 1e9:.4g} GFLOP/s | 16 independent "
        f"multiply-add chains x {m['rate_iters']} iterations x {m['rate_work_items']} work-items, "
        "best of 3 |",
        f"| arithmetic rate fp16 build | {m['rates']['fp16'] / 1e9:.4g} GFLOP/s | same, "
        + ("native half" if info["fp16"] else "float arithmetic (no cl_khr_fp16)") + " |",
        f"| launch overhead (event) | {m['launch']['event_s'] * 1e6:.3g} us | median event "
        "duration of an empty 1-work-item dispatch (used as `launch_overhead`) |",
        f"| dispatch spacing | {m['launch']['spacing_s'] * 1e6:.3g} us | back-to-back empty "
        "dispatches, first start to last end / count (informational) |",
        "",
        "## Kernel-class efficiency",
        "",
        "efficiency = sum of roofline times / sum of (measured - launch overhead) over the class's "
        "dispatches; roofline time = max(FLOPs / rate, DRAM bytes / bandwidth) with the rate and "
        "bandwidth above and the FLOPs and bytes of sdsim.kernels' cost formulas. Capped at 1.",
        "",
    ]
    rows = []
    for cls in KERNEL_CLASSES:
        c = cal.classes.get(cls)
        if c:
            rows.append({"class": cls, "efficiency": c["efficiency"], "measured ratio": c["ratio"],
                         "dispatches": c["samples"], "measured ms": c["measured_s"] * 1e3})
    lines += [render_rows(rows, "markdown", floatfmt=".4g"), ""]
    lines += ["## Every measured dispatch (synthetic shapes, not SD1.4's layers)", ""]
    rows = [{"family/variant": f"{s.family}/{s.variant}",
             "shape": " ".join(f"{k}={_fmt(v)}" for k, v in s.shape.items()),
             "kernel": s.kernel, "class": s.kernel_class, "bound": s.bound,
             "measured ms": s.measured_s * 1e3, "roofline ms": s.roofline_s * 1e3,
             "efficiency": s.roofline_s / max(s.measured_s - cal.launch_s, 1e-12)}
            for s in cal.samples]
    lines += [render_rows(rows, "markdown", floatfmt=".4g"), ""]
    return "\n".join(lines)


def _fmt(v):
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def write(cal, profile_path, report_path) -> dict:
    """Write the profile (validated against the schema before it lands) and the report."""
    profile_path, report_path = Path(profile_path), Path(report_path)
    rel = lambda p: _relative(p)
    data = profile_dict(cal, rel(report_path))
    parse_profile(data, str(profile_path))   # never write a profile that would not load
    header = (f"# {cal.name}: calibrated by sdsim calibrate on {cal.date}. Schema: "
              "device_profiles/README.md; sources: the calibration report.\n")
    atomic.write_text(profile_path, header + yaml.safe_dump(data, sort_keys=False, width=200))
    atomic.write_text(report_path, report_markdown(cal, rel(profile_path)))
    return data


def _relative(p: Path) -> str:
    from sdsim.paths import ROOT

    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)
