"""Does packing a linear layer's weight into column panels speed up the CPU GEMM?

The CPU micro-kernel (opencl/gemm.cl without local memory) walks K one row of B at a time and
loads 8 contiguous floats of its column block per step. With B a (K, N) weight, consecutive steps
are N floats apart: for the UNet's wide layers (N = 5120 or 10240) every step's load is on
another page and in the same L1 set. Packed into (N / 8, K, 8) panels, a column block's K rows
are contiguous; the existing kernel runs them as a batched GEMM (batch N / 8 of width 8, A shared
with batch stride 0, C's batches 8 columns apart), so no kernel source changes and each output
sums its K products in the same order.

For every distinct linear shape of the SD1.4 UNet at --resolution (as `sdsim bench --suite sd`
finds them), both forms run side by side, interleaved, on one device: the median of --repeat
timed runs after a warm-up, OpenCL event time, no bias (the bias is one add per output).

    python benchmarks/gemm_panels.py [--platform Portable] [--tuning pocl-cpu] [--resolution 256]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

import numpy as np

from sdsim import paths, provenance
from sdsim.calibration.microbench import arithmetic_rate
from sdsim.cl import bench
from sdsim.cl.runtime import Runtime
from sdsim.kernels import gemm as g
from sdsim.kernels import tuning
from sdsim.model.presets import load_model_config
from sdsim.output import render_rows, write_pair

PANEL = 8   # the CPU micro-kernel's column block (opencl/gemm.cl, fullN): 8 floats


def shapes(resolution: int) -> list[tuple]:
    """(m, k, n, calls) of the UNet's distinct linear GEMMs, bias or not merged."""
    calls: dict = {}
    for s in bench.model_shapes(load_model_config("sd14"), "unet", resolution, 2, "fp32"):
        if s.family == "linear":
            key = (s.shape["m"], s.shape["k"], s.shape["n"])
            calls[key] = calls.get(key, 0) + s.calls
    return [(*key, c) for key, c in calls.items()]


def _seconds(events) -> float:
    return sum(e.profile.end - e.profile.start for e in events) * 1e-9


def time_pair(rt, m: int, k: int, n: int, repeat: int) -> dict:
    """Plain and panel-packed C = A B on the device: median seconds, and each one's largest
    error against float64 relative to the largest |C|."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    packed = np.ascontiguousarray(b.reshape(k, n // PANEL, PANEL).transpose(1, 0, 2))
    da, db, dp = (rt.to_device(x, "fp32", name) for x, name in
                  ((a, "a"), (b, "b"), (packed, "packed b")))
    c1, c2 = rt.alloc(m * n, "fp32", "c"), rt.alloc(m * n, "fp32", "c packed")

    def plain():
        return g.gemm(rt, da, db, c1, m, n, k, strides_a=(0, k, 1), strides_b=(0, n, 1),
                      strides_c=(0, n, 1))

    def panels():
        return g.gemm(rt, da, dp, c2, m, PANEL, k, batch=n // PANEL, strides_a=(0, k, 1),
                      strides_b=(k * PANEL, PANEL, 1), strides_c=(PANEL, n, 1))

    times = {"plain": [], "packed": []}
    for i in range(repeat + 1):   # the first pair warms up
        for name, run in (("plain", plain), ("packed", panels)):
            evs = run()
            rt.queue.finish()
            if i:
                times[name].append(_seconds(evs))
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(ref).max()
    err = {name: float(np.abs(rt.from_device(c, (m, n), "fp32") - ref).max() / scale)
           for name, c in (("plain", c1), ("packed", c2))}
    return {name: float(np.median(t)) for name, t in times.items()} | {"err": err}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", default="Portable", help="OpenCL platform (index or name)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring")
    ap.add_argument("--tuning", default="pocl-cpu",
                    help="profile whose GEMM tile choices the plain calls use")
    ap.add_argument("--resolution", type=int, default=256, help="UNet image size in pixels")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each form per shape")
    ap.add_argument("--out", default=str(paths.REPORTS_DIR / "gemm-panels-pocl-cpu-256"),
                    help="report stem (.md and .json)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Non-empty compiler output")
    load_before = provenance.load()
    rt = Runtime(args.platform, args.cl_device, "fp32")
    tuning.activate_profile(args.tuning)
    peak = arithmetic_rate(rt, "fp32", int(rt.device.max_compute_units) * 16384, 2048)
    rows = []
    for m, k, n, calls in shapes(args.resolution):
        print(f"m={m} k={k} n={n}", file=sys.stderr)
        r = time_pair(rt, m, k, n, args.repeat)
        flop = 2.0 * m * k * n
        rows.append({"m": m, "k": k, "n": n, "calls": calls,
                     "plain_ms": 1e3 * r["plain"], "packed_ms": 1e3 * r["packed"],
                     "plain_gflops": flop / r["plain"] / 1e9,
                     "packed_gflops": flop / r["packed"] / 1e9,
                     "speedup": r["plain"] / r["packed"],
                     "plain_rel_err": r["err"]["plain"], "packed_rel_err": r["err"]["packed"]})
    total = {f: sum(r["calls"] * r[f] for r in rows) for f in ("plain_ms", "packed_ms")}
    best = 1e9 * max(max(r["plain_gflops"], r["packed_gflops"]) for r in rows)
    command = "python benchmarks/gemm_panels.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = "\n".join([
        "# Linear GEMMs with the weight packed into column panels, on one device",
        "",
        f"- Command: `{command.strip()}`",
        f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; 1-minute load "
        f"{load_before} before, {provenance.load()} after",
        f"- OpenCL device: {rt.name}, driver {rt.device.driver_version.strip()}; GEMM tiles of "
        f"profile `{args.tuning}`; fp32 storage and arithmetic",
        f"- Arithmetic rate: {peak / 1e9:.1f} GFLOP/s fp32 measured here now by calibrate.cl's "
        "fma_rate, as `sdsim calibrate` measures the peak"
        + (f"; the packed GEMMs reach {best / 1e9:.1f} GFLOP/s, so on this device that "
           "microbenchmark understates the peak and the rates below are not put as a share of it"
           if best > peak else ""),
        f"- Workload: every distinct linear GEMM of the SD1.4 UNet at {args.resolution}x"
        f"{args.resolution}, batch 2 (`calls`: how many of one UNet call's linears have the "
        "shape), without bias. `plain`: C = A B with B the (K, N) weight, as sdsim runs it "
        f"now; `packed`: B stored as (N / {PANEL}, K, {PANEL}) panels and run by the same kernel "
        f"as a batched GEMM of N / {PANEL} products of width {PANEL}. Median of {args.repeat} "
        "timed runs after one warm-up, the two forms interleaved; OpenCL event time. "
        "`*_rel_err`: largest |C - float64| over the largest |C|.",
        "",
        render_rows(rows, "markdown", floatfmt=".3g"),
        "",
        f"One UNet call's linears: {total['plain_ms']:.0f} ms plain, {total['packed_ms']:.0f} ms "
        f"packed ({total['plain_ms'] / total['packed_ms']:.2f}x).",
        "",
    ])
    md, js = write_pair(args.out, text, {"command": command.strip(), "device": rt.name,
                                          "fma_rate_flops_per_s": peak, "rows": rows,
                                          "total_ms": total})
    print(text)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
