"""How steady each way of reducing repeated timed runs is on this machine (sdsim/repeats.py).

Cases of a stored calibration sweep (`--from`, the synthetic shapes `sdsim calibrate` timed;
one per variant in turn, timed between 2 and 150 ms there) are timed again as the sweep times
them (cache flush, lead dispatches, behind a gate): each `--repeat` times after a warm-up, in
`--passes` passes, each in a fresh random order. For each statistic (the median or the fastest
of all the runs, of the first 5 or the first 3) a case's spread between passes is its largest
pass over its smallest, less one. A statistic that moves little between passes measures the
kernel, not the machine; `sdsim calibrate --statistic` and `sdsim validate --statistic` choose
one. Run it on an otherwise idle machine: other work is what it measures, and the report
records the load.

    python benchmarks/timing_statistic.py --from reports/calibration-pocl-cpu.json \\
        --platform 3 [--cases 40 --repeat 9 --passes 3] \\
        [--report reports/timing-statistic-pocl-cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import sys
from pathlib import Path

import numpy as np

from sdsim import kernels, provenance, repeats
from sdsim.calibration import sweep
from sdsim.cl.bench import time_launches, upload
from sdsim.cl.runtime import Runtime
from sdsim.output import render_rows, write_pair
from sdsim.paths import ROOT

#: statistic name -> its reduction of one pass's runs: sdsim's own (sdsim/repeats.py), and over
#: the first 5 or 3 runs, what fewer repeats give
STATISTICS = {**repeats.STATISTICS,
              "median of first 5": lambda a: np.median(a[:5]),
              "min of first 5": lambda a: np.min(a[:5]),
              "min of first 3": lambda a: np.min(a[:3])}


def pick(points: list, n: int, seed: int = 1) -> list:
    """`n` distinct cases of a stored sweep's points, one variant after another in turn, each
    timed between 2 and 150 ms by the sweep (long enough to time, short enough for many)."""
    seen, by_variant = set(), {}
    order = list(points)
    random.Random(seed).shuffle(order)
    for p in order:
        key = (p["variant"], repr(sorted(p["shape"].items())))
        if key in seen or not 2e-3 < p["measured_s"] < 0.15:
            continue
        seen.add(key)
        by_variant.setdefault(p["variant"], []).append(p)
    out = []
    while len(out) < n and any(by_variant.values()):
        for cases in by_variant.values():
            if cases and len(out) < n:
                out.append(cases.pop())
    return out


def time_passes(rt, cases: list, precision: str, repeat: int, passes: int, seed: int = 2):
    """[case][pass] -> the `repeat` timed runs (summed over the case's dispatches), each pass in
    a fresh random order, every run as the sweep times it."""
    ready = []
    for p in cases:
        record = kernels.get(*p["variant"].split("/", 1))
        shape = p["shape"]
        inputs = record.make_inputs(shape, sweep.TilingRng(0))
        ready.append((record, shape, upload(rt, record, shape, inputs, precision)))
    rt.finish()
    out = [[] for _ in cases]
    rng = random.Random(seed)
    for k in range(passes):
        order = list(range(len(cases)))
        rng.shuffle(order)
        for i in order:
            record, shape, buffers = ready[i]
            kw = {"cold": True, "gated": True, "lead": sweep.LEAD}
            time_launches(rt, record, shape, buffers, precision, 1, **kw)   # warm-up
            runs = time_launches(rt, record, shape, buffers, precision, repeat, **kw)
            out[i].append(runs.sum(axis=1).tolist())
        print(f"pass {k + 1} of {passes} done", file=sys.stderr)
    return out


def spreads(times: list) -> list[dict]:
    """Per statistic: the cases' spread between passes (median, 75th and 90th percentile)."""
    rows = []
    for name, f in STATISTICS.items():
        s = [max(e) / min(e) - 1 for e in ([f(np.array(r)) for r in case] for case in times)]
        rows.append({"statistic": name, "median_spread_%": 100 * np.median(s),
                     "p75_spread_%": 100 * np.percentile(s, 75),
                     "p90_spread_%": 100 * np.percentile(s, 90)})
    return rows


def passes(times: list) -> list[dict]:
    """Per pass: how much slower than its best pass each case's fastest run was in it (median
    and largest over cases); a pass slow for every case is the machine's, not the case's."""
    best = [min(min(r) for r in case) for case in times]
    rows = []
    for k in range(len(times[0])):
        over = [min(case[k]) / b - 1 for case, b in zip(times, best)]
        rows.append({"pass": k + 1, "median_over_best_%": 100 * np.median(over),
                     "max_over_best_%": 100 * max(over)})
    return rows


def main(argv=None) -> int:
    import json

    from sdsim.cost.profile import kernels_hash
    from sdsim.kernels import tuning

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", required=True,
                    help="a calibration's stored measurements (calibration-NAME.json)")
    ap.add_argument("--platform", help="OpenCL platform index or name (default: the first)")
    ap.add_argument("--cl-device", help="OpenCL device index or name (default: the first)")
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per case and pass")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--report", help="report stem (default reports/timing-statistic-NAME, NAME "
                                     "the calibration's profile)")
    a = ap.parse_args(argv)
    if a.repeat < 5 or a.passes < 2:
        sys.exit("--repeat must be at least 5 and --passes at least 2")
    cal = json.loads(Path(a.source).read_text())
    if cal["kernels_hash"] != kernels_hash():
        sys.exit(f"{a.source}: measured on kernel sources {cal['kernels_hash']}, today's are "
                 f"{kernels_hash()}")
    tuning.activate(tuning.parse(cal["tuning"], a.source))   # the builds the sweep timed
    rt = Runtime(a.platform, a.cl_device)
    command = "python benchmarks/timing_statistic.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    load0 = provenance.load()
    cases = pick(cal["points"], a.cases)
    times = time_passes(rt, cases, cal["precision"], a.repeat, a.passes)
    rows, by_pass = spreads(times), passes(times)
    cv = [np.std(r) / np.mean(r) for case in times for r in case]
    stem = a.report or str(ROOT / "reports" / f"timing-statistic-{cal['name']}")
    md = "\n".join([
        f"# Timing statistics on {rt.name}",
        "",
        f"- Command: `{command}`",
        f"- Date: {provenance.now()}; host {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.machine()}); load (1-min average) {load0} before, {provenance.load()} "
        f"after; sdsim commit {provenance.commit()}; kernel sources `{kernels_hash()}`",
        f"- Cases: {len(cases)} of the sweep in `{a.source}` ({cal['precision']} storage, "
        f"measured {cal['date']}), {len({p['variant'] for p in cases})} variants; each timed "
        f"{a.repeat} times after a warm-up in each of {a.passes} passes, as the sweep times a "
        "case (cache flush, lead dispatches, behind a gate). A case's spread is its largest "
        "pass over its smallest by that statistic, less one.",
        f"- Spread between one pass's runs (coefficient of variation), median over cases and "
        f"passes: {100 * np.median(cv):.2f}%",
        "",
        render_rows(rows, "markdown", floatfmt=".2f"),
        "",
        "Each pass's fastest runs against each case's best pass (a pass slow for every case "
        "is a slow spell of the machine):",
        "",
        render_rows(by_pass, "markdown", floatfmt=".2f"),
    ])
    data = {"command": command, "device": rt.name, "source": a.source, "statistics": rows,
            "passes": by_pass,
            "cases": [{"variant": p["variant"], "shape": p["shape"], "passes": t}
                      for p, t in zip(cases, times)]}
    md_path, _ = write_pair(stem, md, data)
    print(render_rows(rows, "table", floatfmt=".2f"))
    print(f"wrote {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
