"""The validation report: metrics, per-class table, predicted-vs-measured plot (PNG), the worst
ten calls with an explanation, and (given baseline and optimized runs) each optimization's
measured and predicted speed-up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from sdsim import atomic
from sdsim.cost.roofline import roofline
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES
from sdsim.lower.options import Options
from sdsim.output import dumps, render_rows
from sdsim.validation.compare import CallRow, by_class

GOAL = "e2e error within +-10% and >= 80% of measured time in calls within +-15%"


def explain(r, profile, precision: str) -> str:
    """Why one call's prediction misses: its achieved fraction of the roofline against its
    class's calibrated efficiency, and what about the call makes them differ."""
    launch = profile.launch_overhead
    eff = profile.efficiency[r.kernel_class]
    roof = max(roofline(r, profile.peak_flops[precision], profile.dram_bandwidth))
    achieved = roof / max(r.measured_s - launch, 1e-12)
    side = "slower" if r.measured_s > r.predicted_s else "faster"
    why = [f"{r.bound}-bound by the formula; reached {achieved:.3g} of the roofline where the "
           f"{r.kernel_class} class was calibrated at {eff:.3g}, so it ran {side} than predicted"]
    if roof < 5 * launch or (side == "slower" and achieved < eff / 5):
        why.append("little work per dispatch or too few work-groups to fill the device (e.g. "
                   "few output channels, 8x8 latents, one work-group per group): idle compute "
                   "units and fixed costs the launch-overhead term does not cover")
    elif r.bound == "memory" and side == "faster":
        why.append("the tiled-traffic formula charges operand re-reads that the cache served")
    elif side == "slower" and r.kernel_class in ("gemm", "conv", "attention"):
        why.append("this shape tiles worse than the calibration shapes (edge tiles, a small "
                   "dimension, or a batch of small matrices)")
    elif side == "slower":
        why.append("access pattern worse than the calibration shapes (strided or transposed "
                   "reads, narrow rows per work-group)")
    else:
        why.append("this shape reaches a better fraction of the roofline than the class's "
                   "calibration mix (the class mixes kernels and shapes of unequal efficiency)")
    return "; ".join(why)


def plot(rows_by_opt: dict, path, title: str) -> None:
    """Log-log scatter of predicted vs measured per call, coloured by kernel class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows_by_opt)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 5.6), squeeze=False)
    for ax, (opt, rows) in zip(axes[0], rows_by_opt.items()):
        for i, cls in enumerate(KERNEL_CLASSES):   # one colour per class in every panel
            rs = [r for r in rows if r.kernel_class == cls]
            if rs:
                ax.scatter([r.measured_s * 1e3 for r in rs], [r.predicted_s * 1e3 for r in rs],
                           s=10, alpha=0.7, label=cls, color=f"C{i}")
        lo = min(min(r.measured_s, r.predicted_s) for r in rows) * 1e3 * 0.8
        hi = max(max(r.measured_s, r.predicted_s) for r in rows) * 1e3 * 1.25
        xs = [lo, hi]
        ax.plot(xs, xs, "k-", lw=0.8, label="predicted = measured")
        ax.fill_between(xs, [x * 0.85 for x in xs], [x * 1.15 for x in xs], color="0.85",
                        alpha=0.6, label="+-15%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured ms (OpenCL event)")
        ax.set_ylabel("predicted ms (cost model)")
        ax.set_title(f"--opt {opt}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def markdown(ctx: dict, runs: list, effect: list, profile, plot_name: str) -> str:
    """ctx: name, command, date, device, profile path, component, resolution, batch, precision."""
    L = [f"# Validation of `{ctx['profile']}` on {ctx['device']}", "",
         f"- Command: `{ctx['command']}`",
         f"- Date: {ctx['date']}",
         f"- OpenCL device: {ctx['device']}",
         f"- Profile: `{ctx['profile_path']}` (calibrated separately on synthetic shapes; not "
         "fitted to this run)",
         f"- Workload: {ctx['component']} at {ctx['resolution']}x{ctx['resolution']} pixels, "
         f"batch {ctx['batch']}, {ctx['precision']} storage, random seeded weights (timing does "
         "not depend on values)",
         f"- Measured: each dispatch's OpenCL event duration (end - start), after "
         f"{ctx['warmup']} warm-up run(s); end-to-end = their sum (device time). Predicted: "
         "sdsim.cost roofline per call of the same kernel plan.",
         f"- Goal: {GOAL}.", ""]
    L += ["## Summary", ""]
    summ = []
    for run in runs:
        m = run["metrics"]
        ok = abs(m["e2e_error_pct"]) <= 10 and m["acc15_time_pct"] >= 80
        summ.append({"opt": run["opt"], "calls": m["calls"], "measured_s": m["measured_s"],
                     "predicted_s": m["predicted_s"], "e2e_error_%": m["e2e_error_pct"],
                     "RMSPE_%": m["rmspe_pct"], "calls_±10%": m["acc10_calls_pct"],
                     "time_±10%": m["acc10_time_pct"], "calls_±15%": m["acc15_calls_pct"],
                     "time_±15%": m["acc15_time_pct"], "wall_s": run["wall_s"],
                     "goal": "met" if ok else "missed"})
    L += [render_rows(summ, "markdown", floatfmt=".4g"), "",
          f"![predicted vs measured]({plot_name})", ""]
    if effect:
        L += ["## Effect of each optimization: measured vs predicted speed-up", "",
              "Speed-up of the kernels of the ops each switch governs (baseline time / optimized "
              "time), same graph, both runs above.", "",
              render_rows(effect, "markdown", floatfmt=".4g"), ""]
    for run in runs:
        rows = run["rows"]
        L += [f"## --opt {run['opt']}: by kernel class", "",
              render_rows(by_class(rows), "markdown", floatfmt=".4g"), ""]
        missing = [c for c in by_class(rows) if abs(c["error_pct"]) > 15
                   and c["share_of_time_pct"] >= 5]
        if missing:
            L += ["Classes that miss (error over 15% and at least 5% of measured time): "
                  + "; ".join(f"{c['class']} ({c['error_pct']:+.0f}%, "
                              f"{c['share_of_time_pct']:.0f}% of time)" for c in missing)
                  + ".", ""]
        worst = sorted(rows, key=lambda r: abs(r.predicted_s - r.measured_s), reverse=True)[:10]
        L += [f"### --opt {run['opt']}: the ten calls with the largest absolute error", ""]
        L += [render_rows([{"identity": r.identity, "scope": r.scope, "class": r.kernel_class,
                            "measured_ms": r.measured_s * 1e3,
                            "predicted_ms": r.predicted_s * 1e3,
                            "error_%": 100 * r.error, "why": explain(r, profile, ctx["precision"])}
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
