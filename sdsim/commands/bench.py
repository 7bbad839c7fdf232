"""`sdsim bench`: run every OpenCL kernel variant, check it against NumPy, report speed and error."""

from __future__ import annotations

import argparse
import math
import sys
import time

from sdsim.errors import SdsimError
from sdsim.output import FORMATS, dumps, in_units, render_rows
from sdsim.precision import ARITH_HELP, ARITHS
from sdsim.schemas import SCHEMA_VERSION

HELP = "run and time every OpenCL kernel variant, checked against the NumPy reference"
DESCRIPTION = (
    "Runs each kernel variant record (sdsim/kernels: conv2d, linear, group_norm, layer_norm, "
    "gelu, attention, elementwise) on an OpenCL device at its bench shapes, SD1.4's (or small "
    "shapes with --quick), through the launcher the OpenCL backend uses, checks the result "
    "against the record's float64 NumPy reference, and prints the median time of the timed "
    "dispatches (OpenCL events), GFLOP/s and GB/s from the variant's cost formulas, and the max "
    "abs error. Exits 1 if any result is outside its tolerance. "
    "With --suite sd it runs every variant that can run each of the UNet's own layer shapes "
    "(traced at --resolution, batch --batch; identical ops grouped and counted): per (variant, "
    "shape) the calls per UNet call, time, GFLOP/s and fraction of the device's arithmetic "
    "peak in the storage precision, measured in the same run (--peak to give one), GB/s and "
    "fraction of the measured bandwidth for memory-bound variants, the check against the "
    "reference, the "
    "speed-up over the family's baseline (conv2d direct, attention naive, group_norm naive, gelu "
    "standalone) and the fastest variant at that shape; then, per family and variant, the "
    "time-weighted (by calls) fraction of peak. Cases whose time at 5% of the roofline exceeds "
    "--point-budget-s, or that come after --budget-s, are listed as skipped."
)

SUITES = ("records", "sd")
#: SI field of a row or summary row -> (table and CSV column, factor)
UNITS = {"time_s": ("time_ms", 1e3), "flops_per_s": ("gflops", 1e-9),
         "bytes_per_s": ("gbps", 1e-9), "time_per_call_s": ("ms_per_call", 1e3)}
#: options whose default depends on the suite are absent from args unless given (and the help
#: shows the defaults in words, not argparse's "None")
NOT_GIVEN = argparse.SUPPRESS
#: options that only --suite sd reads (default None: given or not)
SD_ONLY = ("model", "resolution", "batch", "limit", "budget_s", "point_budget_s", "peak",
           "bandwidth", "report")


def add_arguments(p):
    p.add_argument("--suite", default="records", metavar="{records,sd}",
                   help="records: each variant at its record's bench shapes; sd: each variant at "
                        "the UNet's own layer shapes")
    p.add_argument("--platform", help="OpenCL platform index or name substring (default: first)")
    p.add_argument("--cl-device", help="OpenCL device index or name substring (default: first)")
    p.add_argument("--device", metavar="PROFILE",
                   help="a device profile, as in predict: run the GEMM builds tuned into it "
                        "(sdsim tune; default: the defaults for the device's type)")
    p.add_argument("--quick", action="store_true",
                   help="small shapes (seconds on a CPU); --suite records only")
    p.add_argument("--family", nargs="+", metavar="F",
                   help="only these families (e.g. conv2d linear attention) or variants "
                        "(conv2d/winograd_f4; with --suite sd the family's baseline runs too)")
    p.add_argument("--precision", choices=("fp32", "fp16", "both"), default=NOT_GIVEN,
                   help="storage precision of the runs (default: both for --suite records, "
                        "fp32 for --suite sd)")
    p.add_argument("--arith", choices=tuple(ARITHS), help=ARITH_HELP)
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per variant (median)")
    p.add_argument("--tuning", metavar="PROFILE", help="the same as --device")
    g = p.add_argument_group("--suite sd")
    g.add_argument("--model", default=NOT_GIVEN,
                   help="model preset or diffusers folder (default: sd14)")
    g.add_argument("--resolution", type=int, default=NOT_GIVEN,
                   help="image size in pixels the UNet is traced at (default: 512; 256 is "
                        "sensible on a CPU)")
    g.add_argument("--batch", type=int, default=NOT_GIVEN,
                   help="UNet batch (default: 2, classifier-free guidance)")
    g.add_argument("--limit", type=int, default=NOT_GIVEN, metavar="N",
                   help="only the N heaviest shapes of each family (calls x roofline time)")
    g.add_argument("--budget-s", type=float, default=NOT_GIVEN, metavar="S",
                   help="start no case after S seconds (from the command's start); the rest "
                        "are listed as skipped")
    g.add_argument("--point-budget-s", type=float, default=NOT_GIVEN, metavar="S",
                   help="skip a case whose time at 5%% of the roofline exceeds S seconds "
                        "(default: 2 on CPUs, 5 on GPUs, as sdsim calibrate)")
    g.add_argument("--peak", type=float, default=NOT_GIVEN, metavar="GFLOPS",
                   help="the device's arithmetic peak in GFLOP/s (default: measured with "
                        "calibrate.cl's fma_rate in the storage precision)")
    g.add_argument("--report", default=NOT_GIVEN, metavar="PATH.md",
                   help="also write the tables as a Markdown report (with the command, date, "
                        "commit, machine load, device and kernel builds) and PATH.json")
    g.add_argument("--bandwidth", type=float, default=NOT_GIVEN, metavar="GBPS",
                   help="the device's DRAM bandwidth in GB/s (default: measured with a "
                        "streaming copy)")


def run(args) -> int:
    for name in (*SD_ONLY, "precision"):
        if not hasattr(args, name):
            setattr(args, name, None)
    if args.suite not in SUITES:
        raise SdsimError(f"--suite: unknown suite '{args.suite}'; expected one of "
                         f"{', '.join(SUITES)}")
    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    profile = args.device or args.tuning
    if args.device and args.tuning and args.device != args.tuning:
        raise SdsimError(f"--device {args.device} and --tuning {args.tuning} name different "
                         "profiles; give one (the OpenCL device is --cl-device)")
    if profile:
        from sdsim.kernels import tuning

        try:
            tuning.activate_profile(profile)
        except SdsimError as e:
            raise SdsimError(f"{e} (--device names a profile; pick the OpenCL device with "
                             "--cl-device)") from None
    if args.suite == "sd":
        return run_sd(args)
    given = [o for o in SD_ONLY if getattr(args, o, None) is not None]
    if given:
        raise SdsimError(f"--{given[0].replace('_', '-')} applies to --suite sd only")
    return run_records(args)


def run_records(args) -> int:
    from tqdm import tqdm

    from sdsim.cl.bench import all_cases, run_case
    from sdsim.cl.runtime import Runtime

    rt = Runtime(args.platform, args.cl_device, args.arith)
    _announce(rt)
    precision = args.precision or "both"
    precisions = ("fp32", "fp16") if precision == "both" else (precision,)
    cases = all_cases("quick" if args.quick else "full", args.family, precisions)
    if not cases:
        raise SdsimError(f"no bench cases for --family {' '.join(args.family or [])}")
    rows = []
    bar = tqdm(cases, desc=f"bench on {rt.device.name.strip()} (fp16 in {rt.arith} arithmetic)",
               unit="kernel", file=sys.stderr, disable=None)
    for case in bar:
        bar.set_postfix_str(f"{case.family}/{case.variant} {case.precision}")
        row = run_case(rt, case, repeat=args.repeat)
        rows.append(dict(row, arith=rt.arith_for(case.precision)))
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "suite": "records",
                     "opencl_device": rt.name, "arith": rt.arith, "rows": rows}))
    else:
        if args.format == "table":
            print(_device_line(rt))
        print(render_rows(in_units(rows, UNITS), args.format))
    return _exit_status(rows)


def _device_line(rt) -> str:
    return f"bench on {rt.name}; fp16 storage in {rt.arith} arithmetic"


def _announce(rt) -> None:
    """Name the OpenCL device as the runs start, on a terminal (where the progress bars show);
    the results name it too: a table's first line, the JSON's `opencl_device`."""
    if sys.stderr.isatty():
        print(_device_line(rt), file=sys.stderr, flush=True)


def _exit_status(rows) -> int:
    bad = [r for r in rows if r["ok"] is False]
    if bad:
        print(f"sdsim bench: {len(bad)} of {len(rows)} results outside tolerance: "
              + ", ".join(f"{r['family']}/{r['variant']} {r['precision']}" for r in bad),
              file=sys.stderr)
        return 1
    return 0


def _check_sd_args(args):
    if args.quick:
        raise SdsimError("--quick selects the small shapes of --suite records; bound --suite sd "
                         "with --resolution, --limit, --budget-s or --point-budget-s")
    for name, low in (("resolution", 1), ("batch", 1), ("limit", 1)):
        v = getattr(args, name)
        if v is not None and v < low:
            raise SdsimError(f"--{name} must be at least {low} (got {v})")
    for name in ("budget_s", "point_budget_s", "peak", "bandwidth"):
        v = getattr(args, name)
        if v is not None and not (v > 0):
            raise SdsimError(f"--{name.replace('_', '-')} must be a positive number (got {v})")


def run_sd(args) -> int:
    from tqdm import tqdm

    from sdsim import kernels, provenance
    from sdsim.calibration.run import BUDGET_S
    from sdsim.cl import bench
    from sdsim.cl.runtime import Runtime
    from sdsim.kernels import tuning
    from sdsim.model.presets import load_model_config

    start, load_before = time.perf_counter(), provenance.load()
    _check_sd_args(args)
    model = args.model or "sd14"
    resolution = args.resolution or 512
    batch = args.batch or 2
    precision = args.precision or "fp32"
    precisions = ("fp32", "fp16") if precision == "both" else (precision,)
    if args.family:
        known = {r.family for r in kernels.records()} | {r.key for r in kernels.records()}
        unknown = [f for f in args.family if f not in known]
        if unknown:
            raise SdsimError(f"--family: unknown family or variant '{unknown[0]}'; families: "
                             f"{', '.join(sorted({r.family for r in kernels.records()}))}")
    cfg = load_model_config(model)
    from sdsim.backends.trace import check_size

    check_size(cfg, resolution, resolution)
    points = bench.model_shapes(cfg, "unet", resolution, batch, precisions[0])

    rt = Runtime(args.platform, args.cl_device, args.arith)
    _announce(rt)
    kind = tuning.device_type(rt.device).upper()
    point_budget = args.point_budget_s or BUDGET_S[kind]   # calibrate's per-case budget
    budget = args.budget_s or math.inf
    if args.peak is None or args.bandwidth is None:
        print(f"measuring the peak of {rt.device.name.strip()} (calibrate.cl)...", file=sys.stderr)
        rates, bw = bench.device_peaks(rt, precisions)
    peaks = {p: args.peak * 1e9 if args.peak else rates[p] for p in precisions}
    bw = args.bandwidth * 1e9 if args.bandwidth else bw

    plan = {p: bench.select_shapes(points, p, peaks[p], bw, args.family, args.limit)
            for p in precisions}
    if not any(kept for kept, _ in plan.values()):
        raise SdsimError(f"no UNet op of --family {' '.join(args.family)}")
    total = sum(len(pt.variants(args.family)) for kept, _ in plan.values() for pt in kept)
    bar = tqdm(total=total, desc=f"bench sd on {rt.device.name.strip()} (fp16 in {rt.arith} "
               "arithmetic)", unit="case",
               file=sys.stderr, disable=None)

    def progress(case):
        bar.update(1)
        bar.set_postfix_str(f"{case.family}/{case.variant} {case.precision}")

    rows, summary, left_out = [], [], []
    for p in precisions:
        kept, left = plan[p]
        got = bench.suite_rows(rt, kept, p, peaks[p], bw, args.repeat, point_budget, budget,
                               args.family, progress, start=start)
        rows += got
        summary += [dict(s, precision=p) for s in bench.suite_summary(got, peaks[p], bw)]
        left_out += [{"family": pt.family, "shape": pt.label(), "calls": pt.calls,
                      "precision": p} for pt in left]
    bar.close()

    meta = {"schema_version": SCHEMA_VERSION, "suite": "sd", "opencl_device": rt.name,
            "arith": rt.arith, "model": cfg.name, "component": "unet",
            "resolution": resolution, "batch": batch, "peak_flops_per_s": peaks,
            "peak_source": "--peak" if args.peak else "measured: calibrate.cl fma_rate",
            "bandwidth_bytes_per_s": bw,
            "bandwidth_source": "--bandwidth" if args.bandwidth else "measured: calibrate.cl copy4",
            "point_budget_s": point_budget, "budget_s": budget if budget < math.inf else None,
            "limit": args.limit}
    if args.format == "json":
        print(dumps(dict(meta, rows=rows, summary=summary, left_out_by_limit=left_out)))
    else:
        _print_sd(args.format, meta, rows, summary, left_out, len(precisions) > 1)
    if args.report:
        _write_report(args.report, rt, meta, rows, summary, left_out, len(precisions) > 1,
                      load_before, time.perf_counter() - start)
    return _exit_status(rows)


def _write_report(path, rt, meta, rows, summary, left_out, both, load_before, seconds):
    """The suite's tables as Markdown (and JSON beside it), with where and how they were
    measured."""
    import contextlib
    import io

    from sdsim import provenance
    from sdsim.kernels import tuning
    from sdsim.output import write_pair

    t = tuning.current()
    # called from Python: the settings that matter
    command = provenance.command("bench", (
        f"sdsim bench --suite sd --model {meta['model']} --resolution {meta['resolution']} "
        f"--batch {meta['batch']}" + (f" --limit {meta['limit']}" if meta["limit"] else "")))
    ctx = {"command": command, "date": provenance.now(),
           "commit": provenance.commit(), "load_before": load_before,
           "load_after": provenance.load(), "seconds": round(seconds, 1),
           "driver": rt.device.driver_version.strip(),
           "tuning": {"source": t.source, "gemm": {c: g.name for c, g in t.gemm.items()},
                      **t.launches}}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _print_sd("markdown", meta, rows, summary, left_out, both)
    head = (f"# Kernel variants at the UNet's own layer shapes: {meta['opencl_device']}\n\n"
            f"Produced by `{ctx['command']}` on {ctx['date']} (sdsim {ctx['commit']}), driver "
            f"{ctx['driver']}, {ctx['seconds']} s; 1-minute load {ctx['load_before']} before, "
            f"{ctx['load_after']} after. GEMM builds: {ctx['tuning']['source']} "
            f"({', '.join(f'{c} {g}' for c, g in ctx['tuning']['gemm'].items())}; FlashAttention "
            f"{ctx['tuning']['flash_rows']} rows; Winograd transforms in "
            f"{ctx['tuning']['wino_group']} work-groups); fp16 builds in {meta['arith']} arithmetic. "
            "`vs_base`: speed-up over the family's "
            "baseline at that shape (conv2d direct, attention naive); `paper`: the variant "
            "`--opt paper` runs there.\n\n")
    md, js = write_pair(path, head + buf.getvalue(),
                        dict(meta, context=ctx, rows=rows, summary=summary,
                             left_out_by_limit=left_out))
    print(f"wrote {md} and {js}", file=sys.stderr)


def _print_sd(fmt, meta, rows, summary, left_out, both):
    if fmt == "csv":
        print(render_rows(in_units(rows, UNITS), fmt))
        print()
        print(render_rows(in_units(summary, UNITS), fmt))
        return
    peaks = ", ".join(f"{v / 1e9:.4g} GFLOP/s {p}" for p, v in meta["peak_flops_per_s"].items())
    print(f"UNet of {meta['model']} at {meta['resolution']}x{meta['resolution']}, batch "
          f"{meta['batch']}, on {meta['opencl_device']}: peak {peaks} ({meta['peak_source']}), "
          f"bandwidth {meta['bandwidth_bytes_per_s'] / 1e9:.4g} GB/s ({meta['bandwidth_source']})")
    print()
    print(render_rows([_display(r, both) for r in rows], fmt))
    print()
    print("per family: time-weighted (by calls) fractions of peak and bandwidth, over the "
          "shapes each variant ran")
    print(render_rows([_display_summary(s, both) for s in summary], fmt))
    skipped = [r for r in rows if r["status"].startswith(("skipped", "not run"))]
    if skipped:
        print(f"\n{len(skipped)} of {len(rows)} cases skipped (see 'check'); --point-budget-s "
              "or --budget-s runs more")
    if left_out:
        print(f"\n{len(left_out)} shapes ({sum(x['calls'] for x in left_out)} calls) left out "
              f"by --limit {meta['limit']}")


def _pct(x):
    return None if x is None else 100.0 * x


def _display_summary(s: dict, both: bool) -> dict:
    s = in_units([s], UNITS)[0]
    out = {"family": s["family"], "variant": s["variant"]}
    if both:
        out["precision"] = s["precision"]
    out.update({"shapes run": f"{s['shapes_run']}/{s['shapes']}", "calls": s["calls"],
                "ms per UNet call": s["ms_per_call"], "%peak": _pct(s["frac_peak"]),
                "%bw": _pct(s["frac_bw"]), "fastest at": s["fastest_at"]})
    return out


def _display(r: dict, both: bool) -> dict:
    pct = _pct
    r = in_units([r], UNITS)[0]
    if r["ok"]:
        check = "ok"
    elif r["ok"] is False:
        check = "FAIL"
    else:
        check = r["status"]
    out = {"variant": f"{r['family']}/{r['variant']}", "shape": r["shape"]}
    if both:
        out["precision"] = r["precision"]
    out.update({"calls": r["calls"], "ms": r["time_ms"],
                "GFLOP/s": r["gflops"], "%peak": pct(r["frac_peak"]),
                "GB/s": r["gbps"], "%bw": pct(r["frac_bw"]),
                "vs_base": r["speedup"], "fastest": "*" if r["fastest"] else "",
                "paper": "p" if r["paper"] else "", "max_abs_err": r["max_abs_err"],
                "check": check})
    return out
