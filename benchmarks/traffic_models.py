"""Which DRAM-traffic model predicts measured kernel times best: tiled, cached or compulsory.

Loads the measured per-call times of stored validation runs (reports/validation-*.json, written
by `sdsim validate`), re-predicts every call with the current cost model under each traffic model
(sdsim/cost/traffic.py) and the run's own device profile, and reports end-to-end error, RMSPE and
the share of calls and of measured time within +-15%. Writes reports/traffic-models.md.

    python benchmarks/traffic_models.py [FILE.json ...] [--out reports/traffic-models.md]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from pathlib import Path

from sdsim import atomic
from sdsim.backends.trace import trace_component
from sdsim.cost.predict import predict_component
from sdsim.cost.profile import load_profile
from sdsim.cost.traffic import DEFAULT, TRAFFIC
from sdsim.model.presets import load_model_config
from sdsim.output import render_rows
from sdsim.paths import REPORTS_DIR, ROOT
from sdsim.validation import compare, report

RUNS = ("validation-nvidia-h200-opencl.json", "validation-pocl-cpu.json",
        "validation-nvidia-h200-opencl-vae_decoder.json",
        "validation-nvidia-h200-opencl-text_encoder.json")


def repredict(ctx: dict, run: dict, traffic: str, graph) -> list:
    """The run's measured calls joined with the current model's prediction under `traffic`."""
    profile = load_profile(ctx["profile"])
    pred = predict_component(graph, 1, profile, run["options"], ctx["precision"], traffic)
    measured = [(r, r.measured_s) for r in run["rows"]]
    return compare.join(measured, pred.kernels)


def rows_for(path: Path) -> list[dict]:
    ctx, runs, _ = report.load(path)
    graph = trace_component(ctx["component"], load_model_config("sd14"), ctx["resolution"],
                            ctx["batch"], ctx["precision"])
    out = []
    for run in runs:
        for traffic in TRAFFIC:
            m = compare.metrics(repredict(ctx, run, traffic, graph))
            out.append({"device": ctx["profile"], "component": ctx["component"],
                        "px": ctx["resolution"], "opt": run["opt"], "traffic": traffic,
                        "calls": m["calls"], "measured_s": m["measured_s"],
                        "predicted_s": m["predicted_s"], "e2e_error_%": m["e2e_error_pct"],
                        "rmspe_%": m["rmspe_pct"], "acc15_calls_%": m["acc15_calls_pct"],
                        "acc15_time_%": m["acc15_time_pct"]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="validation .json files (default: the committed runs)")
    ap.add_argument("--out", default=str(REPORTS_DIR / "traffic-models.md"))
    args = ap.parse_args()
    files = [Path(f) for f in args.files] or [REPORTS_DIR / f for f in RUNS]
    rows = [r for f in files if f.exists() for r in rows_for(f)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# Traffic models against measured kernel times", "",
        f"Produced by `python benchmarks/traffic_models.py` on {date}, machine "
        f"{platform.node()} ({platform.machine()}, Python {platform.python_version()}), "
        f"commit {commit} (plus the working tree). Current default: `{DEFAULT}`.", "",
        "Every measured call of the stored validation runs (" +
        ", ".join(f"`reports/{f.name}`" for f in files if f.exists()) +
        ") re-predicted by the current cost model with the run's own profile under each traffic "
        "model of `sdsim/cost/traffic.py`. Metrics as in `sdsim validate`: e2e error of the "
        "summed time, RMSPE over calls, share of calls / of measured time within +-15%.", "",
        render_rows(rows, "markdown", floatfmt=".4g"), ""])
    atomic.write_text(args.out, text)
    print(render_rows(rows, "table", floatfmt=".4g"))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
