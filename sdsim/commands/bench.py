"""`sdsim bench`: run every OpenCL kernel variant, check it against NumPy, report speed and error."""

from __future__ import annotations

import sys

from sdsim.errors import SdsimError
from sdsim.output import FORMATS, render_rows

HELP = "run and time every OpenCL kernel variant, checked against the NumPy reference"
DESCRIPTION = (
    "Runs each kernel variant record (sdsim/kernels: conv2d, linear, group_norm, layer_norm, "
    "gelu, attention, elementwise) on an OpenCL device at its bench shapes, SD1.4's (or small "
    "shapes with --quick), through the launcher the OpenCL backend uses, checks the result "
    "against the record's float64 NumPy reference, and prints the median time of the timed "
    "dispatches (OpenCL events), GFLOP/s and GB/s from the variant's cost formulas, and the max "
    "abs error. Exits 1 if any result is outside its tolerance."
)


def add_arguments(p):
    p.add_argument("--platform", help="OpenCL platform index or name substring (default: first)")
    p.add_argument("--device", help="OpenCL device index or name substring (default: first)")
    p.add_argument("--quick", action="store_true", help="small shapes (seconds on a CPU)")
    p.add_argument("--family", nargs="+", metavar="F",
                   help="only these families (e.g. conv2d linear attention) or variants "
                        "(conv2d/winograd_f4)")
    p.add_argument("--precision", choices=("fp32", "fp16", "both"), default="both",
                   help="storage precision of the runs")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per variant (median)")


def run(args) -> int:
    from tqdm import tqdm

    from sdsim.cl.bench import all_cases, run_case
    from sdsim.cl.runtime import Runtime

    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    rt = Runtime(args.platform, args.device)
    precisions = ("fp32", "fp16") if args.precision == "both" else (args.precision,)
    cases = all_cases("quick" if args.quick else "full", args.family, precisions)
    if not cases:
        raise SdsimError(f"no bench cases for --family {' '.join(args.family or [])}")
    rows = []
    bar = tqdm(cases, desc=f"bench on {rt.device.name.strip()}", unit="kernel", file=sys.stderr,
               disable=None)
    for case in bar:
        bar.set_postfix_str(f"{case.family}/{case.variant} {case.precision}")
        rows.append(run_case(rt, case, repeat=args.repeat))
    print(render_rows(rows, args.format))
    bad = [r for r in rows if not r["ok"]]
    if bad:
        print(f"sdsim bench: {len(bad)} of {len(rows)} results outside tolerance: "
              + ", ".join(f"{r['family']}/{r['variant']} {r['precision']}" for r in bad),
              file=sys.stderr)
        return 1
    return 0
