"""How long does a small dispatch take after different streams of dispatches before it?

`sdsim calibrate` times each synthetic case behind a gate, after a cache flush, a read of the
case's inputs and `sweep.LEAD` small dispatches (`Runtime.lead`: a read of 16 KiB each), so that
the case sits deep in a stream as a pipeline's dispatch does. This benchmark times a few of SD's
own small dispatches (and one GEMM as a control) after other streams, on one device in one
process, each behind the same flush and input read:

- `lead`: the calibration's stream, `sweep.LEAD` small dispatches;
- `settled`: one compute-only dispatch of about --settle-us microseconds (calibrate.cl's
  `fma_rate`: one store per work-item, so the caches stay as the flush and the input read left
  them);
- `lead+settled`: the calibration's stream, then that long dispatch;
- `settled+N small`: the long dispatch, then N of the lead's small dispatches;
- `settled+Nx6us`: the long dispatch, then N compute-only dispatches of about 6 us.
(`--small` and `--short` give the counts N; 1, 16 and 100 small, ten of 6 us by default.)

Each column is the median of --repeat timed runs of the case's first dispatch (OpenCL event
time); `predicted` is the profile's model for it. Where `lead` and `settled` differ, the sweep
measures a context that SD's pipelines present only in part: the UNet's small dispatches mostly
follow long ones, the text encoder's follow short ones.

    PYTHONPATH=$PWD python3 benchmarks/dispatch_context.py --platform NVIDIA \
        --device device_profiles/nvidia-h100-opencl.yaml --precision fp16
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.profiled_device import ProfiledDevice, parser  # noqa: E402
from sdsim import kernels  # noqa: E402
from sdsim.calibration import sweep  # noqa: E402
from sdsim.calibration.overlap import time_after  # noqa: E402
from sdsim.calibration.microbench import fma_dispatch  # noqa: E402
from sdsim.cl.runtime import event_ms  # noqa: E402
from sdsim.cost.waves import geometry_time  # noqa: E402
from sdsim.output import render_rows  # noqa: E402

#: (family, variant, shape, where SD runs it) of the dispatches timed
CASES = (
    ("elementwise", "add", {"in_shapes": [(2, 77, 768)] * 2, "out_shape": (2, 77, 768)},
     "text encoder residual add"),
    ("layer_norm", "rowwise", {"rows": 154, "dim": 768, "eps": 1e-5}, "text encoder LayerNorm"),
    ("layer_norm", "rowwise", {"rows": 8192, "dim": 320, "eps": 1e-5},
     "UNet 512 transformer LayerNorm"),
    ("elementwise", "nchw_to_nlc", {"in_shapes": [(2, 320, 64, 64)], "out_shape": (2, 4096, 320)},
     "UNet 512 transformer input transpose"),
    ("elementwise", "add", {"in_shapes": [(2, 320, 64, 64)] * 2, "out_shape": (2, 320, 64, 64)},
     "UNet 512 residual add"),
    ("gelu", "geglu_fused", {"tokens": 8192, "dim": 1280}, "UNet 512 GEGLU"),
    ("linear", "tiled", {"m": 8192, "k": 320, "n": 320, "bias": True},
     "UNet 512 attention projection (control)"),
)


class Streams:
    """The dispatch streams run between the flush and the case. The long and short dispatches
    are calibrate.cl's `fma_rate` (multiply-add chains, one store per work-item: compute only,
    so the caches stay as the flush and the input read left them)."""

    def __init__(self, rt, settle_us: float):
        self.rt = rt
        self._run = fma_dispatch(rt, "fp32", int(rt.device.max_compute_units) * 256, 256)
        self.table = {n: self._time(n) for n in (1, 10, 100, 400, 1600, 6400)}
        self.long = self.iterations(settle_us)
        self.short = self.iterations(6.0)

    def _time(self, n: int) -> float:
        self._run(n).wait()
        return float(np.median([event_ms(self._run(n)) * 1e3 for _ in range(5)]))

    def iterations(self, us: float) -> int:
        """Iterations for a dispatch of about `us` microseconds (interpolated)."""
        ns = sorted(self.table)
        return int(max(1, np.interp(us, [self.table[n] for n in ns], ns)))

    def contexts(self, small=(1, 16, 100), short=(10,)) -> dict:
        rt, long_, short_ = self.rt, self.long, self.short
        out = {"lead": lambda: rt.lead(sweep.LEAD),
               "settled": lambda: self._run(long_),
               "lead+settled": lambda: (rt.lead(sweep.LEAD), self._run(long_))}
        for n in small:
            out[f"settled+{n} small"] = lambda n=n: (self._run(long_), rt.lead(n))
        for n in short:
            out[f"settled+{n}x6us"] = lambda n=n: (self._run(long_), [self._run(short_)
                                                                      for _ in range(n)])
        return out


def main(argv=None) -> int:
    ap = parser(__doc__, "dispatch-context")
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per case and context")
    ap.add_argument("--settle-us", type=float, default=80.0,
                    help="length of the long compute-only dispatch, microseconds")
    ap.add_argument("--small", type=int, nargs="+", default=[1, 16, 100],
                    help="counts of the lead's small dispatches after the long one")
    ap.add_argument("--short", type=int, nargs="+", default=[10],
                    help="counts of ~6 us compute-only dispatches after the long one")
    args = ap.parse_args(argv)
    dev = ProfiledDevice(args, "dispatch_context.py", argv)
    rt, coefficients, cu = dev.rt, dev.coefficients, dev.compute_units
    streams = Streams(rt, args.settle_us)
    contexts = streams.contexts(args.small, args.short)
    rows = []
    for family, variant, shape, where in CASES:
        record = kernels.get(family, variant)
        first = record.costs(args.precision, **shape)[0]
        c = coefficients.get(first.model_key)
        predicted = geometry_time(c, first.launch, cu, first.dram_bytes)[0] * 1e6 if c else None
        print(f"{family}/{variant} {where}", file=sys.stderr)
        us = time_after(rt, record, shape, args.precision, contexts, args.repeat)
        rows.append({"dispatch": first.kernel, "shape": where, **us, "predicted": predicted,
                     "lead/settled": us["lead"] / us["settled"]})
    spin = ", ".join(f"{n}: {t:.1f}" for n, t in streams.table.items())
    text = "\n".join([
        *dev.header("A small dispatch's time after different dispatch streams"),
        f"- Each case runs behind a gate after a cache flush and a read of its inputs (as "
        f"`sdsim calibrate` times it), then the stream its column names: `lead` = "
        f"{sweep.LEAD} small dispatches (the calibration's), `settled` = one compute-only "
        f"dispatch (calibrate.cl fma_rate) of {streams.long} iterations (about "
        f"{args.settle_us:g} us), `N small` = N of the lead's dispatches, `Nx6us` = N "
        f"compute-only dispatches of {streams.short} iterations. Microseconds of the case's first dispatch, median of {args.repeat} timed "
        "runs after one warm-up, the streams interleaved; `predicted`: the profile's model.",
        f"- Compute-only dispatch, iterations: microseconds: {spin}",
        "",
        render_rows(rows, "markdown", floatfmt=".3g"),
        "",
    ])
    dev.write(text, {"lead": sweep.LEAD, "spin_us": streams.table, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
