"""`sdsim ablate`: predicted latency with all optimizations, none, each removed and each alone."""

from __future__ import annotations

import dataclasses

from sdsim.commands.predict import add_common, check_steps
from sdsim.cost.predict import predict, trace
from sdsim.cost.profile import load_profile
from sdsim.lower.options import SETS, SWITCHES
from sdsim.model.presets import resolve_resolution
from sdsim.output import dumps, in_units, render_rows
from sdsim.schemas import SCHEMA_VERSION

HELP = "ablation table: latency with all, none, each optimization removed and each one alone"
DESCRIPTION = (
    "The shape of the paper's ablation: the paper's configuration, all baselines, the paper's "
    "configuration with one switch set back to its baseline, and the baselines with one switch "
    "set to the paper's kernel. The switches, paper's kernel vs baseline: "
    + "; ".join(f"{s}: {getattr(SETS['paper'], s)} vs {getattr(SETS['none'], s)}"
                for s in SWITCHES)
    + " (every choice of each: 'sdsim predict --help', --opt). The trace is shared, only "
    "lowering and costing are redone."
)


#: SI field -> (table column, factor)
UNITS = {"dram_bytes": ("DRAM_GB", 1e-9), "peak_memory_bytes": ("peak_memory_MiB", 2**-20)}


def add_arguments(p):
    add_common(p)


def configurations() -> list[tuple[str, object]]:
    paper, none = SETS["paper"], SETS["none"]
    confs = [("all (paper)", paper), ("none", none)]
    for s in SWITCHES:
        confs.append((f"paper without {s}", dataclasses.replace(paper, **{s: getattr(none, s)})))
    for s in SWITCHES:
        confs.append((f"only {s}", dataclasses.replace(none, **{s: getattr(paper, s)})))
    return confs


def run(args) -> int:
    check_steps(args)
    resolve_resolution(args)
    profile = load_profile(args.device)
    graphs = trace(args.model, args.resolution, args.precision)
    rows = []
    base = None
    for label, opt in configurations():
        p = predict(profile, opt, args.steps, args.scheduler, args.resolution, args.precision,
                    args.model, graphs=graphs, traffic=args.traffic)
        if base is None:
            base = p.total_s
        unet = next(c for c in p.components if c.name == "unet")
        rows.append({"configuration": label, "opt": opt.describe(), "total_s": p.total_s,
                     "vs_paper": p.total_s / base, "unet_per_call_s": unet.latency_per_call,
                     "dram_bytes": sum(c.dram_per_call * c.calls for c in p.components),
                     "peak_memory_bytes": p.peak_memory_bytes})
    none_s = rows[1]["total_s"]
    for r in rows:
        r["speedup_vs_none"] = none_s / r["total_s"]
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "device": profile.name,
                     "model": args.model, "precision": args.precision, "steps": args.steps,
                     "scheduler": args.scheduler, "resolution": args.resolution,
                     "traffic": args.traffic, "rows": rows}))
        return 0
    if args.format == "table":
        print(f"{profile.name}: {profile.gpu}, {args.precision}, {args.resolution}x{args.resolution}, "
              f"{args.steps} steps {args.scheduler}, {args.traffic} traffic")
    if args.format in ("table", "markdown"):
        rows = [{k: v for k, v in r.items() if k != "opt"} for r in rows]
    print(render_rows(in_units(rows, UNITS), args.format))
    return 0
