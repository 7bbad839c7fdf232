"""The validation report: metrics, per-class table, predicted-vs-measured plot (PNG), the worst
ten calls with an explanation, and (given baseline and optimized runs) each optimization's
measured and predicted speed-up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from sdsim import atomic, repeats
from sdsim.cost.waves import BEYOND
from sdsim.errors import SdsimError
from sdsim.lower.options import Options
from sdsim.model.components import COMPONENTS
from sdsim.output import dumps, render_rows
from sdsim.validation import drift
from sdsim.validation.compare import CallRow, by_class

#: the validation goal: end-to-end error and share of measured time in calls within +-10%
GOAL_E2E_PCT, GOAL_TIME_PCT = 5.0, 90.0
GOAL = (f"e2e error within +-{GOAL_E2E_PCT:g}% and >= {GOAL_TIME_PCT:g}% of measured time in "
        "calls within +-10%")


def meets_goal(metrics: dict) -> bool:
    """Whether a run's metrics (sdsim/validation/compare.py `metrics`) meet GOAL."""
    return bool(abs(metrics["e2e_error_pct"]) <= GOAL_E2E_PCT
                and metrics["acc10_time_pct"] >= GOAL_TIME_PCT)


#: how the measured runs were fed to the device (`validate --launch`), for the report's header
LAUNCH = {"gated": "Launch: each measured run enqueued behind a gate and released at once, so "
                   "its dispatches ran back to back as a host that keeps ahead of the device "
                   "runs them (`--launch gated`). ",
          "host": "Launch: as the Python host enqueued them (`--launch host`), so a device "
                  "faster than the host idled between dispatches. "}


def plot(rows_by_opt: dict, path, title: str) -> None:
    """Log-log scatter of predicted vs measured per call, coloured by kernel variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows_by_opt)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 5.6), squeeze=False)
    variants = sorted({f"{r.family}/{r.variant}" for rows in rows_by_opt.values() for r in rows})
    colours = plt.get_cmap("tab20")
    for ax, (opt, rows) in zip(axes[0], rows_by_opt.items()):
        for i, v in enumerate(variants):   # one colour per variant in every panel
            rs = [r for r in rows if f"{r.family}/{r.variant}" == v]
            if rs:
                ax.scatter([r.measured_s * 1e3 for r in rs], [r.predicted_s * 1e3 for r in rs],
                           s=10, alpha=0.7, label=v, color=colours(i % 20))
        lo = min(min(r.measured_s, r.predicted_s) for r in rows) * 1e3 * 0.8
        hi = max(max(r.measured_s, r.predicted_s) for r in rows) * 1e3 * 1.25
        xs = [lo, hi]
        ax.plot(xs, xs, "k-", lw=0.8, label="predicted = measured")
        ax.fill_between(xs, [x * 0.9 for x in xs], [x * 1.1 for x in xs], color="0.85",
                        alpha=0.6, label="+-10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured ms (OpenCL event)")
        ax.set_ylabel("predicted ms (cost model)")
        ax.set_title(f"--opt {opt}")
        ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _noise_split(ctx: dict) -> str:
    """How the noise ceiling splits the runs (sdsim.validation.compare.noise)."""
    if ctx.get("statistic", "median") == "min":
        return ("The fastest of the first half of the measured runs taken as the prediction of "
                "the fastest of the others")
    return "The first measured run taken as the prediction of the median of the others"


def _launch(ctx: dict, runs: list) -> str:
    """The report's launch sentence; it names the --opt runs a gate's watchdog had to open."""
    launch = ctx.get("launch", "host")
    opened = [r["opt"] for r in runs
              if launch == "gated" and r.get("gated_runs", 0) < r.get("repeat", 1)]
    return LAUNCH[launch] + (f"The gate's watchdog opened it in runs of --opt "
                             f"{', '.join(opened)}: the host fed those as it went. "
                             if opened else "")


def markdown(ctx: dict, runs: list, effect: list, profile, plot_name: str) -> str:
    """ctx: name, command, date, device, profile path, component, resolution, batch, precision."""
    L = [f"# Validation of `{ctx['profile']}` on {ctx['device']}", "",
         f"- Command: `{ctx['command']}`",
         f"- Date: {ctx['date']}" + (f", sdsim commit {ctx['commit']}" if ctx.get("commit")
                                     else ""),
         f"- OpenCL device: {ctx['device']}",
         f"- Profile: `{ctx['profile_path']}` (calibrated separately on synthetic shapes; not "
         "fitted to this run)",
         *([f"- Predictions: {ctx['repredicted']}"] if ctx.get("repredicted") else []),
         f"- Workload: {ctx['component']}"
         + (f" at {ctx['resolution']}x{ctx['resolution']} pixels"
            if COMPONENTS[ctx["component"]].spatial else " (the prompt's full token length)")
         + f", batch {ctx['batch']}, {ctx['precision']} storage"
         + (f" in {ctx['arith']} arithmetic" if ctx.get("arith") else "")
         + (f", weights of `{ctx['weights']}`" if ctx.get("weights")
            else ", random seeded weights (timing does not depend on values)"),
         "- Measured: each dispatch's OpenCL event duration (end - start), "
         f"{repeats.WORDS[ctx.get('statistic', 'median')]} of "
         f"{ctx.get('repeat', 1)} run(s) after {ctx['warmup']} warm-up run(s); end-to-end = "
         "their sum (device time). " + _launch(ctx, runs)
         + "Predicted: sdsim/cost/waves.py per call of the same kernel plan.",
         f"- Machine load (1-min average) at the end of the run: {ctx.get('load', 'not recorded')}",
         *([f"- Device speed against its calibration: {drift.sentence(ctx['drift'])}."]
           if "drift" in ctx else []),
         f"- Calibration: {ctx.get('calibration') or 'none (coefficients from specifications)'}"
         + (f"; its held-out synthetic error: {ctx['heldout']}" if ctx.get("heldout") else ""),
         f"- Goal: {GOAL}.", ""]
    L += ["## Summary", ""]
    summ = []
    for run in runs:
        m = run["metrics"]
        summ.append({"opt": run["opt"], "calls": m["calls"], "measured_s": m["measured_s"],
                     "predicted_s": m["predicted_s"], "e2e_error_%": m["e2e_error_pct"],
                     "RMSPE_%": m["rmspe_pct"], "calls_±10%": m["acc10_calls_pct"],
                     "time_±10%": m["acc10_time_pct"], "calls_±15%": m["acc15_calls_pct"],
                     "time_±15%": m["acc15_time_pct"],
                     "beyond_sweep_time_%": m.get("beyond_time_pct", 0.0), "wall_s": run["wall_s"],
                     "goal": "met" if meets_goal(m) else "missed"})
    L += [render_rows(summ, "markdown", floatfmt=".4g"), "",
          f"![predicted vs measured]({plot_name})", ""]
    noise = [{"opt": r["opt"], "runs": r.get("repeat", 1),
              "e2e_%": r["noise"]["e2e_error_pct"], "RMSPE_%": r["noise"]["rmspe_pct"],
              "time_±10%": r["noise"]["acc10_time_pct"], "calls_±10%": r["noise"]["acc10_calls_pct"]}
             for r in runs if r.get("noise")]
    if noise:
        L += ["## Noise ceiling: the measurement against itself", "",
              f"{_noise_split(ctx)}: the "
              "best agreement any model could show on this machine.", "",
              render_rows(noise, "markdown", floatfmt=".4g"), ""]
    if effect:
        L += ["## Effect of each optimization: measured vs predicted speed-up", "",
              "Speed-up of the kernels of the ops each switch governs (baseline time / optimized "
              "time), same graph, both runs above.", "",
              render_rows(effect, "markdown", floatfmt=".4g"), ""]
    for run in runs:
        rows = run["rows"]
        L += [f"## --opt {run['opt']}: by kernel variant", "",
              render_rows(by_class(rows, "variant"), "markdown", floatfmt=".4g"), "",
              f"## --opt {run['opt']}: by kernel class", "",
              render_rows(by_class(rows), "markdown", floatfmt=".4g"), ""]
        missing = [c for c in by_class(rows) if abs(c["error_pct"]) > 15
                   and c["share_of_time_pct"] >= 5]
        if missing:
            L += ["Classes that miss (error over 15% and at least 5% of measured time): "
                  + "; ".join(f"{c['class']} ({c['error_pct']:+.0f}%, "
                              f"{c['share_of_time_pct']:.0f}% of time)" for c in missing)
                  + ".", ""]
        L += _beyond(run, profile, ctx["precision"])
        worst = sorted(rows, key=lambda r: abs(r.predicted_s - r.measured_s), reverse=True)[:10]
        L += [f"### --opt {run['opt']}: the ten calls with the largest absolute error", ""]
        L += [render_rows([{"identity": r.identity, "scope": r.scope, "class": r.kernel_class,
                            "measured_ms": r.measured_s * 1e3,
                            "predicted_ms": r.predicted_s * 1e3,
                            "error_%": 100 * r.error, "predicted as": r.why}
                           for r in worst], "markdown", floatfmt=".4g"), ""]
    if ctx.get("notes"):
        L += ["## Notes", "", ctx["notes"], ""]
    L += ["## Every call", ""]
    for run in runs:
        L += [f"<details><summary>--opt {run['opt']}: {len(run['rows'])} calls</summary>", "",
              render_rows([{"identity": r.identity, "scope": r.scope, "class": r.kernel_class,
                            "bound": r.bound, "measured_ms": r.measured_s * 1e3,
                            "predicted_ms": r.predicted_s * 1e3, "error_%": 100 * r.error}
                           for r in run["rows"]], "markdown", floatfmt=".4g"), "", "</details>",
              ""]
    return "\n".join(L)


def _beyond(run, profile, precision: str) -> list[str]:
    """The run's calls whose prediction extrapolates past its kernel body's calibration sweep:
    how much time they hold, how well they were predicted, and the five longest (nothing where
    the profile records no sweep to compare with)."""
    far = sorted((r for r in run["rows"] if r.beyond), key=lambda r: -r.measured_s)
    if not far:
        swept = any(c.swept for c in profile.coefficients_for(precision).values())
        return ["No call lies beyond its kernel body's calibration sweep.", ""] if swept else []
    m = run["metrics"]
    return [(f"Calls beyond their kernel body's calibration sweep (their predictions "
             f"extrapolate): {len(far)}, {m['beyond_time_pct']:.1f}% of measured time, "
             f"{m['beyond_acc10_time_pct']:.0f}% of it within +-10%; the longest:"), "",
            render_rows([{"identity": r.identity, "measured_ms": r.measured_s * 1e3,
                          "error_%": 100 * r.error,
                          "beyond": r.why.split(BEYOND, 1)[1].split(")")[0].lstrip(" (")}
                         for r in far[:5]], "markdown", floatfmt=".4g"), ""]


def write(path, ctx, runs, effect, profile) -> Path:
    """The report, its plot (skipped where matplotlib is missing) and the raw results as JSON
    beside it (`sdsim validate --replay` re-renders a report from that file)."""
    path = Path(path)
    png = path.with_suffix(".png")
    try:
        plot({r["opt"]: r["rows"] for r in runs}, png,
             f"{ctx['component']} {ctx['resolution']}px on {ctx['device']}")
    except ImportError:
        ctx = dict(ctx, notes=(ctx.get("notes") or "") + " (plot not drawn: matplotlib missing)")
    atomic.write_text(path, markdown(ctx, runs, effect, profile, png.name))
    atomic.write_text(path.with_suffix(".json"), dumps(
        {"ctx": ctx, "effect": effect,
         "runs": [{k: ([dataclasses.asdict(r) for r in v] if k == "rows" else
                       dataclasses.asdict(v) if k == "options" else v)
                   for k, v in run.items()} for run in runs]}))
    return png


def load(path) -> tuple[dict, list, list]:
    """(ctx, runs, effect) from the JSON a report was written with."""
    try:
        data = json.loads(Path(path).read_text())
        runs = [dict(run, rows=[CallRow(**r) for r in run["rows"]],
                     options=Options(**run["options"])) for run in data["runs"]]
        return data["ctx"], runs, data["effect"]
    except OSError as e:
        raise SdsimError(f"{path}: cannot read validation results ({e.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SdsimError(f"{path}: not the .json of a validation report "
                         f"({type(e).__name__}: {e})") from None
