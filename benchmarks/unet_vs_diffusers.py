"""Time one full-size SD1.4 UNet call (fp32, 64x64 latent) in sdsim and in diffusers, side by side.

Each side runs in its own subprocess (so peak RSS is its own): build the UNet with seeded random
weights held in memory, run `--warmup` untimed calls (Numba compilation, allocator warm-up), then
time `--repeat` calls and report the best and the median. Peak memory is the subprocess's
ru_maxrss (weights included on both sides: 860M float32 parameters, about 3.4 GB).

    python benchmarks/unet_vs_diffusers.py [--batch 2] [--repeat 2] [--report reports/bench-unet-cpu.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone


def _inputs(batch, size, np):
    r = np.random.default_rng(0)
    x = r.standard_normal((batch, 4, size, size), dtype=np.float32)
    ctx = r.standard_normal((batch, 77, 768), dtype=np.float32)
    t = np.full(batch, 500, dtype=np.int64)
    return x, t, ctx


def run_sdsim(batch, size, warmup, repeat):
    import numpy as np

    from sdsim.backends.numpy_backend import NumpyBackend
    from sdsim.model.presets import PRESETS
    from sdsim.model.unet import UNet2DConditionModel
    from sdsim.model.weights import RandomWeights

    unet = UNet2DConditionModel(PRESETS["sd14"].unet)
    weights = RandomWeights(unet, seed=0)
    F = NumpyBackend({name: weights[name] for name, _ in unet.named_params()})
    x, t, ctx = _inputs(batch, size, np)
    t = t.astype(np.float32)
    return _timed(lambda: unet(F, x, t, ctx), warmup, repeat)


def run_diffusers(batch, size, warmup, repeat):
    import numpy as np
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).eval()
    x, t, ctx = (torch.from_numpy(a) for a in _inputs(batch, size, np))

    def call():
        with torch.no_grad():
            return unet(x, t, ctx).sample

    res = _timed(call, warmup, repeat)
    res["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"
    return res


def _timed(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"best_s": min(times), "median_s": statistics.median(times), "cpu_s": min(cpu),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "loadavg_1min": os.getloadavg()[0]}


def _child(args):
    fn = run_sdsim if args.child == "sdsim" else run_diffusers
    print(json.dumps(fn(args.batch, args.size, args.warmup, args.repeat)))
    return 0


def _machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB RAM, {platform.platform()}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="latent height and width")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--report", help="also write a Markdown report here")
    p.add_argument("--child", choices=["sdsim", "diffusers"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)

    results = {}
    for side in ("diffusers", "sdsim"):
        cmd = [sys.executable, __file__, "--child", side, "--batch", str(args.batch),
               "--size", str(args.size), "--warmup", str(args.warmup), "--repeat", str(args.repeat)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
        print(f"{side}: {results[side]}", flush=True)
    s, d = results["sdsim"], results["diffusers"]
    rows = [
        ("time, best of %d (s)" % args.repeat, d["best_s"], s["best_s"], s["best_s"] / d["best_s"], 1.2),
        ("time, median (s)", d["median_s"], s["median_s"], s["median_s"] / d["median_s"], 1.2),
        ("CPU time, all threads, best (s)", d["cpu_s"], s["cpu_s"], s["cpu_s"] / d["cpu_s"], 1.2),
        ("peak RSS (GiB)", d["peak_rss_gib"], s["peak_rss_gib"], s["peak_rss_gib"] / d["peak_rss_gib"], 1.3),
    ]
    table = ["| metric | diffusers | sdsim | sdsim / diffusers | goal |", "|---|---|---|---|---|"]
    table += [f"| {m} | {a:.2f} | {b:.2f} | {r:.2f} | <= {g} |" for m, a, b, r, g in rows]
    cmdline = "python benchmarks/unet_vs_diffusers.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join([
        "# One SD1.4 UNet call on the CPU: sdsim (NumPy) vs diffusers (PyTorch)",
        "",
        f"- command: `{cmdline.strip()}`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_machine()}",
        f"- workload: UNet2DConditionModel, SD1.4 config, fp32, batch {args.batch}, "
        f"{args.size}x{args.size} latent, 77x768 text context; random weights in memory; "
        f"{args.warmup} warm-up call(s), {args.repeat} timed",
        f"- diffusers: torch {d.get('torch', '?')}; each side in its own subprocess, peak RSS = ru_maxrss",
        f"- 1-minute load average after the timed calls: diffusers {d['loadavg_1min']:.1f}, "
        f"sdsim {s['loadavg_1min']:.1f} (on {os.cpu_count()} cores; above that, other work shared the CPU "
        "and wall times are inflated: compare CPU times)",
        "",
        *table,
        "",
    ])
    print(text)
    if args.report:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from sdsim.atomic import write_text

        write_text(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
