"""What one of the predictor's sequence terms does to a device's validation runs: the launch
overlap (sdsim/cost/overlap.py) or the write-back (sdsim/cost/writeback.py).

Every stored validation run of a device (`reports/validation-DEVICE-*.json`) is predicted again
by its profile (`device_profiles/DEVICE.yaml`) twice, the measured times fixed: as the profile
stands, and with the term's sections (`overlap` or `writeback`) removed. For each run the table
gives the bar's two figures (end-to-end error; % of measured time in calls within +-10%), the
time-weighted mean |error| (sum |predicted - measured| / sum measured: the threshold-free
figure), and the median predicted - measured of the calls under 20 us by their predecessor's
measured time (under 20 us, 50 us or more): the residual the overlap term is meant to remove.

    python benchmarks/term_effect.py --device nvidia-h100-opencl [--term overlap|writeback] \\
        [--report reports/overlap-effect-nvidia-h100-opencl]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sdsim import provenance  # noqa: E402
from sdsim.cost.profile import read_profile  # noqa: E402
from sdsim.output import render_rows, write_pair  # noqa: E402
from sdsim.validation import compare, report  # noqa: E402

SETS = ("coefficients", "coefficients_fp16", "coefficients_fp32")
#: term -> (its title, how a profile's term reads in the table)
TERMS = {
    "overlap": ("launch-overlap", lambda p, prec: (t := p.overlap_for(prec)) and
                f"{t.hidden * 1e6:.2g} us over {t.over * 1e6:.3g} us"),
    "writeback": ("write-back", lambda p, prec: (t := p.writeback_for(prec)) and
                  f"{t.per_byte * 1e12:.3g} us/MB up to {t.dirty / 1e6:.3g} MB"),
}


def without_term(path: Path, tmp: Path, term: str):
    """The profile at `path` with every coefficient set's `term` section removed."""
    d = copy.deepcopy(yaml.safe_load(path.read_text()))
    for k in SETS:
        (d.get(k) or {}).pop(term, None)
    out = tmp / path.name
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return read_profile(out)


def _by_predecessor(rows) -> dict:
    """Median predicted - measured (us) of calls under 20 us, by the previous call's time."""
    groups = {"after <20 us": [], "after >=50 us": []}
    for prev, r in zip(rows, rows[1:]):
        if r.measured_s >= 20e-6:
            continue
        if prev.measured_s < 20e-6:
            groups["after <20 us"].append((r.predicted_s - r.measured_s) * 1e6)
        elif prev.measured_s >= 50e-6:
            groups["after >=50 us"].append((r.predicted_s - r.measured_s) * 1e6)
    return {k: statistics.median(v) if v else None for k, v in groups.items()}


def _figures(rows, metrics) -> dict:
    measured = sum(r.measured_s for r in rows)
    return {"e2e %": metrics["e2e_error_pct"], "within 10% (time) %": metrics["acc10_time_pct"],
            "mean |err| %": 100 * sum(abs(r.predicted_s - r.measured_s) for r in rows) / measured,
            **{f"{k} us": v for k, v in _by_predecessor(rows).items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", required=True, help="profile name under device_profiles/")
    ap.add_argument("--term", choices=tuple(TERMS), default="overlap",
                    help="the term to remove: the launch overlap or the write-back")
    ap.add_argument("--report", help="write REPORT.md and REPORT.json")
    args = ap.parse_args(argv)
    path = ROOT / "device_profiles" / f"{args.device}.yaml"
    files = sorted((ROOT / "reports").glob(f"validation-{args.device}-*.json"))
    if not path.is_file() or not files:
        sys.exit(f"{args.device}: no device_profiles/{args.device}.yaml or no stored validations")
    profile = read_profile(path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = without_term(path, Path(tmp), args.term)
        for f in files:
            ctx, runs, _ = report.load(f)
            term = TERMS[args.term][1](profile, ctx["precision"])
            with_, _ = compare.repredict(ctx, runs, profile)
            without, _ = compare.repredict(ctx, runs, plain)
            for a, b in zip(with_, without):
                fa, fb = _figures(a["rows"], a["metrics"]), _figures(b["rows"], b["metrics"])
                rows.append({"run": f"{f.stem.removeprefix('validation-' + args.device + '-')} "
                                    f"{a['opt']}",
                             "term": term or "none",
                             **{f"{k} with": v for k, v in fa.items()},
                             **{f"{k} without": fb[k] for k in fa},
                             "bar with": report.meets_goal(a["metrics"]),
                             "bar without": report.meets_goal(b["metrics"])})
    table = render_rows(rows, "markdown", floatfmt=".3g")
    text = "\n".join([
        f"# The {TERMS[args.term][0]} term on {args.device}'s validation runs", "",
        f"- Command: `python benchmarks/term_effect.py {' '.join(argv or sys.argv[1:])}`",
        f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; host-only (replays "
        f"stored measurements, no device), 1-minute load {provenance.load()}",
        f"- Profile: `device_profiles/{args.device}.yaml`; runs: "
        + ", ".join(f"`reports/{f.name}`" for f in files),
        "- " + __doc__.split("\n\n")[1].replace("\n", " "), "", table, ""])
    print(table)
    if args.report:
        write_pair(Path(args.report), text, {"device": args.device, "term": args.term,
                                             "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
