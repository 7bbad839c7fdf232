"""Write reports/predict-s23ultra.md: what sdsim predicts for the paper's S23 Ultra setting, with
its band, and the measured error of spec-only profiles (benchmarks/spec_transfer.py).

Runs the `sdsim predict` / `sdsim ablate` commands the report names (their markdown output goes
in verbatim) and computes the summary figures with the same cost model in process.

    python benchmarks/predict_report.py [--out reports/predict-s23ultra.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from sdsim import atomic, provenance
from sdsim.cost.predict import predict, trace
from sdsim.cost.profile import load_profile
from sdsim.lower.options import SETS
from sdsim.paths import REPORTS_DIR, ROOT

PAPER_S = 11.5
DEVICES = ("s23ultra", "s22", "s24", "pixel7", "dimensity9200", "iphone14promax")


def sh(cmd: str) -> str:
    """Output of one `sdsim ...` command (run as `python -m sdsim`)."""
    out = subprocess.run([sys.executable, "-m", "sdsim", *cmd.split()[1:]], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return f"### `{cmd}`\n\n{out.rstrip()}\n"


def _transfer_rows() -> list[dict]:
    """Rows of benchmarks/spec_transfer.py over the stored validation runs (empty if none)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("spec_transfer",
                                                  ROOT / "benchmarks" / "spec_transfer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [r for f in sorted(REPORTS_DIR.glob("validation-*.json")) for r in mod.rows_for(f)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPORTS_DIR / "predict-s23ultra.md"))
    args = ap.parse_args()
    graphs = trace("sd14", 512, "fp16")
    prof = load_profile("s23ultra")
    P = {o: predict(prof, SETS[o], graphs=graphs) for o in ("paper", "none")}
    paper = P["paper"]
    lo, hi = paper.total_s_low, paper.total_s_high
    by_class = defaultdict(float)
    latency_bound = 0
    unet = next(c for c in paper.components if c.name == "unet")
    for c in paper.components:
        for k in c.kernels:
            by_class[k.call.kernel_class] += k.time.total_s * c.calls
    latency_bound = sum("latency-bound" in k.time.why for k in unet.kernels)
    others = []
    for d in DEVICES:
        p = load_profile(d)
        a, b = (predict(p, SETS[o], graphs=graphs) for o in ("paper", "none"))
        others.append(f"| {d} ({p.gpu}) | {a.total_s:.2f} | {a.total_s_low:.2f}-"
                      f"{a.total_s_high:.2f} | {b.total_s:.2f} | {b.total_s / a.total_s:.2f}x |")
    transfer = [r for r in _transfer_rows() if r["kind"] == "spec-only"]
    commit = provenance.commit()
    date = provenance.now()
    pct = lambda s: f"{100 * (s / PAPER_S - 1):+.0f}%"
    where = ("below the band's fast end" if PAPER_S < lo else
             "above the band's slow end" if PAPER_S > hi else "inside the band")
    cmds = ["sdsim predict --device s23ultra --format markdown",
            "sdsim predict --device s23ultra --opt none --format markdown",
            "sdsim ablate --device s23ultra --format markdown"]
    sections = [sh(c) for c in cmds]
    walls, load = [], provenance.load()
    for _ in range(3):
        t0 = time.perf_counter()
        sh("sdsim predict --device s23ultra")
        walls.append(time.perf_counter() - t0)
    worst = max((abs(r["e2e_error_%"]) for r in transfer), default=float("nan"))
    inside = sum(r["in_band"] for r in transfer)
    text = f"""# SD1.4 on the Galaxy S23 Ultra: what sdsim predicts, and where 11.5 s falls

Produced by `python benchmarks/predict_report.py` on {date} on {platform.node()} (a 2-core
{platform.machine()} Linux VM, Python {platform.python_version()}), sdsim commit `{commit}`.
Every table under "Command output" is the verbatim output of the command in its heading; the
summary figures are computed by the same cost model in the same run.

Setting: the paper's (Chen et al. 2023, "Speed Is All You Need"): SD1.4, 512x512, 20 steps, fp16,
classifier-free guidance (UNet batch 2), PNDM (21 UNet calls for 20 steps), text encoder once
(batch 2), VAE decoder once. The paper reports **11.5 s** end to end on the S23 Ultra.

## Result

| | predicted | band (disagreeing sources) | paper |
|---|---|---|---|
| with the paper's optimizations | **{paper.total_s:.2f} s** ({pct(paper.total_s)}) | {lo:.2f}-{hi:.2f} s | 11.5 s |
| with none (all baselines) | {P['none'].total_s:.2f} s | {P['none'].total_s_low:.2f}-{P['none'].total_s_high:.2f} s | — |
| speed-up from the optimizations | {P['none'].total_s / paper.total_s:.2f}x | | — |

**The paper's 11.5 s falls {where}** ({lo:.2f}-{hi:.2f} s). The band spans only the sources that
disagree about this phone (ALU count and so compute units, clock, work-group residency, the
step latency); it does not include the error of making a profile from specifications at all,
which is measured below and is larger.

How the time is predicted: every kernel call's launch geometry (work-groups, serial steps) is
timed as `t0 + steps x max(latency, waves x step)` (sdsim/cost/waves.py). The phone has no
calibration, so each kernel's coefficients are transferred from the profile's specifications:
`step` is the roofline time of one wave-step at the class efficiency, `latency` the profile's
step latency (an estimate: ~1000 cycles), `t0` the launch overhead (an estimate: 10 us).
{latency_bound} of the {len(unet.kernels)} dispatches of a UNet call are latency-bound
(too few work-groups to fill 6 shader processors). Seconds by kernel class (all calls):
{", ".join(f"{k} {v:.2f}" for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]))}.

## What a spec-only profile is worth: the transfer error, measured

sdsim cannot run on the phone, so the error of a profile made from specifications is measured
where it can run: `device_profiles/nvidia-h200-spec.yaml` and `device_profiles/pocl-cpu-spec.yaml`
are made exactly as the phone profiles are (spec sheets, the same published efficiency figures, no
calibration) and predict the measured validation runs of those devices
(`python benchmarks/spec_transfer.py`, reports/spec-transfer.md):

| run | opt | measured s | spec-only predicted s | error % | spec-only band s | in band |
|---|---|---|---|---|---|---|
{chr(10).join(f"| {r['run']} | {r['opt']} | {r['measured_s']:.4g} | {r['predicted_s']:.4g} | {r['e2e_error_%']:+.0f} | {r['band_low_s']:.4g}-{r['band_high_s']:.4g} | {'yes' if r['in_band'] else 'no'} |" for r in transfer)}

Spec-only errors reach {worst:.0f}% in magnitude, and the measured time falls inside the spec-only
band in {inside} of {len(transfer)} runs. That is what to expect of the S23 Ultra figure above:
an estimate good to a factor, not to 15%. Calibrated profiles of the same devices predict the
same runs far better (reports/validation-*.md): the way to a trustworthy phone figure is
`sdsim calibrate` on the phone.

## Why the prediction differs from 11.5 s

1. **Efficiencies come from other GPUs.** No public per-kernel measurements for the Adreno 740
   were found. GEMM/conv/attention use 0.70 (a TFLite GPU conv kernel on a PowerVR GE8320);
   streaming kernels use 0.49 (clpeak on a 2015 Mali-T760). The step time of every
   throughput-bound call scales as 1/efficiency.
2. **DRAM traffic as tiled.** The kernel cost formulas charge an operand each time a tiling
   streams it; the Adreno's 1 MiB GPU cache, the SoC's system-level cache and the texture path
   the paper's kernels (TFLite GPU) read weights through serve many re-reads
   (`--traffic cached` is the what-if).
3. **Latency and occupancy are estimates.** The step latency (~1000 cycles) and the residency
   (4 work-groups of 256 per shader processor) are not published; they set the time of every
   call with few work-groups.
4. **Less fusion than the paper's engine.** sdsim runs residual adds, SiLU, layout transposes
   and concatenations as their own dispatches; TFLite GPU fuses them into neighbours.
5. **sdsim's kernels are not the paper's.** The prediction is for sdsim's OpenCL kernels on this
   GPU; the paper's hand-tuned kernels are faster per FLOP than a portable tiled GEMM.

The profile was not tuned towards 11.5 s: its numbers are the spec-sheet and published values
their sources name; the published end-to-end figures are for checking, not fitting.

## Other profiles (same setting)

| device | paper s | paper band s | none s | speed-up |
|---|---|---|---|---|
{chr(10).join(others)}

## Command output

{chr(10).join(sections)}
## Speed

`sdsim predict --device s23ultra` took {statistics.median(walls):.2f} s (median of 3 fresh
interpreters, {max(walls):.2f} s worst) in this run, machine load {load} (1-min average) before
it; `python benchmarks/predict_speed.py` times
the prediction warm, in process.
"""
    atomic.write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
