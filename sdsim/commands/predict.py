"""`sdsim predict`: latency, DRAM traffic and peak memory of SD on a device profile."""

from __future__ import annotations

import sys

from sdsim.cli import opt_help
from sdsim.cost.predict import DEFAULT_TRAFFIC, TRAFFIC, predict, trace
from sdsim.cost.profile import load_profile, profile_warnings
from sdsim.model.presets import resolve_resolution
from sdsim.cost.report import (UNITS, arith_line, component_rows, explain, flops_line, kernel_rows,
                               op_rows, to_json)
from sdsim.errors import SdsimError
from sdsim.lower.options import parse_opt
from sdsim.output import FORMATS, dumps, human_bytes, in_units, render_rows

HELP = "predict latency, DRAM traffic and peak memory of a text-to-image run on a device profile"
DESCRIPTION = (
    "Trace SD (text encoder, UNet, VAE decoder), lower every op to kernel calls under the chosen "
    "optimizations, and time each call from its launch geometry "
    "(waves of work-groups, each walking its serial steps: sdsim/cost/waves.py) with the "
    "profile's calibrated coefficients, or coefficients transferred from its specifications "
    "where none were measured; "
    "where the specification sources disagree the total comes with a band."
)


def add_common(p):
    from sdsim.model.schedulers import SCHEDULERS

    p.add_argument("--device", required=True, help="profile name (see 'sdsim devices') or path to a YAML profile")
    p.add_argument("--steps", type=int, default=20, help="inference steps")
    p.add_argument("--scheduler", choices=tuple(SCHEDULERS), default="pndm",
                   help="decides the UNet calls: pndm makes steps+1, the others steps")
    p.add_argument("--resolution", type=int,
                   help="image size in pixels (default: the model's own, 512 for SD1.x)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="storage precision")
    p.add_argument("--model", default="sd14", help="model preset or diffusers-style folder")
    p.add_argument("--traffic", choices=TRAFFIC, default=DEFAULT_TRAFFIC,
                   help="DRAM bytes: as the kernels tile them (every re-read charged), cached "
                        "(re-reads charged only where the profile's cache cannot serve them), or "
                        "compulsory (each op's bytes once: the lower bound); see "
                        "sdsim/cost/traffic.py")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")


def add_arguments(p):
    add_common(p)
    p.add_argument("--opt", default="paper", help=opt_help())
    p.add_argument("--by", choices=("component", "op", "kernel"), default="component",
                   help="rows: pipeline components, ops of one call of each, or kernel dispatches")
    p.add_argument("--sort", choices=tuple(SORT_KEYS),
                   help="with --by op|kernel: order rows by this, largest first (default: "
                        "execution order)")
    p.add_argument("--top", type=int, metavar="N",
                   help="with --by op|kernel: only the first N rows (after --sort)")
    p.add_argument("--trace", metavar="FILE.json",
                   help="also write the predicted kernel timeline as a Chrome/Perfetto trace "
                        "(open it in https://ui.perfetto.dev): a track per component, a slice "
                        "per dispatch with its FLOPs, bytes and explanation")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw where the time goes: a bar per component, split by kernel "
                        "class (needs matplotlib: pip install sdsim[plot])")


#: --sort choice -> the row field it orders by (op rows, kernel rows)
SORT_KEYS = {"latency": "latency_s", "flops": "flops", "dram": "dram_bytes"}


def select_rows(rows: list[dict], args) -> list[dict]:
    """--sort and --top applied to op or kernel rows."""
    if (args.sort or args.top is not None) and args.by == "component":
        raise SdsimError("--sort and --top apply to --by op or --by kernel")
    if args.top is not None and args.top < 1:
        raise SdsimError(f"--top must be at least 1, got {args.top}")
    if args.sort:
        rows = sorted(rows, key=lambda r: -r[SORT_KEYS[args.sort]])
    return rows[:args.top] if args.top else rows


def check_steps(args):
    if args.steps < 1:
        raise SdsimError(f"--steps must be at least 1, got {args.steps}")


def run(args) -> int:
    check_steps(args)
    resolve_resolution(args)
    profile = load_profile(args.device)
    graphs = trace(args.model, args.resolution, args.precision)
    pred = predict(profile, parse_opt(args.opt), args.steps, args.scheduler, args.resolution,
                   args.precision, args.model, graphs=graphs, traffic=args.traffic)
    rows = select_rows(
        {"component": component_rows, "op": op_rows, "kernel": kernel_rows}[args.by](pred), args)
    if args.trace:
        from sdsim import timeline

        timeline.write(args.trace, timeline.predicted_events(profile.name, pred.components),
                       {"device": profile.name, "model": args.model, "steps": args.steps,
                        "scheduler": args.scheduler, "resolution": args.resolution,
                        "precision": args.precision, "opt": args.opt})
    if args.plot:
        from sdsim import plot

        plot.write(pred, args.plot)
    if args.format == "json":
        obj = to_json(pred)
        if args.by != "component":
            obj["rows"] = rows
        print(dumps(obj))
        return 0
    if args.format == "table":
        print(f"{profile.name}: {profile.gpu}, {args.precision}, {args.resolution}x{args.resolution}, "
              f"{args.steps} steps {args.scheduler}, opt {pred.options.describe()}, "
              f"{args.traffic} traffic")
    print(render_rows(in_units(rows, UNITS[args.by]), args.format))
    if args.format == "table" and pred.band:
        print(f"band: {pred.total_s_low:.3g}-{pred.total_s_high:.3g} s end to end, over the "
              f"ranges of the profile's disagreeing specifications ({', '.join(profile.bands)})")
    if args.format == "table" and args.by == "component":
        print("\n".join(explain(pred)))
        print(flops_line(pred, graphs))
        print(arith_line(pred))
        for pub in pred.published:
            print(f"published: {pub['value']:g} s for {pub['workload']} ({pub['source']}); "
                  f"predicted here {pred.total_s:.3g} s ({pred.total_s / pub['value']:.2f}x)")
    for warn in profile_warnings(profile, args.precision):
        print(f"warning: {warn}", file=sys.stderr)
    for c in pred.components:
        for ident, size in c.oversized:
            if args.format == "table":
                print(f"warning: {ident} needs a {human_bytes(size)} buffer, over the device's "
                      f"max single allocation ({human_bytes(profile.max_allocation)})")
    return 0
