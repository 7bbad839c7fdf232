"""How much calibrating a device again moves the validation verdict.

A calibration is one sitting of `sdsim calibrate` on one machine; a validation run is one
sitting of `sdsim validate`. Each is a measurement, and neither repeats exactly: a second
calibration of the same GPU, on the same kernel sources, fits its coefficients to other points
of the same sweep (the fit's choices among near-tied models move with them), and a second run
of SD measures other times. This script separates the two. Every stored validation run of a
device (`reports/validation-DEVICE-*.json` as committed at each --runs revision) is predicted
again with every calibration of it (the profile committed at each --profiles revision, or
`REV+refit`: the measurements stored beside that revision's calibration report fitted again by
today's model, for a calibration fitted by an older one), under the kernel builds the run used.
Reading a column gives the spread between calibrations with the measured times fixed; reading
a row, the spread between runs with the coefficients fixed. The bar (`sdsim validate`): end to
end within 5% and at least 90% of measured time in calls within 10%.

    python benchmarks/calibration_repeatability.py --device nvidia-h100-opencl \\
        --precision fp16 --profiles 264131e 0949945 --runs 264131e 0949945 \\
        [--report reports/calibration-repeatability-nvidia-h100-opencl-fp16]

Needs the git history of a source checkout (revisions are read with `git show`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from sdsim import provenance
from sdsim.cost.profile import kernels_hash, load_profile
from sdsim.output import render_rows, write_pair
from sdsim.paths import ROOT
from sdsim.validation import compare, report

COMPONENTS = ("unet-512", "vae_decoder-512", "text_encoder-77")


def git_show(rev: str, path: str) -> bytes | None:
    """The file at `rev`, or None where the revision has none."""
    r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True)
    return r.stdout if r.returncode == 0 else None


def _suffix(precision: str) -> str:
    return "-fp32" if precision == "fp32" else ""


def calibration(device: str, precision: str, spec: str, tmp: Path) -> dict:
    """{label, date, profile}: the profile of one --profiles entry (REV or REV+refit)."""
    rev, refit = spec.removesuffix("+refit"), spec.endswith("+refit")
    stored = git_show(rev, f"reports/calibration-{device}{_suffix(precision)}.json")
    if stored is None:
        sys.exit(f"{rev}: no reports/calibration-{device}{_suffix(precision)}.json")
    meas = json.loads(stored)
    if meas["kernels_hash"] != kernels_hash():
        sys.exit(f"{rev}: calibrated on kernel sources {meas['kernels_hash']}, today's are "
                 f"{kernels_hash()}")
    path = tmp / f"{device}-{rev}{'-refit' if refit else ''}.yaml"
    if refit:
        src = tmp / f"calibration-{rev}.json"
        src.write_bytes(stored)
        subprocess.run([sys.executable, "-m", "sdsim", "calibrate", "--refit", str(src),
                        "--out", str(path), "--report", str(tmp / f"refit-{rev}.md"),
                        "--format", "json"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    else:
        path.write_bytes(git_show(rev, f"device_profiles/{device}.yaml"))
    prof = load_profile(path)
    if precision not in prof.coefficient_sets:
        sys.exit(f"{spec}: the profile has no {precision} coefficients")
    return {"label": spec, "date": meas["date"], "points": len(meas["points"]),
            "queried": meas["sweep"].get("queried", 0), "profile": prof}


def runs(device: str, precision: str, revs: list, tmp: Path) -> list[dict]:
    """{label, component, date, path, tuning}: every stored run of the device at each
    revision."""
    out = []
    for rev in revs:
        prof = git_show(rev, f"device_profiles/{device}.yaml")
        tuning_path = tmp / f"{device}-{rev}-run.yaml"
        tuning_path.write_bytes(prof)
        for comp in COMPONENTS:
            data = git_show(rev, f"reports/validation-{device}-{comp}{_suffix(precision)}.json")
            if data is None:
                continue
            path = tmp / f"validation-{rev}-{comp}.json"
            path.write_bytes(data)
            ctx, _, _ = report.load(path)
            out.append({"label": rev, "component": comp, "date": ctx["date"], "path": path,
                        "tuning": load_profile(tuning_path).tuning})
    return out


def verdicts(cals: list[dict], stored: list[dict]) -> list[dict]:
    """One row per (calibration, run, plan): the run's measured calls predicted again
    (`sdsim validate --replay --repredict`'s compare.repredict)."""
    out = []
    for run in stored:
        ctx, plans, _ = report.load(run["path"])
        for cal in cals:
            # the run's kernel builds are a fact of the run, not a prediction
            prof = dataclasses.replace(cal["profile"], tuning=run["tuning"])
            for plan in compare.repredict(ctx, plans, prof)[0]:
                m = plan["metrics"]
                out.append({
                    "component": run["component"], "opt": plan["opt"],
                    "run": f"{run['label']} ({run['date']})",
                    "calibration": f"{cal['label']} ({cal['date']})",
                    "e2e_error_%": round(m["e2e_error_pct"], 2),
                    "time_±10%": round(m["acc10_time_pct"], 1),
                    "meets_bar": report.meets_goal(m)})
    return out


def spreads(rows: list[dict]) -> list[dict]:
    """For each run and plan: the range of time within 10% across calibrations, and how many
    calibrations meet the bar."""
    keys = sorted({(r["component"], r["opt"], r["run"]) for r in rows})
    out = []
    for comp, opt, run in keys:
        mine = [r for r in rows if (r["component"], r["opt"], r["run"]) == (comp, opt, run)]
        t = [r["time_±10%"] for r in mine]
        out.append({"component": comp, "opt": opt, "run": run,
                    "time_±10% across calibrations": f"{min(t):.1f}-{max(t):.1f}",
                    "spread_pts": round(max(t) - min(t), 1),
                    "calibrations_meeting_bar": f"{sum(r['meets_bar'] for r in mine)}/{len(mine)}"})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", required=True, help="profile name (device_profiles/NAME.yaml)")
    ap.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--profiles", nargs="+", required=True,
                    help="git revisions of the profile (REV+refit: its stored measurements "
                         "fitted again by today's model)")
    ap.add_argument("--runs", nargs="+", required=True,
                    help="git revisions whose stored validation runs to predict")
    ap.add_argument("--report", help="report stem (default reports/calibration-repeatability-"
                                     "DEVICE-PRECISION)")
    a = ap.parse_args(argv)
    stem = a.report or str(ROOT / "reports" /
                           f"calibration-repeatability-{a.device}-{a.precision}")
    command = "python benchmarks/calibration_repeatability.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cals = [calibration(a.device, a.precision, s, tmp) for s in a.profiles]
        stored = runs(a.device, a.precision, a.runs, tmp)
        rows = verdicts(cals, stored)
    summary = spreads(rows)
    cal_rows = [{"calibration": c["label"], "date": c["date"], "points": c["points"],
                 "queried cases": c["queried"]} for c in cals]
    md = "\n".join([
        f"# Calibration repeatability: {a.device}, {a.precision} storage",
        "",
        f"- Command: `{command}`",
        f"- Date: {provenance.now()}; host {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.machine()}), load (1-min average) {provenance.load()}; sdsim commit "
        f"{provenance.commit()}; kernel sources `{kernels_hash()}` (every calibration and run "
        "below was measured on them)",
        "- Each stored run's measured calls predicted again with each calibration "
        "(`sdsim validate --replay --repredict` does the same for one pair), under the run's "
        f"kernel builds; the bar: {report.GOAL}. No device ran: this is arithmetic on stored "
        "measurements.",
        "",
        "## Calibrations",
        "",
        render_rows(cal_rows, "markdown"),
        "",
        "## Spread across calibrations, the measured times fixed",
        "",
        render_rows(summary, "markdown"),
        "",
        "## Every pair",
        "",
        render_rows(rows, "markdown"),
    ])
    md_path, _ = write_pair(stem, md, {"command": command, "calibrations": cal_rows,
                                       "spreads": summary, "rows": rows})
    print(render_rows(summary, "table"))
    print(f"wrote {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
