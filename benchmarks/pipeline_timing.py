"""Does a dispatch take as long inside the pipeline as it does alone?

`sdsim validate` times every dispatch of a component run as the pipeline runs it: all of them
enqueued back to back on one in-order queue, each timed by its OpenCL event (end - start).
`sdsim calibrate` times each synthetic case alone: the queue drained before and after. On the
H200 the text encoder's small dispatches (LayerNorm, QuickGELU, adds) measure two to three times
their calibrated time in the pipeline. This benchmark runs one component both ways on one device
in one process and says where the difference comes from:

- pipelined: as `validate` runs it (enqueue everything, wait once);
- serialized: the queue drained (clFinish) after every op, so each dispatch starts on an idle
  device;
- gated: every dispatch enqueued behind a gate that opens once all are enqueued
  (`Runtime.gated`), so they run back to back however slow the host, as in calibration, where
  each case runs right behind the cache-flush dispatches;

and, for the pipelined run, how the event timestamps sit against each other: the gap from one
dispatch's end to the next one's start (negative: the next dispatch's start is stamped before
the previous one ends), and the span of the whole run against the sum of the durations. With
`--device PROFILE`, each mode's per-call times are set against the profile's predictions.

    PYTHONPATH=$PWD python3 benchmarks/pipeline_timing.py --platform NVIDIA \
        --device device_profiles/nvidia-h200-opencl.yaml --component text_encoder --precision fp32
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def stamps(backend) -> list[tuple]:
    """(KernelCall, queued, submit, start, end) in seconds for every dispatch of the last run."""
    backend.rt.finish()
    return [(c, e.profile.queued * 1e-9, e.profile.submit * 1e-9, e.profile.start * 1e-9,
             e.profile.end * 1e-9) for c, e in backend.events]


def run_mode(runner, mode: str, warmup: int, repeat: int) -> list[list[tuple]]:
    """`repeat` runs' stamps of one mode (after `warmup` runs)."""
    serialized = mode == "serialized"
    backend = runner.backend
    original = type(backend)._run

    def drained(self, *a, **k):
        out = original(self, *a, **k)
        self.rt.finish()
        return out

    if serialized:
        backend._run = drained.__get__(backend)
    try:
        for _ in range(warmup):
            runner.run()
        runs = []
        for _ in range(repeat):
            runner.run(gated=mode == "gated")
            runs.append(stamps(backend))
        return runs
    finally:
        if serialized:
            del backend._run


def summarize(runs: list[list[tuple]]) -> dict:
    """Median duration per dispatch, span and gap statistics of a mode's runs."""
    n = len(runs[0])
    dur = [statistics.median(r[i][4] - r[i][3] for r in runs) for i in range(n)]
    gaps = [r[i][3] - r[i - 1][4] for r in runs for i in range(1, n)]
    spans = [r[-1][4] - r[0][3] for r in runs]
    return {"calls": [c for c, *_ in runs[0]], "duration_s": dur,
            "sum_s": sum(dur), "span_s": statistics.median(spans),
            "gap_median_us": statistics.median(gaps) * 1e6 if gaps else 0.0,
            "gap_negative_pct": 100 * sum(g < 0 for g in gaps) / max(1, len(gaps)),
            "gap_min_us": min(gaps) * 1e6 if gaps else 0.0}


def by_variant(calls, *columns) -> list[dict]:
    acc = defaultdict(lambda: [0] + [0.0] * len(columns))
    for i, c in enumerate(calls):
        row = acc[f"{c.family}/{c.variant}"]
        row[0] += 1
        for j, col in enumerate(columns):
            row[j + 1] += col[i]
    return [{"variant": v, "calls": r[0], **{f"c{j}": x for j, x in enumerate(r[1:])}}
            for v, r in sorted(acc.items(), key=lambda kv: -kv[1][1])]


def within(pred, meas, tol=0.10) -> float:
    ok = sum(m for p, m in zip(pred, meas) if abs(p - m) <= tol * m)
    return 100 * ok / sum(meas)


def main(argv=None) -> int:
    from tabulate import tabulate

    from sdsim import provenance
    from sdsim.backends.opencl.run import ComponentRunner
    from sdsim.cl.runtime import Runtime
    from sdsim.cost.predict import predict_component
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform")
    ap.add_argument("--cl-device")
    ap.add_argument("--device", help="profile whose predictions each mode is set against")
    ap.add_argument("--component", default="text_encoder")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=("fp16", "fp32"))
    ap.add_argument("--opt", default="paper")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--report", help="markdown path (a .json beside it)")
    args = ap.parse_args(argv)

    profile = load_profile(args.device) if args.device else None
    if profile:
        tuning.activate(tuning.for_profile(profile))
    rt = Runtime(args.platform, args.cl_device)
    cfg = load_model_config("sd14")
    opt = parse_opt(args.opt)
    load_before = provenance.load()
    runner = ComponentRunner(rt, args.component, cfg, opt, args.precision, args.resolution,
                             args.batch)
    modes = {m: summarize(run_mode(runner, m, args.warmup, args.repeat))
             for m in ("pipelined", "serialized", "gated")}
    calls = modes["pipelined"]["calls"]
    pred = None
    if profile:
        costed = {c.call.identity: c.time.total_s
                  for c in predict_component(runner.graph, 1, profile, opt,
                                             args.precision).kernels}
        pred = [costed[c.identity] for c in calls]
    pipe, ser, gate = modes["pipelined"], modes["serialized"], modes["gated"]
    rows = []
    for r in by_variant(calls, pipe["duration_s"], ser["duration_s"], gate["duration_s"],
                        *([pred] if pred else [])):
        row = {"variant": r["variant"], "calls": r["calls"], "pipelined_ms": r["c0"] * 1e3,
               "serialized_ms": r["c1"] * 1e3, "gated_ms": r["c2"] * 1e3,
               "pipelined/gated": r["c0"] / r["c2"]}
        if pred:
            row["predicted_ms"] = r["c3"] * 1e3
        rows.append(row)
    summary = [{"mode": m, "sum_of_durations_ms": s["sum_s"] * 1e3, "span_ms": s["span_s"] * 1e3,
                "median_gap_us": s["gap_median_us"], "min_gap_us": s["gap_min_us"],
                "negative_gaps_pct": s["gap_negative_pct"],
                **({"e2e_error_pct": 100 * (sum(pred) / s["sum_s"] - 1),
                    "time_within_10pct": within(pred, s["duration_s"])} if pred else {})}
               for m, s in modes.items()]
    result = {"command": "python3 benchmarks/pipeline_timing.py " + shlex.join(argv or sys.argv[1:]),
              "date": provenance.now(), "sdsim_commit": provenance.commit(),
              "device": rt.name, "component": args.component, "precision": args.precision,
              "opt": args.opt, "resolution": args.resolution, "batch": args.batch,
              "load_before": load_before, "load_after": provenance.load(),
              "profile": profile.name if profile else None, "summary": summary,
              "by_variant": rows,
              "calls": [{"identity": c.identity, "pipelined_s": p, "serialized_s": s,
                         "gated_s": g, **({"predicted_s": pred[i]} if pred else {})}
                        for i, (c, p, s, g) in enumerate(zip(calls, pipe["duration_s"],
                                                             ser["duration_s"],
                                                             gate["duration_s"]))]}
    text = (f"# Dispatch times in the pipeline and alone: {args.component} on {rt.name}\n\n"
            f"- Command: `{result['command']}`\n- Date: {result['date']}, sdsim commit "
            f"{result['sdsim_commit']}; 1-minute load {load_before} before, "
            f"{result['load_after']} after\n- Workload: {args.component}, sd14, "
            f"{args.resolution}x{args.resolution}, batch {args.batch}, {args.precision} "
            f"storage, --opt {args.opt}; {args.warmup} warm-up run(s), median of "
            f"{args.repeat}\n- pipelined: every dispatch enqueued back to back, one wait "
            "(as `sdsim validate --launch host`); serialized: the queue drained after every op; "
            "gated: all enqueued behind a gate, then released, so they run back to back (as "
            "`sdsim validate` runs them by default, and as `sdsim calibrate` times a case "
            "right behind its cache flush)\n\n"
            + tabulate(summary, headers="keys", tablefmt="github", floatfmt=".4g") + "\n\n"
            + tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g") + "\n")
    print(text)
    if args.report:
        path = Path(args.report)
        path.write_text(text)
        path.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
