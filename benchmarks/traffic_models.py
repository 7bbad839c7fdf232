"""Which DRAM-traffic model predicts measured kernel times best: tiled, cached or compulsory.

Loads the measured per-call times of stored validation runs (reports/validation-*.json, written
by `sdsim validate`), re-predicts every call with the current cost model under each traffic model
(sdsim/cost/traffic.py) and reports end-to-end error, RMSPE and the share of calls and of
measured time within +-15%. Writes reports/traffic-models.md.

The profiles' class efficiencies were calibrated with tiled bytes, which favours `tiled`. So each
mode is also scored with efficiencies recalibrated under that mode from the same calibration
measurements (every dispatch's variant, synthetic shape and measured time, read from the rows of
the profile's reports/calibration-NAME.md):
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

from sdsim import atomic, kernels
from sdsim.backends.trace import trace_component
from sdsim.cost.predict import predict_component
from sdsim.cost.profile import load_profile
from sdsim.cost.roofline import roofline
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


def _value(text: str):
    """A shape value as the calibration report prints it: 3, None, True, 1x1x1x1 or
    (2, 96, 12, 12)x(2, 96, 1, 1)."""
    if text.startswith("("):
        return [tuple(int(v) for v in part.strip("()").split(",") if v.strip())
                for part in re.findall(r"\([^)]*\)", text)]
    if re.fullmatch(r"\d+(x\d+)+", text):
        return tuple(int(v) for v in text.split("x"))
    return {"None": None, "True": True, "False": False}.get(text, _number(text))


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def calibration_rows(profile) -> list[dict]:
    """One row per measured dispatch of the profile's calibration report: its variant record,
    shape, kernel and measured time (the report's own rows, whatever mix wrote them)."""
    text = (REPORTS_DIR / f"calibration-{profile.name}.md").read_text()
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and "/" in cells[0] and cells[0] != "family/variant":
            shape = {k: _value(v) for k, v in re.findall(r"(\w+)=(\([^=]*\)|\S+)", cells[1])}
            rows.append({"record": kernels.get(*cells[0].split("/")), "shape": shape,
                         "kernel": cells[2], "measured_s": float(cells[5]) * 1e-3})
    return rows


def recalibrated(profile, traffic: str, precision: str = "fp16"):
    """The profile with its class efficiencies recomputed under `traffic` (see module doc)."""
    e = BYTES[precision]
    peak, bw = profile.peak_flops[precision], profile.dram_bandwidth
    roof, busy = defaultdict(float), defaultdict(float)
    rows = calibration_rows(profile)
    i = 0
    while i < len(rows):
        record, shape = rows[i]["record"], rows[i]["shape"]
        ks = record.costs(precision, **shape)
        ins, ws, out = record.operands(shape)
        op = SimpleNamespace(index=0, bytes_read=(sum(ins) + sum(ws.values())) * e,
                             bytes_written=out * e)
        plan = [KernelCall("cal", 0, record.family, "", record.family, record.name, j, k.kernel,
                           k.kernel_class, k.flops, k.bytes_read, k.bytes_written, k.workspace,
                           None, f"cal/{j}")
                for j, k in enumerate(ks)]
        for k in apply(SimpleNamespace(ops=[op]), plan, traffic, profile.cache, precision):
            m = rows[i]
            i += 1
            if (m["record"], m["kernel"]) != (record, k.kernel):
                raise SystemExit(f"calibration report row {i} is {m['record'].key} "
                                 f"{m['kernel']}, the cost formula says {k.kernel}")
            compute_s, memory_s = roofline(k, peak, bw)
            roof[k.kernel_class] += max(compute_s, memory_s)
            busy[k.kernel_class] += max(m["measured_s"] - profile.launch_overhead, 1e-9)
    eff = dict(profile.efficiency)
    eff.update({c: min(1.0, max(roof[c] / busy[c], 1e-4)) for c in roof})
    return dataclasses.replace(profile, efficiency=eff)


def repredict(profile, ctx: dict, run: dict, traffic: str, graph) -> list:
    """The run's measured calls joined with the current model's prediction under `traffic`: the
    n-th measured dispatch of an op pairs with the n-th predicted dispatch of the same op (stored
    runs may name calls by an older identity scheme)."""
    pred = predict_component(graph, 1, profile, run["options"], ctx["precision"], traffic)
    by_op = defaultdict(list)
    for k in pred.kernels:
        by_op[k.call.op_index].append(k.call)
    seen: dict = defaultdict(int)
    measured = []
    for r in run["rows"]:
        measured.append((by_op[r.op_index][seen[r.op_index]], r.measured_s))
        seen[r.op_index] += 1
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


READING = """\
## Reading

- **Consistent efficiencies are the fair test.** A profile's class efficiencies were calibrated
  with tiled bytes; scoring `cached` or `compulsory` with them mixes two traffic models (the
  `profile` rows). The `recalibrated` rows recompute every efficiency from the same calibration
  measurements under the mode scored (the `tiled` recalibration reproduces the profile, a check
  that the calibration rows were matched right).
- **H200 UNet (the component the validation goal is set for), consistent efficiencies:
  `tiled` is best on every metric in both runs** (paper and none): lowest |e2e error|, lowest RMSPE, most measured time
  within +-15% (see the verdict table). Mechanism: in the calibration mix
  the attention score and P.V GEMMs (head dim 40-96: memory-bound under tiled bytes) are credited
  with about half their bytes under `cached`, their roofline halves, and the gemm class
  efficiency falls from 0.18 to 0.11 (table above); the UNet's projection and Winograd GEMMs,
  compute-bound on the H200 under every model, are then predicted about 1.6x slower. Under
  `compulsory` the reduction and elementwise classes fall too (the calibration shapes' footprints
  fit the 4.3 MB the OpenCL driver reports as its global-memory cache). The measured kernel times
  are more consistent with tiled bytes than with the savings these models credit.
- With the tiled-calibrated efficiencies (`profile` rows) `cached` and `compulsory` shrink the
  UNet's e2e error but lower the share of time within +-15%: mixed, and an inconsistent pairing.
- VAE decoder (H200): `tiled` is best on every metric too. Text encoder (H200): `cached` and
  `compulsory` score better, but every model under-predicts it by 40-60% (its 77-token GEMMs are
  dominated by fixed per-dispatch costs the roofline lacks); the lower efficiencies those modes
  recalibrate to make everything slower, which happens to help here. Not evidence of cache reuse.
- **PoCL: no evidence either way.** The traffic model moves its predictions by about 1% or
  less: its reported cache (300 MB) holds nearly every op at 64 px, so `cached` equals
  `compulsory`, and few of its calls are memory-bound. Its large errors come from elsewhere
  (see reports/validation-pocl-cpu.md). A run flagged stale in the runs table was measured
  with other kernels or another profile than the current ones and is weak evidence.

**Decision: the default stays `tiled`.** The evidence from real kernel runs favours it on the
UNet, the component the validation goal is set for; `--traffic cached` is available for
what-if studies. The validation reports of the H200 and PoCL were produced with tiled traffic, which is still the
default, so they stay consistent with `sdsim predict`. Changed for `compulsory`: its saving is now taken from an op's
contraction dispatches first (transforms and im2col keep their bytes), so its totals differ
slightly from the earlier uniform scaling.
"""


def _stale(files) -> list[dict]:
    """Per stored run: the prediction stored with it and the current tiled re-prediction."""
    out = []
    for f in files:
        ctx, runs, _ = report.load(f)
        graph = trace_component(ctx["component"], load_model_config("sd14"), ctx["resolution"],
                                ctx["batch"], ctx["precision"])
        prof = load_profile(ctx["profile"])
        for run in runs:
            now = compare.metrics(repredict(prof, ctx, run, "tiled", graph))["predicted_s"]
            then = run["metrics"]["predicted_s"]
            out.append({"file": f.name, "opt": run["opt"], "run date": ctx["date"],
                        "stored predicted_s": then, "re-predicted tiled_s": now,
                        "stale": abs(now - then) > 0.01 * then})
    return out


def _verdict(rows) -> list[dict]:
    """Per run, the traffic mode that scores best on each metric with consistent efficiencies."""
    out = []
    keys = sorted({(r["device"], r["component"], r["opt"]) for r in rows},
                  key=lambda k: (k[0], k[1] != "unet", k[1], k[2]))
    for key in keys:
        rs = [r for r in rows if (r["device"], r["component"], r["opt"]) == key
              and r["efficiency"] == "recalibrated"]
        best = lambda f, rs=rs: min(rs, key=f)["traffic"]
        out.append({"device": key[0], "component": key[1], "opt": key[2],
                    "best |e2e|": best(lambda r: abs(r["e2e_error_%"])),
                    "best RMSPE": best(lambda r: r["rmspe_%"]),
                    "best acc15 time": best(lambda r: -r["acc15_time_%"])})
    return out


def _efficiencies(files) -> list[dict]:
    out = []
    for name in sorted({report.load(f)[0]["profile"] for f in files}):
        prof = load_profile(name)
        for t in TRAFFIC:
            out.append({"profile": name, "traffic": t,
                        **recalibrated(prof, t).efficiency})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="validation .json files (default: the committed runs)")
    ap.add_argument("--out", default=str(REPORTS_DIR / "traffic-models.md"))
    args = ap.parse_args()
    files = [Path(f) for f in args.files] or [REPORTS_DIR / f for f in RUNS]
    files = [f for f in files if f.exists()]
    rows = [r for f in files for r in rows_for(f)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# Traffic models against measured kernel times", "",
        (f"Produced by `python benchmarks/traffic_models.py` on {date}, machine "
         f"{platform.node()} (a 2-core {platform.machine()} Linux VM, Python "
         f"{platform.python_version()}), commit {commit} (plus the working tree). Current "
         f"default: `{DEFAULT}`."), "",
        ("Every measured call of the stored validation runs (" +
        ", ".join(f"`reports/{f.name}`" for f in files) +
        ") re-predicted by the current cost model with the run's own profile under each traffic "
        "model of `sdsim/cost/traffic.py`. Metrics as in `sdsim validate`: e2e error of the "
        "summed time, RMSPE over calls, share of calls / of measured time within +-15%."), "",
        "## Verdict per run (recalibrated efficiencies)", "",
        render_rows(_verdict(rows), "markdown"), "",
        "## Stored runs", "",
        render_rows(_stale(files), "markdown", floatfmt=".4g"), "",
        "## Class efficiencies recalibrated under each mode", "",
        render_rows(_efficiencies(files), "markdown", floatfmt=".3g"), "",
        "## All scores", "",
        render_rows(rows, "markdown", floatfmt=".4g"), "", READING])
    atomic.write_text(args.out, text)
    print(render_rows(rows, "table", floatfmt=".4g"))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
