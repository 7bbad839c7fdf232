"""Which DRAM-traffic model predicts measured kernel times best: tiled, cached or compulsory.

Loads the measured per-call times of stored validation runs (reports/validation-*.json, written
by `sdsim validate`), re-predicts every call with the current cost model under each traffic model
(sdsim/cost/traffic.py) and reports end-to-end error, RMSPE and the share of calls and of
measured time within +-15%. Writes reports/traffic-models.md.

The profiles' class efficiencies were calibrated with tiled bytes, which favours `tiled`. So each
mode is also scored with efficiencies recalibrated under that mode from the same calibration
measurements (every dispatch's measured time in the profile's reports/calibration-NAME.md; the
synthetic shapes are sdsim.calibration.classes.MIXES, matched row by row):
efficiency[class] = sum(roofline under the mode) / sum(measured - launch), as `sdsim calibrate`
computes it.

    python benchmarks/traffic_models.py [FILE.json ...] [--out reports/traffic-models.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from sdsim import atomic
from sdsim.backends.trace import trace_component
from sdsim.cost.predict import predict_component
from sdsim.cost.profile import load_profile
from sdsim.cost.traffic import DEFAULT, TRAFFIC, apply
from sdsim.kernels import BYTES
from sdsim.lower.plan import KernelCall
from sdsim.model.presets import load_model_config
from sdsim.output import render_rows
from sdsim.paths import REPORTS_DIR, ROOT
from sdsim.validation import compare, report

RUNS = ("validation-nvidia-h200-opencl.json", "validation-pocl-cpu.json",
        "validation-nvidia-h200-opencl-vae_decoder.json",
        "validation-nvidia-h200-opencl-text_encoder.json")


def calibration_rows(profile) -> tuple[str, list[dict]]:
    """(mix, rows) of the profile's calibration report: one per measured dispatch."""
    text = (REPORTS_DIR / f"calibration-{profile.name}.md").read_text()
    mix = re.search(r"Kernel-class mix: `(\w+)`", text).group(1)
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and "/" in cells[0] and cells[0] != "family/variant":
            rows.append({"fv": cells[0], "kernel": cells[2], "measured_s": float(cells[5]) * 1e-3})
    return mix, rows


def recalibrated(profile, traffic: str, precision: str = "fp16"):
    """The profile with its class efficiencies recomputed under `traffic` (see module doc)."""
    from sdsim.backends.opencl.dispatch import operands
    from sdsim.calibration.classes import MIXES, shape_costs

    mix, measured = calibration_rows(profile)
    e = BYTES[precision]
    peak, bw = profile.peak_flops[precision], profile.dram_bandwidth
    roof, busy = defaultdict(float), defaultdict(float)
    i = 0
    for family, variant, shape in MIXES[mix]:
        ks = shape_costs(family, variant, shape, precision)
        ins, ws, out = operands(family, variant, shape)
        op = SimpleNamespace(index=0, bytes_read=(sum(ins) + sum(ws.values())) * e,
                             bytes_written=out * e)
        plan = [KernelCall("cal", 0, family, "", family, variant, j, k.kernel, k.kernel_class,
                           k.flops, k.bytes_read, k.bytes_written, k.workspace)
                for j, k in enumerate(ks)]
        ks = apply(SimpleNamespace(ops=[op]), plan, traffic, profile.cache, precision)
        for k in ks:
            m = measured[i]
            i += 1
            if (m["fv"], m["kernel"]) != (f"{family}/{variant}", k.kernel):
                raise SystemExit(f"calibration report row {i} is {m['fv']} {m['kernel']}, the "
                                 f"{mix} mix says {family}/{variant} {k.kernel}")
            roof[k.kernel_class] += max(k.flops / peak, k.dram_bytes / bw)
            busy[k.kernel_class] += max(m["measured_s"] - profile.launch_overhead, 1e-9)
    eff = dict(profile.efficiency)
    eff.update({c: min(1.0, max(roof[c] / busy[c], 1e-4)) for c in roof})
    return dataclasses.replace(profile, efficiency=eff)


def repredict(profile, ctx: dict, run: dict, traffic: str, graph) -> list:
    """The run's measured calls joined with the current model's prediction under `traffic`."""
    pred = predict_component(graph, 1, profile, run["options"], ctx["precision"], traffic)
    measured = [(r, r.measured_s) for r in run["rows"]]
    return compare.join(measured, pred.kernels)


def rows_for(path: Path) -> list[dict]:
    ctx, runs, _ = report.load(path)
    graph = trace_component(ctx["component"], load_model_config("sd14"), ctx["resolution"],
                            ctx["batch"], ctx["precision"])
    profile = load_profile(ctx["profile"])
    profiles = {(t, "profile"): profile for t in TRAFFIC}
    profiles.update({(t, "recalibrated"): recalibrated(profile, t, ctx["precision"])
                     for t in TRAFFIC})
    out = []
    for run in runs:
        for (traffic, eff), prof in profiles.items():
            m = compare.metrics(repredict(prof, ctx, run, traffic, graph))
            out.append({"device": ctx["profile"], "component": ctx["component"],
                        "px": ctx["resolution"], "opt": run["opt"], "traffic": traffic,
                        "efficiency": eff,
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
