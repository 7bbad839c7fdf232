"""Does a learned corrector beat the analytical geometry model on shapes it did not see?

nn-Meter predicts each kernel type with a random forest; sdsim predicts each kernel body with
the wave model of sdsim/cost/waves.py. This study asks whether a small tree model per kernel
variant, trained on what the analytical model leaves (log measured / predicted) at the
calibration's *training* points, cuts the error on the calibration's *held-out* 20% (the points
no fit saw). Only if it does may sdsim ship one (a corrector on top of the analytical form).

For each stored calibration (`reports/calibration-*.json`, whose profile's coefficient set at
that precision was fitted on exactly those training points), every point is predicted by the
profile, then two correctors per variant are trained on the training points' log residuals:
a random forest (nn-Meter's choice) and a gradient-boosted ensemble of depth-2 trees, both on
launch-geometry features (log work-groups, log serial steps, active lanes, waves and last-wave
fullness at the fitted residency, log DRAM bytes, log analytical time). A variant with fewer
than MIN_TRAIN training points keeps the analytical time.

    python benchmarks/learned_corrector.py [--report reports/learned-corrector]

Needs scikit-learn (`pip install scikit-learn`); host only, no device.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sdsim import provenance  # noqa: E402
from sdsim.calibration import store  # noqa: E402
from sdsim.calibration.fit import errors  # noqa: E402
from sdsim.cost.profile import read_profile  # noqa: E402
from sdsim.cost.waves import geometry_time, last_wave, waves  # noqa: E402
from sdsim.output import render_rows, write_pair  # noqa: E402

#: (calibration measurements, profile whose coefficient set at that precision they fitted)
CALIBRATIONS = (
    ("reports/calibration-nvidia-h200-opencl.json", "device_profiles/nvidia-h200-opencl.yaml"),
    ("reports/calibration-nvidia-h200-opencl-fp32.json", "device_profiles/nvidia-h200-opencl.yaml"),
    ("reports/calibration-nvidia-h100-opencl.json", "device_profiles/nvidia-h100-opencl.yaml"),
    ("reports/calibration-nvidia-h100-opencl-fp32.json", "device_profiles/nvidia-h100-opencl.yaml"),
    ("reports/calibration-pocl-cpu.json", "device_profiles/pocl-cpu.yaml"),
    ("reports/calibration-pocl-cpu-fp32.json", "device_profiles/pocl-cpu.yaml"),
)
#: the fewest training points a variant needs for a corrector of its own
MIN_TRAIN = 20
SEED = 0


def _models():
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    return {
        "forest": lambda: RandomForestRegressor(n_estimators=200, min_samples_leaf=3,
                                                random_state=SEED),
        "boosted": lambda: GradientBoostingRegressor(n_estimators=100, max_depth=2,
                                                     learning_rate=0.05, subsample=0.8,
                                                     random_state=SEED),
    }


def features(p, c, compute_units: int) -> list[float]:
    """A point's launch geometry under its body's coefficients `c`, as the corrector sees it."""
    la = p.launch
    return [math.log(max(1, la.work_groups)), math.log(max(1, la.steps)), la.active,
            waves(la.work_groups, compute_units, c.residency),
            float(last_wave(la.work_groups, compute_units, c.residency)),
            math.log1p(p.dram_bytes), math.log(p.predicted_s)]


def study(cal_path: str, profile_path: str) -> tuple[dict, list[dict], list[dict]]:
    """(summary row, per-variant rows, SD validation rows) of one stored calibration."""
    cal = store.load(ROOT / cal_path, "benchmarks/learned_corrector.py")
    profile = read_profile(ROOT / profile_path)
    coeffs = profile.coefficients_for(cal.precision)
    cu = profile.geometry["compute_units"]
    points = [p for p in cal.points if p.key in coeffs]
    for p in points:
        p.predicted_s = geometry_time(coeffs[p.key], p.launch, cu, p.dram_bytes)[0]
    analytical = {id(p): p.predicted_s for p in points}
    corrected = {name: dict(analytical) for name in _models()}
    variants = sorted({p.variant for p in points})
    rows, fitted = [], {}
    for v in variants:
        train = [p for p in points if p.variant == v and not p.heldout]
        held = [p for p in points if p.variant == v and p.heldout]
        row = {"variant": v, "train": len(train), "held_out": len(held)}
        if len(train) >= MIN_TRAIN and held:
            x = np.array([features(p, coeffs[p.key], cu) for p in train])
            y = np.log([p.measured_s / p.predicted_s for p in train])
            xh = np.array([features(p, coeffs[p.key], cu) for p in held])
            for name, make in _models().items():
                fitted.setdefault(name, {})[v] = make().fit(x, y)
                for p, f in zip(held, np.exp(fitted[name][v].predict(xh))):
                    corrected[name][id(p)] = analytical[id(p)] * f
        for name, pred in (("analytical", analytical), *corrected.items()):
            e = _errors(held, pred)
            row[f"{name}_median_%"] = e.get("median_abs_error_pct")
            row[f"{name}_time10_%"] = e.get("within10_time_pct")
        rows.append(row)
    held = [p for p in points if p.heldout]
    summary = {"calibration": cal_path, "device": cal.device, "precision": cal.precision,
               "held_out": len(held)}
    for name, pred in (("analytical", analytical), *corrected.items()):
        e = _errors(held, pred)
        summary[f"{name}_median_%"] = e["median_abs_error_pct"]
        summary[f"{name}_time10_%"] = e["within10_time_pct"]
    return summary, rows, sd_effect(cal, profile, fitted)


def sd_effect(cal, profile, fitted: dict) -> list[dict]:
    """The bar's figures of the device's stored SD validations at the calibration's precision,
    as the profile predicts them and with each call corrected by its variant's correctors
    (`fitted`: {model name: {variant: fitted corrector}}, trained on the calibration's training
    points; the SD calls are the validation's, never a training point)."""
    from sdsim.backends.trace import trace_component
    from sdsim.cost.predict import predict_component
    from sdsim.model.presets import load_model_config
    from sdsim.validation import compare, report

    coeffs = profile.coefficients_for(cal.precision)
    cu = profile.geometry["compute_units"]
    out = []
    stem = Path(profile.path).stem
    for f in sorted((ROOT / "reports").glob(f"validation-{stem}-*.json")):
        ctx, runs, _ = report.load(f)
        if ctx["precision"] != cal.precision:
            continue
        graph = trace_component(ctx["component"], load_model_config(ctx.get("model") or "sd14"),
                                ctx["resolution"], ctx["batch"], ctx["precision"])
        for run in compare.repredict(ctx, runs, profile)[0]:
            calls = {c.call.identity: c.call for c in predict_component(
                graph, 1, profile, run["options"], ctx["precision"]).kernels}
            row = {"run": f"{f.stem.removeprefix('validation-' + stem + '-')} {run['opt']}"}
            figures = {"analytical": run["metrics"]}
            for name, models in fitted.items():
                figures[name] = compare.metrics(_corrected(run["rows"], calls, models, coeffs,
                                                           cu))
            for name, m in figures.items():
                row[f"{name}_e2e_%"] = m["e2e_error_pct"]
                row[f"{name}_time10_%"] = m["acc10_time_pct"]
                row[f"{name}_bar"] = report.meets_goal(m)
            out.append(row)
    return out


def _corrected(rows, calls: dict, models: dict, coeffs: dict, cu: int) -> list:
    """Validation `rows` with each call's prediction times its variant's correction (calls of a
    variant without a corrector, or timed by another body, keep theirs)."""
    todo: dict = {}
    for i, r in enumerate(rows):
        c = calls[r.identity]
        v, k = f"{r.family}/{r.variant}", coeffs.get(c.model_key)
        if v in models and k is not None:
            own = SimpleNamespace(launch=c.launch, dram_bytes=c.dram_bytes,
                                  predicted_s=geometry_time(k, c.launch, cu, c.dram_bytes)[0])
            todo.setdefault(v, []).append((i, features(own, k, cu)))
    out = list(rows)
    for v, items in todo.items():
        gains = np.exp(models[v].predict(np.array([x for _, x in items])))
        for (i, _), g in zip(items, gains):
            out[i] = replace(rows[i], predicted_s=rows[i].predicted_s * float(g))
    return out


def _errors(points, pred: dict) -> dict:
    """fit.errors of `points` under the predictions `pred` (id -> seconds)."""
    return errors([replace(p, predicted_s=pred[id(p)]) for p in points])


def verdict(summaries: list[dict], sd: dict) -> list[str]:
    """The study's answer in a few lines, counted from its tables."""
    out, passing = [], []
    runs = [r for rows in sd.values() for r in rows]
    for name in _models():
        gain = [s[f"{name}_time10_%"] - s["analytical_time10_%"] for s in summaries]
        cut = [s["analytical_median_%"] - s[f"{name}_median_%"] for s in summaries]
        lost = sum(r["analytical_bar"] and not r[f"{name}_bar"] for r in runs)
        if all(g > 0 for g in gain) and not lost:
            passing.append(name)
        out.append(
            f"- {name}: held-out median |error| lower on {sum(c > 0 for c in cut)} of "
            f"{len(cut)} calibrations (by {min(cut):.2g} to {max(cut):.2g} points); held-out "
            f"time within +-10% higher on {sum(g > 0 for g in gain)} of {len(gain)} "
            f"({min(gain):+.2g} to {max(gain):+.2g} points); SD validation runs meeting the "
            f"bar {sum(r[f'{name}_bar'] for r in runs)} of {len(runs)} (analytical: "
            f"{sum(r['analytical_bar'] for r in runs)}), {lost} of the analytical model's "
            "passes lost.")
    out.append("- A corrector earns its place only by raising held-out time within +-10% (the "
               "bar's figure) on every calibration without losing an SD run the analytical "
               "model passes: " + (f"{', '.join(passing)} does." if passing else
                                   "neither does, so the predictor stays analytical."))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", default="reports/learned-corrector",
                    help="report path without extension (.md and .json are written)")
    args = ap.parse_args(argv)
    summaries, per_variant, sd = [], {}, {}
    for cal_path, profile_path in CALIBRATIONS:
        s, rows, sd[cal_path] = study(cal_path, profile_path)
        summaries.append(s)
        per_variant[cal_path] = rows
        print(render_rows([s], "table", floatfmt=".3g"), flush=True)
        print(render_rows(sd[cal_path], "table", floatfmt=".3g"), flush=True)
    ctx = {"command": "python benchmarks/learned_corrector.py "
                      + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": provenance.now(), "commit": provenance.commit(),
           "load": provenance.load(), "min_train": MIN_TRAIN}
    lines = [
        "# A learned corrector against the analytical geometry model, on held-out synthetic "
        "shapes", "",
        f"- Command: `{ctx['command'].strip()}`",
        f"- Date: {ctx['date']}, sdsim commit {ctx['commit']}; host only (stored calibration "
        f"measurements, no device), 1-minute load {ctx['load']}",
        "- Method: each stored calibration's points predicted by the profile coefficient set "
        "they fitted; per variant with at least "
        f"{MIN_TRAIN} training points, a random forest (200 trees, leaves of 3 or more) and a "
        "gradient-boosted ensemble (100 depth-2 trees, rate 0.05, subsample 0.8) trained on the "
        "training points' log(measured / analytical) from launch-geometry features (log "
        "work-groups, log steps, active lanes, waves and last-wave fullness at the fitted "
        "residency, log DRAM bytes, log analytical time); scored on the held-out 20% no fit saw. "
        "Variants with fewer training points keep the analytical time.",
        "- Columns: median |error| % and % of held-out measured time within +-10%.", "",
        "## Verdict", "", *verdict(summaries, sd), "",
        "## All variants, per calibration", "",
        render_rows(summaries, "markdown", floatfmt=".3g"), "",
        "## SD1.4 validation runs, as predicted and with each corrector", "",
        "The device's stored validation runs at the calibration's precision (measured times "
        "fixed), each call predicted by the profile and then multiplied by the corrector of its "
        "variant trained on the calibration's training points. `bar`: end-to-end error "
        "within +-5% and >= 90% of measured time in calls within +-10%.", ""]
    for cal_path, rows in sd.items():
        lines += [f"### {cal_path}", "", render_rows(rows, "markdown", floatfmt=".3g"), ""]
    for cal_path, rows in per_variant.items():
        lines += [f"## {cal_path}: by variant", "",
                  render_rows(rows, "markdown", floatfmt=".3g"), ""]
    write_pair(args.report, "\n".join(lines),
               {"ctx": ctx, "summary": summaries, "by_variant": per_variant,
                "sd_validation": sd})
    print(f"wrote {args.report}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
