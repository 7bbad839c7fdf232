"""Write reports/predict-s23ultra.md: what sdsim predicts for the paper's S23 Ultra setting.

Runs the `sdsim predict` / `sdsim ablate` commands the report names (their markdown output goes
in verbatim) and computes the summary figures with the same cost model in process.

    python benchmarks/predict_report.py [--out reports/predict-s23ultra.md]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from sdsim import atomic
from sdsim.cost.predict import predict, trace
from sdsim.cost.profile import load_profile
from sdsim.cost.traffic import DEFAULT, TRAFFIC
from sdsim.lower.options import SETS
from sdsim.paths import REPORTS_DIR, ROOT

PAPER_S = 11.5
DEVICES = ("s23ultra", "s22", "s24", "pixel7", "dimensity9200", "iphone14promax")


def sh(cmd: str) -> str:
    """Output of one `sdsim ...` command (run as `python -m sdsim`)."""
    out = subprocess.run([sys.executable, "-m", "sdsim", *cmd.split()[1:]], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return f"### `{cmd}`\n\n{out.rstrip()}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPORTS_DIR / "predict-s23ultra.md"))
    args = ap.parse_args()
    graphs = trace("sd14", 512, "fp16")
    prof = load_profile("s23ultra")
    P = {(o, t): predict(prof, SETS[o], graphs=graphs, traffic=t)
         for o in ("paper", "none") for t in TRAFFIC}
    tot = {k: p.total_s for k, p in P.items()}
    by_class = defaultdict(float)
    unet = {t: next(c for c in P["paper", t].components if c.name == "unet") for t in TRAFFIC}
    for c in P["paper", "tiled"].components:
        for k in c.kernels:
            by_class[k.call.kernel_class] += k.time.total_s * c.calls
    mem_bound = {t: sum(k.time.bound == "memory" for k in unet[t].kernels) for t in TRAFFIC}
    n_disp = len(unet["tiled"].kernels)
    compulsory_gb = sum(op.bytes_read + op.bytes_written for op in graphs["unet"].ops) / 1e9
    others = []
    for d in DEVICES:
        p = load_profile(d)
        others.append("| " + " | ".join([f"{d} ({p.gpu})"] + [
            f"{predict(p, SETS[o], graphs=graphs, traffic=t).total_s:.2f}"
            for o in ("paper", "none") for t in TRAFFIC]) + " |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    pct = lambda s: f"{100 * (s / PAPER_S - 1):+.0f}%"
    cells = lambda o: " | ".join(f"**{tot[o, t]:.2f} s** ({pct(tot[o, t])})" if o == "paper"
                                 else f"{tot[o, t]:.2f} s" for t in TRAFFIC)
    gb = lambda t: unet[t].dram_per_call / 1e9
    bw = prof.dram_bandwidth / 1e9
    cmds = ["sdsim predict --device s23ultra --format markdown",
            "sdsim predict --device s23ultra --opt none --format markdown",
            "sdsim predict --device s23ultra --traffic cached --format markdown",
            "sdsim predict --device s23ultra --traffic cached --opt none --format markdown",
            "sdsim predict --device s23ultra --traffic compulsory --format markdown",
            "sdsim predict --device s23ultra --traffic compulsory --opt none --format markdown",
            "sdsim ablate --device s23ultra --format markdown",
            "sdsim ablate --device s23ultra --traffic cached --format markdown",
            "sdsim ablate --device s23ultra --traffic compulsory --format markdown"]
    sections = [sh(c) for c in cmds]
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        sh("sdsim predict --device s23ultra")
        walls.append(time.perf_counter() - t0)
    best = min(TRAFFIC, key=lambda t: abs(tot["paper", t] - PAPER_S))
    text = f"""# SD1.4 on the Galaxy S23 Ultra: what sdsim predicts, and why it is not 11.5 s

Produced by `python benchmarks/predict_report.py` on {date} on {platform.node()} (a 2-core
{platform.machine()} Linux VM, Python {platform.python_version()}), sdsim commit `{commit}`
(plus uncommitted changes in the working tree). Every table under "Command output" is the
verbatim output of the command in its heading; the summary figures are computed by the same
cost model in the same run. Default traffic model: `{DEFAULT}`.

Setting: the paper's (Chen et al. 2023, "Speed Is All You Need"): SD1.4, 512x512, 20 steps, fp16,
classifier-free guidance (UNet batch 2), PNDM (21 UNet calls for 20 steps), text encoder once
(batch 2), VAE decoder once. The paper reports **11.5 s** end to end on the S23 Ultra.

## Result

Three DRAM-traffic models (sdsim/cost/traffic.py): `tiled` charges every re-read of an operand
(no cache), `cached` lets the profile's 1 MiB GPU cache serve what it can (ops whose footprint fits,
and a cache-blocked schedule's reuse in GEMM-like kernels), `compulsory` moves every op's bytes
once (the lower bound).

| | tiled (default) | cached | compulsory (bound) | paper |
|---|---|---|---|---|
| with the paper's optimizations | {cells("paper")} | 11.5 s |
| with none (all baselines) | {cells("none")} | — |
| speed-up from the optimizations | {" | ".join(f"{tot['none', t] / tot['paper', t]:.2f}x" for t in TRAFFIC)} | — |

The accuracy target is within 15% of 11.5 s from a profile built from public specifications and
kernel measurements. **With the default (tiled) traffic it is not met**: {pct(tot['paper', 'tiled'])}.
The closest of the three models is `{best}` ({pct(tot['paper', best])}), but that is not why
a default is chosen: the default is the model that predicts measured kernel times best, and on
the measured H200 runs that is `tiled` (reports/traffic-models.md); `cached` and `compulsory` are
reported here as what-ifs, not as a fit to 11.5 s. None of the three reads the 11.5 s.

UNet per call (paper's kernels): {gb('tiled'):.1f} GB of DRAM traffic tiled, {gb('cached'):.1f} GB
cached, {gb('compulsory'):.1f} GB compulsory ({compulsory_gb:.1f} GB is what its ops' inputs,
weights and outputs weigh; the rest of the compulsory figure is Winograd and attention workspace).
Memory-bound dispatches of the {n_disp} per UNet call: {mem_bound['tiled']} tiled,
{mem_bound['cached']} cached, {mem_bound['compulsory']} compulsory. Seconds by kernel class (tiled,
all calls): {", ".join(f"{k} {v:.2f}" for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]))}.

## Why the prediction differs from 11.5 s

1. **DRAM traffic.** The kernel cost formulas (sdsim/kernels) charge an operand each time a
   tiling streams it: the 64x64-tile GEMM re-reads A once per column block and B once per row
   block; FlashAttention re-reads K and V once per query tile. That is {gb('tiled'):.1f} GB per
   UNet call at {bw:.1f} GB/s, and {mem_bound['tiled']} of {n_disp} dispatches are memory-bound.
   The Adreno 740 has a 1 MiB GPU cache (and the SoC a system-level cache the profile does not
   model), and the paper's kernels (TFLite GPU) read weights through the texture path, so many
   re-reads never reach DRAM. `--traffic cached` credits the GPU cache with the reuse a
   cache-blocked schedule gets ({gb('cached'):.1f} GB per UNet call, {tot['paper', 'cached']:.2f} s);
   `--traffic compulsory` assumes every re-read hits ({tot['paper', 'compulsory']:.2f} s). On the
   one GPU where sdsim's kernels were measured (the H200, reports/traffic-models.md), crediting
   the cache did not predict the measured times better than tiled traffic, so tiled stays the
   default; whether the Adreno's cache behaves differently can only be settled by measuring on
   the phone (`sdsim calibrate` + `sdsim validate`).
2. **Efficiency factors come from other GPUs.** No public per-kernel measurements for the
   Adreno 740 were found. GEMM/conv/attention use 0.70 (a TFLite GPU conv kernel on a PowerVR
   GE8320); streaming kernels use 0.49 (clpeak on a 2015 Mali-T760). With tiled traffic nearly
   everything is memory-bound, so the time scales as 1/efficiency of each class: these are the
   first numbers to replace with `sdsim calibrate` measurements on the phone.
3. **Peak rate is uncertain.** 2.2 TFLOPS FP32 (1536 ALUs x 2 x 719 MHz) is used; one source lists
   3.7 TFLOPS. It matters only where dispatches are compute-bound (the cached and compulsory
   views).
4. **Less fusion than the paper's engine.** sdsim runs residual adds, SiLU, layout
   transposes and concatenations as their own dispatches (elementwise class above); TFLite GPU
   fuses such ops into the neighbouring conv or GEMM. The launch overhead (10 us, an estimate)
   is a small share of the total ({n_disp} dispatches x 21 calls x 10 us = {n_disp * 21 * 1e-5:.2f} s).
5. **The VAE decoder** at 512x512 costs about as much as a UNet call, because its 128-channel
   512x512 convs move large activations; the paper does not break its 11.5 s down.

## Other profiles (same setting)

`sdsim predict --device D [--opt none] [--traffic T] --format json` (total_s):

| device | {" | ".join(f"{o}, {t}" for o in ("paper", "none") for t in TRAFFIC)} |
|---|---|---|---|---|---|---|
{chr(10).join(others)}

## Command output

{chr(10).join(sections)}
## Caveats

- The s23ultra profile (every number with its source, `device_profiles/s23ultra.yaml`) was
  committed before the first end-to-end prediction and has not been changed to approach 11.5 s.
- The `cached` model reads only the profile's cache size and the op/kernel shapes, never the
  11.5 s; the default was decided on measured H200 kernel times (reports/traffic-models.md).
  The s23ultra result was known while the model was developed: it was revised once (the
  streaming dispatches of an op larger than the cache now keep their tiled bytes), because the
  calibration's naive attention had its softmax passes over a 216 MB score matrix credited with
  cache hits; that revision moved this prediction from 9.74 s to 10.16 s.
- Numbers differ from the first version of this report (21.15 s tiled, 9.28 s compulsory):
  the kernel cost formulas changed since, and the compulsory model now takes its savings from
  the re-reading (contraction) dispatches of an op instead of scaling all of them.
- `sdsim predict --device s23ultra` took {statistics.median(walls):.2f} s (median of 3 fresh
  interpreters, {max(walls):.2f} s worst) in this run, on a machine shared with other
  test suites; `python benchmarks/predict_speed.py` breaks it down.
"""
    atomic.write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
