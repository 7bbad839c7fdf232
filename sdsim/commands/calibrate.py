"""`sdsim calibrate`: measure an OpenCL device and write its profile and calibration report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sdsim import provenance
from sdsim.errors import SdsimError
from sdsim.output import FORMATS, dumps, render_rows
from sdsim.paths import written_report_path
from sdsim.repeats import HELP as STATISTIC_HELP
from sdsim.repeats import STATISTICS

HELP = "measure an OpenCL device and fit its per-kernel timing model into a device profile"
DESCRIPTION = (
    "Measures streaming bandwidth, the FP32 and fp16-storage arithmetic rate and the launch "
    "overhead, then sweeps every kernel variant over synthetic shapes (SD1.4's own layer shapes "
    "are rejected: they are the validation's held-out test) in random order with warm-up, "
    "repeats and a spread check (a kernel body the draw leaves short of 12 cases gets more "
    "from its variants' pools of synthetic shapes), and fits each kernel body's timing "
    "coefficients "
    "(sdsim/cost/waves.py: waves of work-groups, each walking its serial steps) with 20% of the "
    "cases held out; cases that first fit misses by more than 20% are measured again after the "
    "sweep and keep their faster pass (other work on the machine only adds time). Writes a "
    "device profile whose every number cites the calibration report written beside it "
    "(reports/calibration-NAME.md) and the hash of the kernel sources it measured. The old "
    "profile is replaced only when the calibration completes. About 5-8 minutes on a GPU, "
    "10-25 on a 2-core CPU device; the measurements are stored beside the report, and --refit "
    "fits them again without the device; --quick is a small sweep for tests."
)


def add_arguments(p):
    p.add_argument("--platform",
                   help="OpenCL platform index or name substring (default: the first)")
    p.add_argument("--cl-device", help="OpenCL device index or name substring (default: the first)")
    p.add_argument("--out", required=True, metavar="NAME|FILE.yaml",
                   help="profile to write: a bare NAME goes to the user profile folder (found "
                        "by name afterwards, see 'sdsim devices'), or a .yaml path; an existing "
                        "profile of this device keeps its other precision's coefficients and "
                        "its tuning, one of another device is replaced whole (with a warning)")
    p.add_argument("--name", help="profile name (default: the --out file's stem)")
    p.add_argument("--report", help="calibration report path (default: calibration-NAME.md "
                                    "next to the profile; reports/ for a profile in a source "
                                    "checkout's device_profiles/)")
    p.add_argument("--quick", action="store_true",
                   help="small buffers and the small shape mix (CPU devices, tests)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="storage precision of the sweep; the profile keeps the coefficients an "
                        "earlier run measured at the other precision (with its kernel sources' "
                        "hash, which predict warns on when they changed), so one profile "
                        "predicts both")
    p.add_argument("--repeat", type=int, default=5,
                   help="timed runs per case, reduced by --statistic (at most 3 for a case "
                        "whose warm-up run takes 0.1 s or more, whose spread is small)")
    p.add_argument("--statistic", choices=tuple(STATISTICS), default="median",
                   help=STATISTIC_HELP)
    p.add_argument("--feed", choices=("gated", "host"), default="gated",
                   help="how each timed run's dispatches reach the device: gated, enqueued "
                        "behind a gate and run back to back, as validate times a pipeline; "
                        "host, started one at a time as the host enqueues them (small kernels "
                        "then measure longer on a fast GPU)")
    p.add_argument("--lead", type=int, default=None, metavar="N",
                   help="small dispatches run ahead of each timed case, after its cache flush, "
                        "so that it sits deep in a stream as a pipeline's dispatch does (small "
                        "kernels measure longer there on a GPU); default 100, 0 times each case "
                        "right behind its flush")
    p.add_argument("--refit", metavar="FILE.json", nargs="+",
                   help="fit the timing model again to the measurements an earlier calibration "
                        "stored beside its report (calibration-NAME.json), without a device: "
                        "for a newer sdsim's model, or a device measured once; several files "
                        "(one device, precision and kernel build) fit together, the first "
                        "giving the device figures: more sweeps, fewer shapes the fit misses")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a short summary for reading, one JSON object for scripts "
                        "(the files written, the device, the seconds taken and the held-out "
                        "error), or that object's fields as one csv or markdown row")


def run(args) -> int:
    from sdsim.calibration import sweep
    from sdsim.calibration.run import calibrate
    from sdsim.calibration.write import write
    from sdsim.cl.runtime import Runtime

    t0 = time.perf_counter()          # the JSON's `seconds`: this command's wall time
    out = _out_path(args.out)
    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    if args.lead is not None and args.lead < 0:
        raise SdsimError(f"--lead must be >= 0 (got {args.lead})")
    command = provenance.command("calibrate", f"sdsim calibrate --out {out}")
    if args.refit:
        return _refit(args, out, command, t0)
    name = args.name or out.stem
    report = Path(args.report or written_report_path(out, _report_file(name, args.precision)))
    rt = Runtime(args.platform, args.cl_device)
    if out.exists() and _same_device(out, rt):
        # sweep under the kernel builds the profile was tuned for (sdsim tune)
        from sdsim.cost.profile import load_profile
        from sdsim.kernels import tuning

        try:
            old = load_profile(str(out))
        except SdsimError as e:
            print(f"warning: {e}; calibrating with the default kernel builds", file=sys.stderr)
        else:
            if old.tuning:
                tuning.activate(tuning.for_profile(old))
    cal = calibrate(rt, name, quick=args.quick, precision=args.precision, repeat=args.repeat,
                    command=command, gated=args.feed == "gated",
                    lead=sweep.LEAD if args.lead is None else args.lead,
                    statistic=args.statistic)
    _summary(cal, write(cal, out, report), out, report, args.format, t0)
    return 0


def _same_device(out: Path, rt) -> bool:
    """Whether the profile at `out` was measured on the runtime's device; where not, a warning
    before the sweep, which then replaces that profile whole (its other precision's
    coefficients and its tuning describe the other device)."""
    from sdsim.calibration.write import calibrated_elsewhere
    from sdsim.cost.profile import measured_by

    why = calibrated_elsewhere(out, measured_by(rt))
    if why:
        print(f"warning: {why}; this calibration replaces it whole (its other precision's "
              "coefficients and its tuning are not kept): give another --out to keep it, or "
              "pick its device by index (`sdsim devices --opencl` lists them)", file=sys.stderr)
    return why is None


def _refit(args, out: Path, command: str, t0: float) -> int:
    """--refit: the stored measurements fitted again; the profile and report are rewritten."""
    from sdsim.calibration import store
    from sdsim.calibration.run import fitted
    from sdsim.calibration.write import calibrated_elsewhere, write
    from sdsim.cost.profile import measured_on

    cal = store.load(args.refit[0], command)
    for line in store.merge(cal, [(p, store.load(p, command)) for p in args.refit[1:]]):
        print(f"skipped {line}", file=sys.stderr)
    cal.name = args.name or out.stem
    report = Path(args.report or written_report_path(out, _report_file(cal.name, cal.precision)))
    here = measured_on(cal.device, cal.device_info["opencl"], cal.driver)
    if why := calibrated_elsewhere(out, here):
        print(f"warning: {why}; this refit replaces it whole (its other precision's "
              "coefficients are not kept): give another --out to keep it", file=sys.stderr)
    fitted(cal)
    _summary(cal, write(cal, out, report), out, report, args.format, t0,
             refit=" ".join(args.refit))
    return 0


def _summary(cal, data: dict, out: Path, report: Path, fmt: str = "table",
             t0: float | None = None, refit: str | None = None) -> None:
    """What a calibration wrote: a few lines, one JSON object (--format json), or its fields as
    one csv / markdown row (the held-out error's as heldout_*)."""
    from sdsim.calibration.fit import errors

    held = errors([p for p in cal.points if p.heldout])
    if fmt != "table":
        seconds = 0.0 if t0 is None else time.perf_counter() - t0
        obj = summary_json(cal, data, out, report, held, seconds, refit)
        if fmt == "json":
            print(dumps(obj))
        else:
            row = {k: v for k, v in obj.items() if k not in ("schema_version", "heldout")}
            print(render_rows([{**row, **{f"heldout_{k}": v for k, v in obj["heldout"].items()}}],
                              fmt))
        _warn_noise(cal)
        return
    name = cal.name
    print(f"{name}: {cal.device}")
    print(f"  bandwidth {data['dram_bandwidth']['value']} GB/s, fp32 "
          f"{data['peak_fp32']['value']} GFLOP/s, fp16 {data['peak_fp16']['value']} GFLOP/s, "
          f"launch {data['launch_overhead']['value']} us")
    others = (f" (and {sum(m['cases'] or 0 for m in cal.merged)} of {len(cal.merged)} other "
              f"sweep{'s' if len(cal.merged) > 1 else ''})" if cal.merged else "")
    print(f"  {cal.sweep['cases']} cases{others}, {len(cal.coefficients)} kernel bodies fitted; "
          f"held-out median |error| {held.get('median_abs_error_pct', float('nan')):.3g}%, "
          f"{held.get('within10_time_pct', float('nan')):.3g}% of held-out time within +-10%")
    probe = cal.micro.get("overlap")
    if probe:
        print("  launch overlap: " + (
            f"up to {probe['hidden_us']:.2g} us of a dispatch hidden behind one of "
            f"{probe['over_us']:.3g} us or longer" if probe["hidden_us"] else "none measured")
            + ("" if "overlap" in data["coefficients"] else
               " (probed behind a compute-only dispatch: not applied)"))
    print(f"wrote {out}, {report} and its measurements")
    _warn_noise(cal)


def _warn_noise(cal) -> None:
    """A warning on stderr where the sweep's timings were noisy (sweep.noisy), whatever the
    output format."""
    from sdsim.calibration import sweep

    noise = sweep.noisy(cal.points)
    if noise:
        print(f"warning: {noise}", file=sys.stderr)


def summary_json(cal, data: dict, out: Path, report: Path, held: dict, seconds: float,
                 refit: str | None = None) -> dict:
    """The object `sdsim calibrate --format json` prints (sdsim/schemas/calibrate.schema.json):
    the files written, the profile's device figures in SI units (read back through the profile
    schema, so they are what `predict` uses), the sweep's size and the held-out error."""
    from sdsim.calibration import store
    from sdsim.cost.profile import parse_profile
    from sdsim.schemas import SCHEMA_VERSION

    prof = parse_profile(data, str(out))
    return {
        "schema_version": SCHEMA_VERSION,
        "device": cal.name,
        "opencl_device": cal.device,
        "precision": cal.precision,
        "sweep": cal.mix,
        "refit": None if refit is None else str(refit),
        "profile": str(out),
        "report": str(report),
        "measurements": str(store.json_path(report)),
        "seconds": float(seconds),
        "peak_fp32_flops_per_s": float(prof.peak_flops["fp32"]),
        "peak_fp16_flops_per_s": float(prof.peak_flops["fp16"]),
        "native_half": bool(prof.native_half),
        "dram_bandwidth_bytes_per_s": float(prof.dram_bandwidth),
        "launch_overhead_s": float(prof.launch_overhead),
        "cases": int(cal.sweep["cases"]),
        "kernel_bodies": len(cal.coefficients),
        "heldout": {k: (int(v) if k == "points" else float(v)) for k, v in held.items()},
        "overlap": (None if (o := prof.overlap_for(cal.precision)) is None else
                    {"hidden_s": o.hidden, "over_s": o.over, "lead_s": o.lead}),
    }


def _out_path(text: str) -> Path:
    """--out: a .yaml path as given, or a bare name in the user profile folder."""
    from sdsim.paths import user_profiles_dir

    out = Path(text)
    if out.suffix in (".yaml", ".yml"):
        return out
    if out.suffix or len(out.parts) > 1 or not text.strip():
        raise SdsimError(f"--out {text}: a device profile is a .yaml file, or a bare NAME for "
                         "the user profile folder")
    return user_profiles_dir() / f"{text}.yaml"


def _report_file(name: str, precision: str) -> str:
    """The calibration report's file name: an fp32-storage sweep's says so."""
    return f"calibration-{name}{'' if precision == 'fp16' else '-' + precision}.md"
