"""Would the Winograd transforms run faster in work-groups of other shapes?

The F(4x4) input and output transforms (opencl/conv.cl `wino_input`, `wino_output`) run one
work-item per (4x4 output tile, channel) in work-groups of 8 x 8 tiles (sdsim/kernels/conv.py
`WINO_WG`). On a GPU a 32-lane warp of such a group holds 4 rows of 8 tiles, so each of the 36
planes the input transform writes takes 4 runs of 8 values (16 bytes each in fp16, half a 32-byte
sector), and the output transform reads them so. A group of tiles along a row (32 x 2, 64 x 1)
gives each warp one run of 32. This benchmark times both transforms of SD1.4's own 3x3 convs at
512x512 (UNet batch 2, VAE decoder batch 1) with the same kernels in groups of each shape,
interleaved, and checks every shape's output, written over NaNs, is bit for bit the 8 x 8
one's. The launch shape is
not the kernel source, but the calibrated profiles priced the 8 x 8 launches: adopting another
shape means calibrating again.

    PYTHONPATH=$PWD python3 benchmarks/winograd_transform_groups.py --platform NVIDIA \
        --precision fp16 [--repeat 7] [--out reports/winograd-transform-groups-NAME-fp16]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path
from statistics import median

import numpy as np
import pyopencl as cl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sdsim import paths, provenance
from sdsim.cl.runtime import Runtime, event_ms
from sdsim.kernels import conv
from sdsim.output import render_rows, write_pair

M = 4   # F(4x4, 3x3): tiles of 4 x 4 outputs, 6 x 6 transformed planes
#: work-group shapes (tiles along a row, rows of tiles): the current one first
GROUPS = ((conv.WINO_WG, conv.WINO_WG), (16, 4), (32, 2), (64, 1), (32, 4), (128, 1))
#: (component, batch, channels, height = width) of SD1.4's 3x3 stride-1 convs at 512x512: the
#: channels a UNet input transform reads (its up blocks read concatenations) and the VAE's
SHAPES = (("unet", 2, 320, 64), ("unet", 2, 640, 64), ("unet", 2, 960, 64),
          ("unet", 2, 640, 32), ("unet", 2, 1280, 32), ("unet", 2, 1920, 32),
          ("unet", 2, 1280, 16), ("unet", 2, 2560, 16), ("unet", 2, 1280, 8),
          ("unet", 2, 2560, 8),
          ("vae_decoder", 1, 512, 64), ("vae_decoder", 1, 512, 128), ("vae_decoder", 1, 512, 256),
          ("vae_decoder", 1, 256, 256), ("vae_decoder", 1, 256, 512),
          ("vae_decoder", 1, 128, 512))


def _launches(rt, precision: str, n: int, c: int, hw: int):
    """Per transform: (kernel, global work, args, output buffer, output elements, bytes moved)
    of the input transform of x (n, c, hw, hw) and the output transform back to (n, c, hw, hw)."""
    a, t = M + 2, -(-hw // M)
    rng = np.random.default_rng(0)
    x = rt.to_device(rng.standard_normal((n, c, hw, hw), np.float32), precision, "input")
    planes = a * a * c * n * t * t
    v = rt.alloc(planes, precision, "transformed input")
    mm = rt.to_device(rng.standard_normal(planes, np.float32), precision, "GEMM output")
    y = rt.alloc(n * c * hw * hw, precision, "output")
    bias = rt.to_device(rng.standard_normal(c, np.float32), precision, "bias")
    at, _, bt = conv._consts(rt, M)
    i32 = np.int32
    # the bytes each transform moves, as the cost model counts them
    cost = conv.winograd_cost(M, n, c, c, hw, hw, precision=precision)
    moved = [k.bytes_read + k.bytes_written for k in (cost[0], cost[-1])]
    return {
        "input": (rt.kernel("conv", "wino_input", precision, {"ALPHA": a}), (t, t, n * c),
                  (x, v, bt, i32(n), i32(c), i32(hw), i32(hw), i32(t), i32(t)), v, planes,
                  moved[0]),
        "output": (rt.kernel("conv", "wino_output", precision, {"ALPHA": a}), (t, t, n * c),
                   (mm, bias, y, at, i32(n), i32(c), i32(hw), i32(hw), i32(t), i32(t), i32(1)),
                   y, n * c * hw * hw, moved[1]),
    }


def _once(rt, kern, work, local, args) -> float:
    """One launch's event time (ms), after a cache flush: the transforms stream, and an input
    left in the cache by the launch before would time a pipeline's first read as a re-read."""
    rt.flush_caches()
    rt.queue.finish()
    return event_ms(rt.launch(kern, work, local, *args))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", help="OpenCL platform (index or name)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring")
    ap.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    ap.add_argument("--repeat", type=int, default=7, help="timed launches per shape and group")
    ap.add_argument("--components", nargs="+", default=["unet", "vae_decoder"],
                    choices=["unet", "vae_decoder"])
    ap.add_argument("--out", help="report stem (.md and .json); default "
                    "reports/winograd-transform-groups-<device>-<precision>")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Non-empty compiler output")
    command = "python benchmarks/winograd_transform_groups.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    load_before = provenance.load()
    rt = Runtime(args.platform, args.cl_device)
    rows = []
    for comp, n, c, hw in (s for s in SHAPES if s[0] in args.components):
        print(f"{comp} {n}x{c}x{hw}x{hw}", file=sys.stderr)
        for which, (kern, work, kargs, out, size, moved) in _launches(
                rt, args.precision, n, c, hw).items():
            limit = rt.local_size(kern, (rt.max_wg, 1, 1))[0]   # the kernel's and device's
            groups = [g for g in GROUPS if g[0] * g[1] <= limit]
            ms, ref = {g: [] for g in groups}, None
            for g in groups:   # warm-up, and each shape's output (over NaNs) against the first's
                cl.enqueue_fill_buffer(rt.queue, out, np.uint8(0xFF), 0, out.size).wait()
                rt.launch(kern, work, (*g, 1), *kargs).wait()
                got = rt.from_device(out, (size,), args.precision)
                ref = got if ref is None else ref
                if not np.array_equal(got.view(np.uint8), ref.view(np.uint8)):
                    raise SystemExit(f"{which} transform of {n}x{c}x{hw}: group {g} differs")
            for _ in range(args.repeat):   # interleaved: drift hits every shape alike
                for g in groups:
                    ms[g].append(_once(rt, kern, work, (*g, 1), kargs))
            base = median(ms[groups[0]])
            for g in groups:
                t = median(ms[g])
                rows.append({"component": comp, "transform": which,
                             "shape": f"{n}x{c}x{hw}x{hw}", "group": f"{g[0]}x{g[1]}",
                             "ms": t, "GB/s": moved / t * 1e-6,
                             "speedup_vs_8x8": base / t})
    summary = []
    for which in ("input", "output"):   # time-weighted over the shapes: SD's calls at once
        for g in dict.fromkeys(r["group"] for r in rows):
            sel = [r for r in rows if r["transform"] == which and r["group"] == g]
            total = sum(r["ms"] for r in sel)
            summary.append({"transform": which, "group": g, "shapes": len(sel),
                            "total_ms": total, "speedup_vs_8x8":
                            sum(r["ms"] * r["speedup_vs_8x8"] for r in sel) / total})
    out = args.out or str(paths.REPORTS_DIR / f"winograd-transform-groups-"
                          f"{rt.device.name.strip().replace(' ', '-')}-{args.precision}")
    text = "\n".join([
        f"# Winograd F(4x4) transforms by work-group shape: {rt.name}", "",
        f"- Command: `{command.strip()}`",
        (f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; 1-minute load "
         f"{load_before} before, {provenance.load()} after"),
        (f"- OpenCL device: {rt.name}, driver {rt.device.driver_version.strip()}; "
         f"{args.precision} storage"),
        (f"- Each transform of each shape: the same kernel (opencl/conv.cl) in work-groups of "
         f"each shape (tiles along a row x rows of tiles; {conv.WINO_WG}x{conv.WINO_WG} is "
         f"sdsim's), its output, written over a buffer of NaNs so that a tile left unwritten "
         f"shows, checked bit for bit against the {conv.WINO_WG}x{conv.WINO_WG} one's; each "
         f"launch after a 256 MiB cache flush, the shapes interleaved, median of "
         f"{args.repeat}; GB/s = the bytes the cost model counts for the transform (its "
         "input and output) / time."),
        "", "## All shapes", "",
        render_rows(summary, "markdown", floatfmt=".3g"), "",
        "## Each shape", "",
        render_rows(rows, "markdown", floatfmt=".3g"), ""])
    md, js = write_pair(out, text, {"command": command.strip(), "device": rt.name,
                                    "precision": args.precision, "rows": rows,
                                    "summary": summary})
    print(text)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
