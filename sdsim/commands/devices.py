"""`sdsim devices`: the shipped device profiles, one line each."""

from __future__ import annotations

from sdsim.cost.profile import known_profiles, load_profile
from sdsim.output import FORMATS, render_rows

HELP = "list the device profiles (device_profiles/*.yaml), one line each"
DESCRIPTION = ("One line per shipped profile: GPU, SoC, API, peak FP16/FP32 rate, DRAM bandwidth "
               "and launch overhead. Every number's source is in the YAML file.")


def add_arguments(p):
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")


def run(args) -> int:
    rows = []
    for name in known_profiles():
        p = load_profile(name)
        rows.append({"name": p.name, "gpu": p.gpu, "soc": p.soc, "api": p.api,
                     "fp16_TFLOPs": p.peak_flops["fp16"] / 1e12,
                     "fp32_TFLOPs": p.peak_flops["fp32"] / 1e12, "native_half": p.native_half,
                     "DRAM_GBps": p.dram_bandwidth / 1e9, "launch_us": p.launch_overhead * 1e6})
    print(render_rows(rows, args.format, floatfmt=".3g"))
    return 0
