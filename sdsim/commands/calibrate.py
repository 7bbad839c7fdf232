"""`sdsim calibrate`: measure an OpenCL device and write its profile and calibration report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from sdsim.errors import SdsimError
from sdsim.paths import REPORTS_DIR

HELP = "measure an OpenCL device with microbenchmarks and write a device profile"
DESCRIPTION = (
    "Measures streaming bandwidth, the FP32 and fp16-storage arithmetic rate, the launch overhead "
    "and the efficiency of each kernel class (gemm, conv, winograd_transform, reduction, "
    "elementwise, attention) on synthetic shapes, then writes a device profile whose every "
    "number cites the calibration report written beside it (reports/calibration-NAME.md)."
)


def add_arguments(p):
    p.add_argument("--platform", help="OpenCL platform index or name substring; None: the first")
    p.add_argument("--device", help="OpenCL device index or name substring; None: the first")
    p.add_argument("--out", required=True, help="profile to write, e.g. device_profiles/NAME.yaml")
    p.add_argument("--name", help="profile name (default: the --out file's stem)")
    p.add_argument("--report", help="calibration report path (default: "
                                    "reports/calibration-NAME.md)")
    p.add_argument("--quick", action="store_true",
                   help="small buffers and the small shape mix (CPU devices, tests)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="storage precision of the kernel-class mix")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case (median)")


def run(args) -> int:
    from sdsim.calibration.run import calibrate
    from sdsim.calibration.write import write
    from sdsim.cl.runtime import Runtime

    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise SdsimError(f"--out {out}: a device profile is a .yaml file")
    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    name = args.name or out.stem
    report = Path(args.report) if args.report else REPORTS_DIR / f"calibration-{name}.md"
    rt = Runtime(args.platform, args.device)
    command = "sdsim " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and "calibrate" in sys.argv else f"sdsim calibrate --out {out}"
    cal = calibrate(rt, name, quick=args.quick, precision=args.precision, repeat=args.repeat,
                    command=command)
    data = write(cal, out, report)
    print(f"{name}: {cal.device}")
    print(f"  bandwidth {data['dram_bandwidth']['value']} GB/s, fp32 "
          f"{data['peak_fp32']['value']} GFLOP/s, fp16 {data['peak_fp16']['value']} GFLOP/s, "
          f"launch {data['launch_overhead']['value']} us")
    print("  efficiency " + ", ".join(f"{k} {v['value']:.3g}" for k, v in data["efficiency"].items()))
    print(f"wrote {out} and {report}")
    return 0
