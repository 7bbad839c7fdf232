"""Would the Winograd transforms run faster in work-groups of other shapes?

The F(4x4) input and output transforms (opencl/conv.cl `wino_input`, `wino_output`) run one
work-item per (4x4 output tile, channel) in work-groups of 8 x 8 tiles unless `sdsim tune` chose
another shape for the device (sdsim/kernels/tuning.py `WINO_GROUPS`). On a GPU a 32-lane warp of such a group holds 4 rows of 8 tiles, so each of the 36
planes the input transform writes takes 4 runs of 8 values (16 bytes each in fp16, half a 32-byte
sector), and the output transform reads them so. A group of tiles along a row (32 x 2, 64 x 1)
gives each warp one run of 32. This benchmark times both transforms of SD1.4's own 3x3 convs at
512x512 (UNet batch 2, VAE decoder batch 1) with the same kernels in groups of each shape,
interleaved, and checks every shape's output, written over NaNs, is bit for bit the 8 x 8
one's. `sdsim tune` makes the choice per device on synthetic shapes; this benchmark shows what
it is worth at SD's own.

    PYTHONPATH=$PWD python3 benchmarks/winograd_transform_groups.py --platform NVIDIA \
        --precision fp16 [--repeat 7] [--out reports/winograd-transform-groups-NAME-fp16]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from functools import partial
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sdsim import paths, provenance
from sdsim.calibration.tune import WINO_M as M
from sdsim.calibration.tune import wino_dispatches, written_over_nans
from sdsim.cl.runtime import Runtime, event_ms
from sdsim.kernels import conv, tuning
from sdsim.output import render_rows, write_pair

#: work-group shapes (tiles along a row, rows of tiles): the untuned default first
GROUPS = tuple(tuning.WINO_GROUPS["gpu"])
#: (component, batch, channels, height = width) of SD1.4's 3x3 stride-1 convs at 512x512: the
#: channels a UNet input transform reads (its up blocks read concatenations) and the VAE's
SHAPES = (("unet", 2, 320, 64), ("unet", 2, 640, 64), ("unet", 2, 960, 64),
          ("unet", 2, 640, 32), ("unet", 2, 1280, 32), ("unet", 2, 1920, 32),
          ("unet", 2, 1280, 16), ("unet", 2, 2560, 16), ("unet", 2, 1280, 8),
          ("unet", 2, 2560, 8),
          ("vae_decoder", 1, 512, 64), ("vae_decoder", 1, 512, 128), ("vae_decoder", 1, 512, 256),
          ("vae_decoder", 1, 256, 256), ("vae_decoder", 1, 256, 512),
          ("vae_decoder", 1, 128, 512))


def _moved(precision: str, n: int, c: int, hw: int) -> dict:
    """Bytes each transform moves (its input and output), as the cost model counts them."""
    cost = conv.winograd_cost(M, n, c, c, hw, hw, precision=precision)
    return {"input": cost[0].bytes_read + cost[0].bytes_written,
            "output": cost[-1].bytes_read + cost[-1].bytes_written}


def _once(rt, launch) -> float:
    """One launch's event time (ms), after a cache flush: the transforms stream, and an input
    left in the cache by the launch before would time a pipeline's first read as a re-read."""
    rt.flush_caches()
    rt.queue.finish()
    return event_ms(launch())


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
        moved = _moved(args.precision, n, c, hw)
        for which, (launch, out, size) in wino_dispatches(rt, args.precision, n, c, hw).items():
            groups = [g for g in GROUPS if g[0] * g[1] <= rt.max_wg]
            ms, ref = {g: [] for g in groups}, None
            for g in groups:   # warm-up, and each shape's output (over NaNs) against the first's
                got = written_over_nans(rt, partial(launch, g), out, size, args.precision)
                ref = got if ref is None else ref
                if not np.array_equal(got.view(np.uint8), ref.view(np.uint8)):
                    raise SystemExit(f"{which} transform of {n}x{c}x{hw}: group {g} differs")
            for _ in range(args.repeat):   # interleaved: drift hits every shape alike
                for g in groups:
                    ms[g].append(_once(rt, partial(launch, g)))
            base = median(ms[groups[0]])
            for g in groups:
                t = median(ms[g])
                rows.append({"component": comp, "transform": which,
                             "shape": f"{n}x{c}x{hw}x{hw}", "group": f"{g[0]}x{g[1]}",
                             "ms": t, "GB/s": moved[which] / t * 1e-6,
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
    default = tuning.group_name(GROUPS[0])
    text = "\n".join([
        f"# Winograd F(4x4) transforms by work-group shape: {rt.name}", "",
        f"- Command: `{command.strip()}`",
        (f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; 1-minute load "
         f"{load_before} before, {provenance.load()} after"),
        (f"- OpenCL device: {rt.name}, driver {rt.device.driver_version.strip()}; "
         f"{args.precision} storage"),
        (f"- Each transform of each shape: the same kernel (opencl/conv.cl) in work-groups of "
         f"each shape (tiles along a row x rows of tiles; {default} is the untuned default, and "
         f"`sdsim tune` picks one per device), its output, written over a buffer of NaNs so "
         f"that a tile left unwritten shows, checked bit for bit against the {default} one's; each "
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
