"""Every stored validation run on one page: how far to trust the cost model on each device.

Each `reports/validation-*.json` is predicted again by its device's profile as it stands today
(`device_profiles/PROFILE.yaml`; the measured times stay, as `sdsim validate --replay ...
--repredict` does), and set beside the measurement's own noise ceiling (the first measured run
taken as the prediction of the median of the others) and the bar: end-to-end error within +-5%
and at least 90% of the measured time in calls predicted within +-10%. The table says when and at
which sdsim commit each run was measured, so a stale run shows as one.

    python benchmarks/validation_summary.py [--report reports/validations]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sdsim import provenance  # noqa: E402
from sdsim.cost.profile import read_profile  # noqa: E402
from sdsim.output import render_rows, write_pair  # noqa: E402
from sdsim.validation import compare, report  # noqa: E402


def stored_runs() -> list[Path]:
    """Every stored validation run (reports/validation-DEVICE-COMPONENT-SIZE[-fp32].json)."""
    return sorted((ROOT / "reports").glob("validation-*.json"))


def summary_rows(files) -> list[dict]:
    """One row per (stored run, --opt setting), predicted again by its profile of today."""
    profiles, rows = {}, []
    for f in files:
        ctx, runs, _ = report.load(f)
        name = ctx["profile"]
        if name not in profiles:
            profiles[name] = read_profile(ROOT / "device_profiles" / f"{name}.yaml")
        for run in compare.repredict(ctx, runs, profiles[name])[0]:
            m, noise = run["metrics"], run.get("noise") or {}
            rows.append({
                "device": name, "component": ctx["component"],
                # the text encoder's size is its 77 tokens, whatever the image's
                "size": "77 tokens" if ctx["component"] == "text_encoder"
                else f"{ctx['resolution']}x{ctx['resolution']}",
                "precision": ctx["precision"],
                "opt": run["opt"], "e2e %": m["e2e_error_pct"],
                "time within 10% %": m["acc10_time_pct"],
                "noise ceiling %": noise.get("acc10_time_pct"),
                "bar": "met" if report.meets_goal(m) else "missed",
                "measured": f"{ctx['date']}, {ctx.get('commit') or '?'}",
                "report": f"reports/{f.with_suffix('.md').name}"})
    return rows


def tally(rows: list[dict]) -> list[dict]:
    """Per device: runs meeting the bar, and the runs the noise ceiling itself keeps under 90%."""
    by = defaultdict(list)
    for r in rows:
        by[r["device"]].append(r)
    return [{"device": d, "runs": len(rs), "met": sum(r["bar"] == "met" for r in rs),
             "noise ceiling under 90%": sum((r["noise ceiling %"] or 100) < 90 for r in rs)}
            for d, rs in by.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", help="write REPORT.md and REPORT.json")
    args = ap.parse_args(argv)
    files = stored_runs()
    if not files:
        sys.exit("no stored validation runs under reports/")
    rows = summary_rows(files)
    counts = tally(rows)
    head = render_rows(counts, "markdown")
    table = render_rows(rows, "markdown", floatfmt=".3g")
    text = "\n".join([
        "# Validation runs: the cost model against measured kernel times", "",
        f"- Command: `python benchmarks/validation_summary.py {' '.join(argv or sys.argv[1:])}`",
        f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; host-only (replays "
        f"stored measurements, no device), 1-minute load {provenance.load()}",
        "- " + __doc__.split("\n\n")[1].replace("\n", " "), "", head, "", table, ""])
    print(head, table, sep="\n\n")
    if args.report:
        write_pair(Path(args.report), text, {"devices": counts, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
