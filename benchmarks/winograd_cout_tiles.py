"""Does a Winograd F(4x4) GEMM of one output-channel tile step slower than the model says?

The VAE decoder's 3x3 convs at 128 output channels are the calls the H100's fp16 profile misses
most (about 12% short each). This benchmark times the F(4x4) conv, transforms and GEMM, at the
VAE's own layer shapes and at neighbours that differ in input channels, size or output channels,
exactly as `sdsim calibrate` times a sweep case (`sweep.measure`: behind the cache flush, the
input read and the lead stream, median of --repeat runs), next to the profile's prediction. If
a VAE layer measures here what it measures in the pipeline, the miss is the model's, not the
pipeline's context; the count of output-channel tiles of each GEMM shows whether the miss
follows it (the GEMM multiplies the weights, cout x cin, by the transformed input, cin x tiles:
with one output-channel tile, no other work-group reads a work-group's panel of the transformed
input).

    PYTHONPATH=$PWD python3 benchmarks/winograd_cout_tiles.py --platform NVIDIA \
        --device device_profiles/nvidia-h100-opencl.yaml --precision fp16
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.profiled_device import ProfiledDevice, parser  # noqa: E402
from sdsim import kernels  # noqa: E402
from sdsim.calibration import sweep  # noqa: E402
from sdsim.cost.waves import geometry_time  # noqa: E402
from sdsim.kernels import gemm  # noqa: E402
from sdsim.output import render_rows  # noqa: E402

#: (batch, cin, cout, height = width, what it is) of the convs timed
SHAPES = (
    (1, 128, 128, 512, "VAE up_blocks.3 conv"),
    (1, 256, 128, 512, "VAE up_blocks.3 first conv"),
    (1, 256, 256, 256, "VAE up_blocks.2 conv"),
    (1, 512, 512, 256, "VAE up_blocks.1 upsampler conv"),
    (1, 120, 128, 512, "fewer input channels"),
    (1, 128, 128, 448, "smaller"),
    (2, 128, 128, 384, "batch 2, smaller"),
    (2, 96, 112, 384, "as a sweep case"),
    (1, 128, 136, 512, "8 more output channels"),
    (2, 160, 160, 256, "as a sweep case"),
)


def cout_tiles(launch) -> int | str:
    """A GPU Winograd GEMM's output-channel tiles: one work-group in each is the first to read
    its panel of the transformed input (Launch.edge, sdsim/kernels/gemm.py `cold_share`); ''
    for a call without that path (a CPU build)."""
    return round(1 / launch.edge) if launch.path == gemm.COLD_PATH else ""


def main(argv=None) -> int:
    ap = parser(__doc__, "winograd-cout-tiles")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per conv")
    args = ap.parse_args(argv)
    dev = ProfiledDevice(args, "winograd_cout_tiles.py", argv)
    rt, coefficients, cu = dev.rt, dev.coefficients, dev.compute_units
    record = kernels.get("conv2d", "winograd_f4")
    rows = []
    for batch, cin, cout, hw, what in SHAPES:
        shape = {"batch": batch, "cin": cin, "cout": cout, "h": hw, "w": hw, "k": 3,
                 "stride": 1, "padding": [1, 1, 1, 1]}
        print(f"{batch}x{cin}->{cout} at {hw}: {what}", file=sys.stderr)
        points, _ = sweep.measure(rt, record, shape, args.precision, args.repeat, lead=sweep.LEAD)
        for p in points:
            c = coefficients.get(p.key)
            predicted = geometry_time(c, p.launch, cu, p.dram_bytes)[0] if c else None
            tiles = cout_tiles(p.launch)
            rows.append({"conv": f"{batch}x{cin}->{cout} @{hw}", "what": what,
                         "dispatch": p.kernel, "model key": p.key, "cout tiles": tiles,
                         "measured_us": p.measured_s * 1e6, "cv": p.cv,
                         "predicted_us": None if predicted is None else predicted * 1e6,
                         "error_pct": None if predicted is None
                         else 100 * (predicted / p.measured_s - 1)})
    gemms = [r for r in rows if r["dispatch"].startswith("wino_gemm")]
    text = "\n".join([
        *dev.header("Winograd F(4x4) GEMMs by output-channel tiles"),
        f"- Each conv is timed as `sdsim calibrate` times a sweep case (cache flush, input "
        f"read, {sweep.LEAD} lead dispatches, median of {args.repeat} runs after a warm-up); "
        "`predicted_us`: the profile's model; `cout tiles`: the GEMM's output-channel tiles "
        "(one: no other work-group reads a work-group's panel of the transformed input).",
        "",
        "## The GEMMs",
        "",
        render_rows(gemms, "markdown", floatfmt=".3g"),
        "",
        "## Every dispatch",
        "",
        render_rows(rows, "markdown", floatfmt=".3g"),
        "",
    ])
    dev.write(text, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
