"""The paper's two kernel claims checked layer by layer on a device, from a measured
`sdsim bench --suite sd` run: Winograd F(4x4,3x3) against the direct convolution at every 3x3
stride-1 conv of the UNet, and FlashAttention / the partially fused softmax against naive
attention at every attention shape.

Nothing is measured here: the times are the bench run's (its JSON, `--report` of
`sdsim bench --suite sd --family conv2d attention`). Where an optimization loses, the table says
why with the numbers of the kernels' own launch geometry and cost formulas (sdsim.kernels) under
the device's kernel builds (the profile's `tuning:`): Winograd's GEMM depth (cin) and the share
of its FLOPs and bytes spent in the transforms; FlashAttention's work-groups against the compute
units and the floats each work-item keeps (query, accumulators, key-tile scores).

    python benchmarks/paper_claims.py --bench reports/bench-sd-paper-nvidia-h200-512.json \\
        --device nvidia-h200-opencl --report reports/paper-claims-nvidia-h200-512.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_shape(text: str) -> dict:
    """'batch=2 cin=320 ... padding=1x1x1x1 bias=True' -> op attrs."""
    out = {}
    for item in text.split():
        k, v = item.split("=", 1)
        if v in ("True", "False"):
            out[k] = v == "True"
        elif "x" in v:
            out[k] = tuple(int(x) for x in v.split("x"))
        else:
            out[k] = int(v)
    return out


def conv_rows(rows, kernels):
    """One row per 3x3 stride-1 conv shape: direct vs F4, and why where F4 loses."""
    by = {}
    for r in rows:
        if r["family"] == "conv2d":
            by.setdefault(r["shape"], {})[r["variant"]] = r
    out = []
    for shape, vs in by.items():
        a = parse_shape(shape)
        if a.get("k") != 3 or a.get("stride") != 1 or "winograd_f4" not in vs:
            continue
        d, w = vs["direct"], vs["winograd_f4"]
        if d["time_s"] is None or w["time_s"] is None:
            raise SystemExit(f"{shape}: direct or F4 was not measured ({d['status']}; "
                             f"{w['status']}); rerun the bench with a larger --point-budget-s")
        ks = kernels.costs("conv2d", "winograd_f4", "fp32", **a)
        gemm = [k for k in ks if k.kernel_class == "gemm"]
        tf = sum(k.flops for k in ks if k not in gemm) / sum(k.flops for k in ks)
        tb = sum(k.dram_bytes for k in ks if k not in gemm) / sum(k.dram_bytes for k in ks)
        faster = w["time_s"] < d["time_s"]
        out.append({"shape": f"{a['cin']}->{a['cout']} @ {a['h']}x{a['w']}",
                    "calls": d["calls"], "direct ms": d["time_s"] * 1e3,
                    "F4 ms": w["time_s"] * 1e3, "F4 speed-up": d["time_s"] / w["time_s"],
                    "verdict": "F4 faster" if faster else "direct faster",
                    "F4 GEMM depth (cin)": a["cin"], "F4 transforms % FLOPs": 100 * tf,
                    "F4 transforms % bytes": 100 * tb})
    return out


def attention_rows(rows, kernels, compute_units):
    by = {}
    for r in rows:
        if r["family"] == "attention":
            by.setdefault(r["shape"], {})[r["variant"]] = r
    out = []
    for shape, vs in by.items():
        a = parse_shape(shape)
        n = vs["naive"]["time_s"]
        (fl,) = kernels.costs("attention", "flash", "fp32", **a)
        from sdsim.kernels.attention import flash_key_tile
        from sdsim.kernels.gemm import plan

        # P.V runs on the tiled GEMM, each work-group loading its row block of scores as
        # probabilities once per column tile (TN) of the head dimension
        pv_cfg = plan(a["batch"] * a["heads"], a["nq"], a["nk"], a["head_dim"], may_swap=False)[0]
        paper = next((v for v, r in vs.items() if r["paper"]), "")
        fastest = min(vs, key=lambda v: vs[v]["time_s"])
        out.append({"shape": f"{a['batch']}x{a['heads']} heads, {a['nq']}x{a['nk']}, "
                             f"d={a['head_dim']}",
                    "calls": vs["naive"]["calls"], "naive ms": n * 1e3,
                    "partial softmax x": n / vs["partial_softmax"]["time_s"],
                    "flash x": n / vs["flash"]["time_s"], "paper runs": paper,
                    "fastest": fastest,
                    "partial softmax exp per score": -(-a["head_dim"] // pv_cfg.tn),
                    "flash work-groups": fl.launch.work_groups,
                    "compute units": compute_units,
                    "floats per flash work-item": 2 * a["head_dim"] + flash_key_tile(a["head_dim"])})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="JSON of `sdsim bench --suite sd --report`")
    ap.add_argument("--device", required=True,
                    help="the device profile whose kernel builds (tuning) the bench ran")
    ap.add_argument("--report", required=True, help="Markdown report to write")
    args = ap.parse_args(argv)

    from sdsim import atomic, kernels
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning
    from sdsim.output import render_rows

    data = json.loads(Path(args.bench).read_text())
    prof = load_profile(args.device)
    with tuning.use(tuning.for_profile(prof)):
        conv = conv_rows(data["rows"], kernels)
        attn = attention_rows(data["rows"], kernels, prof.geometry["compute_units"])
    ctx = data["context"]
    wins = sum(r["verdict"] == "F4 faster" for r in conv)
    cmd = "python benchmarks/paper_claims.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    lines = [
        f"# The paper's kernel claims on {data['opencl_device']}, layer by layer", "",
        f"Produced by `{cmd}` from the measurements of `{ctx['command']}` ({ctx['date']}, "
        f"sdsim {ctx['commit']}, 1-minute load {ctx['load_before']} before and "
        f"{ctx['load_after']} after the run; {data['model']} UNet at {data['resolution']}x"
        f"{data['resolution']}, batch {data['batch']}, fp32 storage; kernel builds "
        f"{ctx['tuning']['source']}).", "",
        f"## Winograd F(4x4, 3x3) against the direct convolution: faster at {wins} of "
        f"{len(conv)} 3x3 stride-1 shapes", "",
        "Where F4 loses, the GEMM it saves work in is shallow (its depth is cin) while the "
        "transforms, whose cost does not shrink with cin, carry most of its FLOPs and bytes.",
        "", render_rows(conv, "markdown", floatfmt=".3g"), "",
        "## FlashAttention and the partially fused softmax against naive attention", "",
        f"Speed-ups over naive at each shape (x > 1: faster): FlashAttention faster at "
        f"{sum(r['flash x'] > 1 for r in attn)} of {len(attn)} shapes, the partially fused "
        f"softmax at {sum(r['partial softmax x'] > 1 for r in attn)}; the variant the paper "
        f"runs (FlashAttention only where the head dimension is 40, the partially fused softmax "
        f"elsewhere) is the fastest at {sum(r['paper runs'] == r['fastest'] for r in attn)}. "
        "The numbers that explain a loss: a FlashAttention work-item keeps 2 x d + its key "
        "tile's scores in private memory (registers on a GPU; spilled beyond them), and its "
        "work-groups (one per query tile and head) may not fill the compute units; the "
        "partially fused softmax evaluates exp(s - max) / sum once per score for every "
        "column tile of P.V's GEMM build (ceil(d / TN) times; naive attention once), an exp "
        "and a divide per loaded score that a CPU pays in full and a GPU hides only where "
        "P.V is bound by memory.", "",
        render_rows(attn, "markdown", floatfmt=".3g"), ""]
    atomic.write_text(Path(args.report), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
