"""`sdsim validate`: run a component on an OpenCL device, predict it, compare call by call."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from sdsim import provenance
from sdsim.errors import SdsimError
from sdsim.model.components import COMPONENTS, OPENCL
from sdsim.output import FORMATS, dumps, in_units, render_rows
from sdsim.paths import report_path
from sdsim.precision import ARITH_HELP, ARITHS
from sdsim.repeats import HELP as STATISTIC_HELP
from sdsim.repeats import STATISTICS
from sdsim.schemas import SCHEMA_VERSION

HELP = "run a component on an OpenCL device and compare every kernel call with its prediction"
DESCRIPTION = (
    "Runs the component (random seeded weights: timing does not depend on values) on an OpenCL "
    "device through the kernel plan of each --opt, times every dispatch with OpenCL events, "
    "predicts the same calls with the device profile, and reports end-to-end error, RMSPE and the "
    "share of calls and of measured time within +-10% and +-15%. Writes "
    "validation-NAME.md (see --report) with a predicted-vs-measured plot and the worst calls "
    "explained. "
    "The OpenCL device is chosen with --platform and --cl-device (--device names the profile, as "
    "in 'sdsim predict')."
)


def add_arguments(p):
    p.add_argument("--device", help="profile name or path to a YAML profile (required, except "
                   "with --replay: then the profile the stored run names)")
    p.add_argument("--platform", help="OpenCL platform index or name substring (default: the first)")
    p.add_argument("--cl-device", help="OpenCL device index or name substring (default: the first)")
    p.add_argument("--component", choices=OPENCL, default="unet",
                   help="which model call to run")
    p.add_argument("--resolution", type=int,
                   help="image size in pixels (default: the model's own, 512 for SD1.x)")
    p.add_argument("--batch", type=int, default=2, help="UNet/text-encoder batch (CFG: 2)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="storage precision")
    p.add_argument("--model", default="sd14", help="model preset (or the folder --weights "
                   "gives)")
    p.add_argument("--weights", metavar="PATH|REPO",
                   help="time a checkpoint's weights instead of seeded random ones: a diffusers "
                        "folder (its config replaces --model), a CompVis .safetensors (SD1.4), "
                        "or a repo id in the Hugging Face cache; the kernels and their times "
                        "do not depend on the values")
    p.add_argument("--opt", nargs="+", default=["paper"],
                   help="one or more optimization settings, each as in predict (paper, none, "
                        "or a list of switch=value on the set named first), given as words or "
                        "in one comma list where each set name starts the next setting "
                        "(paper,none is 'paper none'); with two or more the report adds each "
                        "switch's measured vs predicted speed-up")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the measured ones")
    p.add_argument("--repeat", type=int, default=3,
                   help="measured runs; each call's time is their --statistic, and the first "
                        "run against the median of the others (with min, the fastest of the "
                        "first half against that of the others) is the noise ceiling (needs "
                        ">= 2; 4 or more with min)")
    p.add_argument("--statistic", choices=tuple(STATISTICS),
                   help=f"{STATISTIC_HELP} (default: the one the profile's calibration at "
                        "this precision used, median where it does not say)")
    p.add_argument("--launch", choices=("gated", "host"), default="gated",
                   help="gated: each measured run's dispatches are all enqueued behind a gate, "
                        "then run back to back, as a host that keeps ahead of the device feeds "
                        "them (and as calibration times them); host: as this Python host "
                        "enqueues them, so a fast device idles between dispatches")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--name", help="report name: validation-NAME.md (default: the profile's "
                                  "name)")
    p.add_argument("--report", help="report path (overrides --name); 'none' writes no report "
                                    "(default: next to the --device or --replay file when it "
                                    "is the user's own, else in the current folder)")
    p.add_argument("--notes", help="text for the report's Notes section")
    p.add_argument("--replay", metavar="JSON",
                   help="re-render the report from the .json a previous run wrote beside its "
                        "report (no device needed), e.g. to draw the plot on another machine")
    p.add_argument("--repredict", action="store_true",
                   help="with --replay: predict every stored call again with the profile "
                        "(today's model and coefficients, e.g. after 'sdsim calibrate --refit'); "
                        "the measured times stay")
    p.add_argument("--arith", choices=tuple(ARITHS), help=ARITH_HELP)
    p.add_argument("--trace", metavar="FILE.json",
                   help="also write the first --opt run as a Chrome/Perfetto trace: predicted "
                        "and measured timelines of the same dispatches side by side")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: tables under a line naming the OpenCL device, json (the "
                        "schema's object), csv (one row per --opt) or markdown")


def run(args) -> int:
    from sdsim.backends.opencl.run import ComponentRunner
    from sdsim.backends.trace import check_size
    from sdsim.cl.runtime import Runtime
    from sdsim.cost.predict import predict_component
    from sdsim.cost.profile import load_profile, measured_by, profile_warnings
    from sdsim.lower.options import parse_opt, split_settings
    from sdsim.model.components import COMPONENTS
    from sdsim.model.presets import load_model_config, native_resolution
    from sdsim.validation import compare, drift, report

    if args.warmup < 0:
        raise SdsimError(f"--warmup must be >= 0 (got {args.warmup})")
    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    if args.repredict and not args.replay:
        raise SdsimError("--repredict predicts the calls of a stored run again; give --replay "
                         "JSON")
    if args.replay:
        if (args.report or "").lower() == "none":
            raise SdsimError("--replay re-renders a report; --report none would write nothing")
        ctx, runs, effect = report.load(args.replay)
        profile = load_profile(args.device or _replay_profile(ctx, args.replay))
        if "heldout" not in ctx:
            ctx = dict(ctx, heldout=_heldout(ctx.get("calibration")))
        if args.notes:
            ctx = dict(ctx, notes=args.notes)
        if args.repredict:
            runs, effect = compare.repredict(ctx, runs, profile)
            cal_report = _calibration_report(profile, ctx["precision"])
            ctx = dict(ctx, repredicted=_repredicted(profile), calibration=cal_report,
                       heldout=_heldout(cal_report))
        path = Path(args.report) if args.report else report_path(
            args.replay, Path(args.replay).with_suffix(".md").name)
        report.write(path, ctx, runs, effect, profile)
        return _print(args.format, ctx, profile.name, runs, effect, path)
    if not args.device:
        raise SdsimError("--device PROFILE is required: the profile whose predictions the run "
                         "is compared with (see 'sdsim devices')")
    profile = load_profile(args.device)
    opts = [(o, parse_opt(o)) for o in split_settings(args.opt)]
    cfg = load_model_config(args.model)
    if args.resolution is None:
        args.resolution = native_resolution(cfg)
    if COMPONENTS[args.component].spatial:   # before any output: a bad size is one error line
        check_size(cfg, args.resolution, args.resolution)
    weights = None
    if args.weights:
        cfg, weights = _checkpoint(args.weights, args.component)
    from sdsim.kernels import tuning

    tuning.activate(tuning.for_profile(profile))   # run the kernel builds the profile predicts
    rt = Runtime(args.platform, args.cl_device, args.arith)
    if sys.stderr.isatty():   # where the progress bar shows: the results name it too
        print(f"validating {args.component} on {rt.name}, profile {profile.name}",
              file=sys.stderr)
    for warn in profile_warnings(profile, args.precision, (rt.name, measured_by(rt)["api"])):
        print(f"warning: {warn}", file=sys.stderr)
    slow = _slow_warning(rt, args)
    if slow:
        print(f"warning: {slow}", file=sys.stderr)
    device = rt.device.name.strip()
    cal_report = _calibration_report(profile, args.precision)
    statistic = args.statistic or _statistic(profile, args.precision)
    if statistic == "min" and 1 < args.repeat < 4:
        print(f"warning: with the fastest run as each call's time, the noise ceiling sets the "
              f"fastest of the first half of the runs against that of the others, and "
              f"--repeat {args.repeat} leaves one run in the first half, which reads as noise "
              "what the fastest of several gains: give --repeat 4 or more", file=sys.stderr)
    refs, feed = _drift_cases(cal_report, args.precision)
    before = _drift(rt, refs, feed, args, "before", statistic)
    bar = tqdm(total=len(opts) * (args.warmup + args.repeat), unit="run", file=sys.stderr,
               disable=True if args.format == "json" else None)   # None: only on a terminal
    runs = []
    for text, opt in opts:
        runner = ComponentRunner(rt, args.component, cfg, opt, args.precision, args.resolution,
                                 args.batch, weights=weights, seed=args.seed)
        bar.set_description(f"{args.component} --opt {text}, {len(runner.plan)} calls a run, "
                            f"on {device}")
        weights = runner.weights
        for _ in range(args.warmup):
            runner.run()
            bar.update()
        results = []
        for _ in range(args.repeat):
            results.append(runner.run(gated=args.launch == "gated"))
            bar.update()
        res = results[0]
        pred = predict_component(runner.graph, 1, profile, opt, args.precision)
        measured = compare.timings([r.timings for r in results], statistic)
        rows = compare.join(measured, pred.kernels)
        if args.trace and not runs:
            from sdsim import timeline

            timeline.write(args.trace, timeline.predicted_events(profile.name, [pred])
                           + timeline.measured_events(f"measured on {rt.name}",
                                                      args.component, measured),
                           {"device": rt.name, "profile": profile.name, "opt": text,
                            "component": args.component, "resolution": args.resolution,
                            "precision": args.precision})
        runs.append({"opt": text, "options": opt, "rows": rows, "metrics": compare.metrics(rows),
                     "noise": compare.noise([r.timings for r in results], statistic),
                     "wall_s": res.wall_s, "buffers": res.pool_buffers,
                     "buffer_bytes": res.pool_bytes, "repeat": args.repeat,
                     "gated_runs": sum(r.gated for r in results)})
        del runner
    bar.close()
    drifted = (drift.summary(before, _drift(rt, refs, feed, args, "after", statistic))
               if refs else None)
    if drift.warning(drifted):
        print(f"warning: {drift.warning(drifted)}", file=sys.stderr)
    effect = compare.effect(runs)
    name = args.name or profile.name
    path = None
    ctx = {"profile": profile.name, "profile_path": _rel(profile.path),
           "command": provenance.command("validate", "sdsim validate (API)"),
           "date": provenance.now(),
           "device": rt.name, "model": args.model, "component": args.component,
           "resolution": args.resolution,
           "batch": args.batch, "precision": args.precision,
           "arith": rt.arith_for(args.precision),   # fp32 storage computes in float
           "warmup": args.warmup, "weights": args.weights, "launch": args.launch,
           "repeat": args.repeat, "statistic": statistic, "load": provenance.load(),
           "commit": provenance.commit(),
           "calibration": cal_report, "heldout": _heldout(cal_report),
           "drift": drifted, "notes": args.notes}
    if (args.report or "").lower() != "none":
        path = Path(args.report) if args.report else report_path(profile.path,
                                                                 f"validation-{name}.md")
        report.write(path, ctx, runs, effect, profile)
    return _print(args.format, ctx, profile.name, runs, effect, path)


def _print(fmt: str, ctx: dict, profile: str, runs: list, effect: list, path) -> int:
    """A run's results (live or replayed) on stdout: the JSON object, one CSV row per --opt, or
    tables under a line naming the OpenCL device they were measured on."""
    if fmt == "json":
        print(dumps(_to_json(ctx, profile, runs, effect, path)))
        return 0
    rows = [{"opt": r["opt"], **r["metrics"],
             **{f"noise_{k}": v for k, v in (r["noise"] or {}).items()
                if k in ("e2e_error_pct", "acc10_time_pct")}} for r in runs]
    wrote = f"wrote {_rel(path)}" if path else None
    if fmt == "csv":
        print(render_rows(rows, fmt))
        if wrote:
            print(wrote, file=sys.stderr)
        return 0
    size = (f"{ctx['resolution']}x{ctx['resolution']}" if COMPONENTS[ctx["component"]].spatial
            else "full prompt")
    print(f"{ctx['component']} {size} {ctx['precision']} storage, {ctx.get('arith')} "
          f"arithmetic on {ctx['device']}, profile {profile}")
    print(render_rows(rows, fmt))
    if effect:
        print()
        print(render_rows(effect, fmt))
    if wrote:
        print(wrote)
    return 0


#: optimization_effect's fields -> their SI names in JSON
EFFECT_SI = {f"{side}_{end}_ms": (f"{side}_{end}_s", 1e-3)
             for side in ("measured", "predicted") for end in ("baseline", "optimized")}


def _to_json(ctx: dict, profile: str, runs: list, effect: list, path) -> dict:
    """The object `--format json` prints (sdsim/schemas/validate.schema.json), from a run's
    context, its runs and the optimizations' effect (live or replayed): the first --opt's
    metrics at the top level, every --opt's in `runs`."""
    return {"schema_version": SCHEMA_VERSION, "device": profile, "opencl_device": ctx["device"],
            "component": ctx["component"], "resolution": ctx["resolution"],
            "batch": ctx["batch"], "precision": ctx["precision"], "arith": ctx.get("arith"),
            "opt": runs[0]["opt"], "statistic": ctx.get("statistic", "median"),
            **runs[0]["metrics"],
            "runs": [{"opt": r["opt"], **r["metrics"], "wall_s": r["wall_s"]} for r in runs],
            "optimization_effect": in_units(effect, EFFECT_SI),
            "report": str(path) if path else None,
            "device_drift": ({k: ctx["drift"][k] for k in ("ratio_before", "ratio_after")}
                             if ctx.get("drift") else None)}


def _repredicted(profile) -> str:
    """The line a re-predicted report states: the command, date, commit and profile."""
    cmd = provenance.command("validate", "sdsim validate --replay --repredict (API)")
    return (f"every call predicted again by `{cmd}` on {provenance.now()}, sdsim commit "
            f"{provenance.commit()}, profile {_rel(profile.path)}; the measured times are "
            "those of the run above")


def _replay_profile(ctx: dict, replay: str) -> str:
    """The profile a stored run was predicted with: its path when it still exists, else its
    name."""
    from sdsim.paths import ROOT

    stored = ctx.get("profile_path")
    if stored:   # stored relative to the source checkout, or absolute
        for candidate in (Path(stored), ROOT / stored):
            if candidate.is_file():
                return str(candidate)
    if ctx.get("profile"):
        return ctx["profile"]
    raise SdsimError(f"{replay}: names no profile; give --device")


def _slow_warning(rt, args) -> str | None:
    """A heads-up before a run that takes minutes: a full-size UNet or VAE on a CPU device."""
    import pyopencl as cl

    spatial = args.component in ("unet", "vae_decoder") and args.resolution >= 512
    if not (rt.device.type & cl.device_type.CPU and spatial and args.model != "tiny"):
        return None
    return (f"{args.component} at {args.resolution}x{args.resolution} on a CPU device takes "
            "minutes per run (a 2-core PoCL machine: 15-30 s per UNet call at 256x256, 4x "
            "that at 512x512); --resolution 256 or --model tiny for a quick look")


def _checkpoint(name: str, component: str):
    """(model config, checked weights of `component`'s folder) of a checkpoint."""
    from sdsim.model.components import COMPONENTS, FOLDERS
    from sdsim.model.hub import resolve_model
    from sdsim.model.presets import PRESETS, load_model_config
    from sdsim.model.weights import load_weights

    path = resolve_model(name)
    cfg = load_model_config(str(path)) if path.is_dir() else PRESETS["sd14"]
    folder = COMPONENTS[component].folder
    return cfg, load_weights(path)[folder].check(FOLDERS[folder].build(cfg))


def _drift_cases(cal_report: str | None, precision: str) -> tuple[list, tuple[bool, int]]:
    """The calibration cases the drift check measures again (none without the calibration's
    measurements at this precision), and how the calibration fed them (drift.feed)."""
    from sdsim.validation import drift

    meas = drift.load_measurements(cal_report)
    if not meas or meas["precision"] != precision:
        return [], (True, 0)
    return drift.reference_cases(meas), drift.feed(meas)


def _drift(rt, refs: list, feed: tuple[bool, int], args, when: str, statistic: str) -> list:
    """The reference cases measured now (sdsim/validation/drift.py), their runs reduced by
    `statistic`."""
    from sdsim.validation import drift

    if not refs:
        return []
    if args.format != "json":
        print(f"checking the device's speed against its calibration ({when} the runs)",
              file=sys.stderr)
    return drift.measure(rt, refs, args.precision, feed, statistic)


def _statistic(profile, precision: str) -> str:
    """How the calibration whose coefficients time calls at this precision reduced its timed
    runs (sdsim/repeats.py): a validation times its calls the same way by default."""
    return profile.calibration_for(precision).get("statistic", "median")


def _calibration_report(profile, precision: str) -> str | None:
    """The calibration report whose coefficients time calls at this storage precision."""
    return profile.calibration_for(precision).get("report")


def _heldout(report: str | None) -> str | None:
    """The held-out summary line of the calibration report the profile cites, if readable."""
    from sdsim.paths import ROOT

    if not report:
        return None
    try:
        text = (ROOT / report).read_text()
    except OSError:
        return None
    return next((line for line in text.splitlines() if line.startswith("All variants:")), None)


def _rel(p) -> str:
    from sdsim.paths import ROOT

    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)
