"""`sdsim devices`: the shipped device profiles, one line each."""

from __future__ import annotations

from sdsim.cost.profile import known_profiles, load_profile
from sdsim.output import FORMATS, dumps, in_units, render_rows
from sdsim.schemas import SCHEMA_VERSION

HELP = "list the device profiles (device_profiles/*.yaml), one line each"
DESCRIPTION = ("One line per shipped profile: GPU, SoC, API, peak FP16/FP32 rate, DRAM bandwidth "
               "and launch overhead. Every number's source is in the YAML file.")

#: SI field -> (table column, factor)
UNITS = {"peak_fp16_flops_per_s": ("fp16_TFLOPs", 1e-12),
         "peak_fp32_flops_per_s": ("fp32_TFLOPs", 1e-12),
         "dram_bandwidth_bytes_per_s": ("DRAM_GBps", 1e-9), "launch_overhead_s": ("launch_us", 1e6)}


def add_arguments(p):
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")


def run(args) -> int:
    rows = []
    for name in known_profiles():
        p = load_profile(name)
        rows.append({"name": p.name, "gpu": p.gpu, "soc": p.soc, "api": p.api,
                     "peak_fp16_flops_per_s": p.peak_flops["fp16"],
                     "peak_fp32_flops_per_s": p.peak_flops["fp32"], "native_half": p.native_half,
                     "dram_bandwidth_bytes_per_s": p.dram_bandwidth,
                     "launch_overhead_s": p.launch_overhead})
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "devices": rows}))
    else:
        print(render_rows(in_units(rows, UNITS), args.format, floatfmt=".3g"))
    return 0
