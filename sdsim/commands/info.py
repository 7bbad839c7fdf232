"""`sdsim info`: parameters, FLOPs, op counts and activation sizes of each component."""

from __future__ import annotations

from collections import Counter

from sdsim.backends.trace import Graph, trace_pipeline
from sdsim.model.presets import PRESETS, load_model_config, resolve_resolution
from sdsim.output import dumps, human_bytes, render_rows
from sdsim.schemas import SCHEMA_VERSION

HELP = "show parameters, FLOPs per call, op counts and activation bytes of each model component"
DESCRIPTION = (
    "Trace the model on shapes only and summarise each component: text_encoder (prompt and "
    "negative prompt in one call of --batch), unet (one call at the classifier-free-guidance "
    "batch), vae_decoder (--batch/2 images). FLOPs count matmul-like ops, 2 per multiply-add, "
    "as PyTorch's FLOP counter does."
)

KEY_OPS = ("conv2d", "linear", "attention", "group_norm", "layer_norm", "geglu")


def add_arguments(p):
    p.add_argument("--model", default="sd14",
                   help=f"preset ({', '.join(PRESETS)}) or a diffusers-style folder (only config.json files are read)")
    p.add_argument("--resolution", type=int,
                   help="image size in pixels (default: the model's own, 512 for SD1.x)")
    p.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with classifier-free guidance)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp16",
                   help="storage precision for byte counts (as predict)")
    p.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table",
                   help="output: a table for reading, or json/csv/markdown for scripts and reports")


def peak_live_bytes(g: Graph) -> int:
    """Peak of simultaneously live activations when each tensor is freed after its last use."""
    last_use = {}
    for op in g.ops:
        for t in op.inputs:
            last_use[t.id] = op.index
    for t in g.outputs:
        last_use[t.id] = len(g.ops)
    size = lambda t: t.numel * (4 if t.dtype in ("fp32", "int32") else 2)  # noqa: E731
    live = {t.id: size(t) for t in g.inputs}
    peak = sum(live.values())
    for op in g.ops:
        live[op.output.id] = size(op.output)
        peak = max(peak, sum(live.values()))
        for t in op.inputs:
            if last_use.get(t.id) == op.index:
                live.pop(t.id, None)
    return peak


def summarize(g: Graph) -> dict:
    counts = Counter(op.kind for op in g.ops)
    return {
        "params": g.params,
        "flops": g.flops,
        "ops": dict(sorted(counts.items())),
        "activation_bytes": sum(op.bytes_written for op in g.ops),
        "peak_activation_bytes": peak_live_bytes(g),
        "input_shapes": [list(t.shape) for t in g.inputs],
        "output_shape": list(g.outputs[0].shape),
    }


def run(args) -> int:
    cfg = load_model_config(args.model)
    resolve_resolution(args)
    graphs = trace_pipeline(cfg, args.resolution, args.batch, args.precision)
    result = {name: summarize(g) for name, g in graphs.items()}
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "model": cfg.name,
                     "resolution": args.resolution, "batch": args.batch,
                     "precision": args.precision, "components": result}))
        return 0
    rows = []
    for name, s in result.items():
        row = {"component": name, "params": f"{s['params']:,}", "GFLOP/call": s["flops"] / 1e9}
        row.update({k: s["ops"].get(k, 0) for k in KEY_OPS})
        row["other ops"] = sum(v for k, v in s["ops"].items() if k not in KEY_OPS)
        row["activations written"] = human_bytes(s["activation_bytes"])
        row["peak live"] = human_bytes(s["peak_activation_bytes"])
        rows.append(row)
    if args.format == "table":
        print(f"model {cfg.name}, {args.resolution}x{args.resolution}, batch {args.batch}, {args.precision}")
    print(render_rows(rows, args.format, floatfmt=".2f"))
    return 0
