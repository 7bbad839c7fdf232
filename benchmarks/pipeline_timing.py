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

and, for each mode, how the event timestamps sit against each other: the gap from one
dispatch's end to the next one's start (negative: the next dispatch's start is stamped before
the previous one ends), and the span of the whole run against the sum of the durations; each
mode's per-call times are set against the predictions of the profile `--device` names, in the
metrics `sdsim validate` reports (sdsim.validation.compare).

    PYTHONPATH=$PWD python3 benchmarks/pipeline_timing.py --platform NVIDIA \
        --device device_profiles/nvidia-h200-opencl.yaml --component text_encoder --precision fp32
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
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


def summarize(runs: list[list[tuple]], costed) -> dict:
    """A mode's runs against the prediction (`costed`: the component's predicted calls):
    per-call rows and metrics as `sdsim validate` computes them (sdsim.validation.compare, on
    each dispatch's median duration), with the span and the gaps between dispatches."""
    from sdsim.validation import compare

    n = len(runs[0])
    rows = compare.join(compare.timings([[(r[0], r[4] - r[3]) for r in run]
                                                for run in runs]), costed)
    gaps = [r[i][3] - r[i - 1][4] for r in runs for i in range(1, n)]
    return {"rows": rows, "metrics": compare.metrics(rows),
            "variants": {v["variant"]: v for v in compare.by_class(rows, "variant")},
            "span_s": statistics.median(r[-1][4] - r[0][3] for r in runs),
            "gap_median_us": statistics.median(gaps) * 1e6 if gaps else 0.0,
            "gap_negative_pct": 100 * sum(g < 0 for g in gaps) / max(1, len(gaps)),
            "gap_min_us": min(gaps) * 1e6 if gaps else 0.0}


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
    ap.add_argument("--device", required=True,
                    help="profile whose predictions each mode is set against")
    ap.add_argument("--component", default="text_encoder")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=("fp16", "fp32"))
    ap.add_argument("--opt", default="paper")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--report", help="markdown path (a .json beside it)")
    args = ap.parse_args(argv)

    profile = load_profile(args.device)
    tuning.activate(tuning.for_profile(profile))
    rt = Runtime(args.platform, args.cl_device)
    cfg = load_model_config("sd14")
    opt = parse_opt(args.opt)
    load_before = provenance.load()
    runner = ComponentRunner(rt, args.component, cfg, opt, args.precision, args.resolution,
                             args.batch)
    costed = predict_component(runner.graph, 1, profile, opt, args.precision).kernels
    modes = {m: summarize(run_mode(runner, m, args.warmup, args.repeat), costed)
             for m in ("pipelined", "serialized", "gated")}
    pipe, ser, gate = modes["pipelined"], modes["serialized"], modes["gated"]
    rows = [{"variant": v, "calls": p["calls"], "pipelined_ms": p["measured_ms"],
             "serialized_ms": ser["variants"][v]["measured_ms"],
             "gated_ms": gate["variants"][v]["measured_ms"],
             "pipelined/gated": p["measured_ms"] / gate["variants"][v]["measured_ms"],
             "predicted_ms": p["predicted_ms"]}
            for v, p in sorted(pipe["variants"].items(), key=lambda kv: -kv[1]["measured_ms"])]
    summary = [{"mode": m, "sum_of_durations_ms": s["metrics"]["measured_s"] * 1e3,
                "span_ms": s["span_s"] * 1e3, "median_gap_us": s["gap_median_us"],
                "min_gap_us": s["gap_min_us"], "negative_gaps_pct": s["gap_negative_pct"],
                "e2e_error_pct": s["metrics"]["e2e_error_pct"],
                "time_within_10pct": s["metrics"]["acc10_time_pct"]}
               for m, s in modes.items()]
    result = {"command": "python3 benchmarks/pipeline_timing.py " + shlex.join(argv or sys.argv[1:]),
              "date": provenance.now(), "sdsim_commit": provenance.commit(),
              "device": rt.name, "component": args.component, "precision": args.precision,
              "opt": args.opt, "resolution": args.resolution, "batch": args.batch,
              "load_before": load_before, "load_after": provenance.load(),
              "profile": profile.name, "summary": summary, "by_variant": rows,
              "calls": [{"identity": p.identity, "pipelined_s": p.measured_s,
                         "serialized_s": s.measured_s, "gated_s": g.measured_s,
                         "predicted_s": p.predicted_s}
                        for p, s, g in zip(pipe["rows"], ser["rows"], gate["rows"])]}
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
