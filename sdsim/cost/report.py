"""Rows and JSON objects of a Prediction, shared by `sdsim predict` and `sdsim ablate`.

Rows and JSON are in SI units (seconds, bytes, FLOPs); `UNITS` gives the human units the tables
(and CSV) show them in (`sdsim.output.in_units`)."""

from __future__ import annotations

from collections import defaultdict

from sdsim.cost.predict import Prediction
from sdsim.cost.waves import BEYOND
from sdsim.schemas import SCHEMA_VERSION

LABELS = {"text_encoder": "text encoder", "unet": "UNet", "vae_decoder": "VAE decoder"}
#: row kind -> SI field -> (table column, factor): what `--format table|csv|markdown` shows
UNITS = {
    "component": {"flops": ("GFLOPs", 1e-9), "dram_bytes": ("DRAM_GB", 1e-9),
                  "peak_memory_bytes": ("peak_memory_MiB", 2**-20)},
    "op": {"latency_s": ("latency_us", 1e6), "flops": ("MFLOPs", 1e-6),
           "dram_bytes": ("DRAM_MB", 1e-6)},
    "kernel": {"latency_s": ("latency_us", 1e6), "flops": ("MFLOPs", 1e-6),
               "dram_bytes": ("DRAM_MB", 1e-6)},
}


def component_rows(p: Prediction) -> list[dict]:
    """Text encoder, UNet per call, UNet all calls, VAE decoder, total."""
    rows = []

    def row(label, calls, lat, flops, dram, peak):
        rows.append({"component": label, "calls": calls, "latency_s": lat, "flops": flops,
                     "dram_bytes": dram, "peak_memory_bytes": peak})

    for c in p.components:
        if c.calls == 1:
            row(LABELS[c.name], 1, c.latency_per_call, c.flops_per_call, c.dram_per_call,
                c.peak_memory)
        else:
            row(f"{LABELS[c.name]} (per call)", 1, c.latency_per_call, c.flops_per_call,
                c.dram_per_call, c.peak_memory)
            row(f"{LABELS[c.name]} (all calls)", c.calls, c.latency_per_call * c.calls,
                c.flops_per_call * c.calls, c.dram_per_call * c.calls, c.peak_memory)
    row("total", "", p.total_s, sum(c.flops_per_call * c.calls for c in p.components),
        sum(c.dram_per_call * c.calls for c in p.components), p.peak_memory_bytes)
    return rows


def op_rows(p: Prediction) -> list[dict]:
    """One row per op of one component call (its dispatches summed), named by the op's module
    scope (the checkpoint's names); the op index is kept last, as a tiebreak."""
    acc = {}
    for c in p.components:
        for k in c.kernels:
            key = (c.name, k.call.op_index)
            r = acc.get(key)
            if r is None:
                r = acc[key] = {"component": c.name, "scope": k.call.scope,
                                "kind": k.call.op_kind,
                                "variant": f"{k.call.family}/{k.call.variant}",
                                "dispatches": 0, "latency_s": 0.0, "flops": 0.0, "dram_bytes": 0.0,
                                "op": k.call.op_index}
            r["dispatches"] += 1
            r["latency_s"] += k.time.total_s
            r["flops"] += k.call.flops
            r["dram_bytes"] += k.call.dram_bytes
    return list(acc.values())


def kernel_rows(p: Prediction) -> list[dict]:
    """One row per dispatch of one component call, with its identity, roofline bound and
    `calls`: how many times the run dispatches it (its component's calls)."""
    return [{"id": k.call.identity, "class": k.call.kernel_class,
             "variant": f"{k.call.family}/{k.call.variant}", "calls": c.calls,
             "latency_s": k.time.total_s, "bound": k.time.bound, "flops": k.call.flops,
             "dram_bytes": k.call.dram_bytes, "why": k.time.why}
            for c in p.components for k in c.kernels]


def timed(p: Prediction):
    """(component, dispatch, seconds over the whole run: its time x the component's calls) of
    every dispatch: what every breakdown of the total sums."""
    for c in p.components:
        for k in c.kernels:
            yield c, k, k.time.total_s * c.calls


def class_breakdown(p: Prediction) -> dict:
    """Seconds per kernel class over the whole run (all calls)."""
    out = defaultdict(float)
    for _, k, t in timed(p):
        out[k.call.kernel_class] += t
    return dict(out)


def time_split(p: Prediction) -> tuple[dict, dict]:
    """Seconds over the whole run by what bounds each dispatch ("compute" | "memory" by the
    roofline, "latency" where the steps go at the step or wave latency), and by
    kernel ("family/variant kernel")."""
    bound, kernel = defaultdict(float), defaultdict(float)
    for _, k, t in timed(p):
        bound["latency" if "latency-bound" in k.time.why else k.time.bound] += t
        kernel[f"{k.call.family}/{k.call.variant} {k.call.kernel}"] += t
    return dict(bound), dict(kernel)


def beyond_s(p: Prediction) -> float:
    """Seconds of the whole run in calls whose geometry lies past their kernel body's
    calibration sweep (sdsim/cost/waves.py `beyond`): the share of the total that extrapolates."""
    return sum(t for _, k, t in timed(p) if BEYOND in k.time.why)


def explain(p: Prediction, top: int = 3) -> list[str]:
    """Two lines on why the total is what it is: what bounds the time, and where most of it
    goes; a third where some of it is in calls past their kernel body's calibration sweep."""
    total = p.total_s or 1.0
    bound, kernel = time_split(p)
    pct = {b: 100 * bound.get(b, 0.0) / total for b in ("compute", "memory", "latency")}
    most = sorted(kernel.items(), key=lambda kv: -kv[1])[:top]
    far = beyond_s(p)
    return [f"bound: {pct['compute']:.0f}% of the time in compute-bound dispatches, "
            f"{pct['memory']:.0f}% memory-bound, {pct['latency']:.0f}% latency-bound (too few "
            "work-groups to fill the GPU, or a wave's steps too short to hide its latency)",
            "most time: " + ", ".join(f"{name} {100 * t / total:.0f}%" for name, t in most)
            + " ('--by kernel' explains each call)"] + (
        [(f"{BEYOND}: {100 * far / total:.0f}% of the time is in calls whose geometry lies past "
          "what their kernel body's calibration measured; those predictions extrapolate "
          "('--by kernel' says how far)")] if far else [])


def flops_line(p: Prediction, graphs: dict) -> str:
    """Executed FLOPs beside the model's FLOPs as `sdsim info` counts them (`graphs`: the run's
    trace), and why they differ."""
    executed = sum(c.flops_per_call * c.calls for c in p.components)
    model = sum(graphs[c.name].flops * c.calls for c in p.components)
    per_call = " + ".join(f"{c.calls} x " * (c.calls > 1) + f"{graphs[c.name].flops / 1e9:.2f}"
                          for c in p.components)
    return (f"FLOPs: {executed / 1e9:,.1f} GFLOP executed by this plan (every kernel's "
            "arithmetic; Winograd's GEMMs do fewer multiplies than direct convolution) against "
            f"the model's {model / 1e9:,.1f} GFLOP as 'sdsim info' counts them (matmul-like ops "
            f"only: {per_call} GFLOP per call)")


def half_share(p: Prediction) -> float:
    """The share of executed FLOPs that run in half arithmetic: fp16-storage dispatches with a
    half build (KernelCall.half_arith) on a device with native half, as the runtime's default
    `--arith` runs them; the cost model charges the fp16 rate to those only."""
    if p.precision != "fp16" or not p.native_half:
        return 0.0
    total = sum(k.call.flops * c.calls for c in p.components for k in c.kernels)
    half = sum(k.call.flops * c.calls for c in p.components for k in c.kernels
               if k.call.half_arith)
    return half / total if total else 0.0


def arith_line(p: Prediction) -> str:
    """Which arithmetic the prediction prices, in one line."""
    if p.precision != "fp16":
        return "arithmetic: float (fp32 storage)"
    if not p.native_half:
        return "arithmetic: float (fp16 storage; the profile's device has no native half)"
    floats = sorted({k.call.kernel for c in p.components for k in c.kernels
                     if not k.call.half_arith and k.call.flops})
    return (f"arithmetic: half for {half_share(p):.1%} of executed FLOPs (the fp16 rate; "
            f"every kernel with a half build); float in {', '.join(floats) or 'none'}")


def to_json(p: Prediction) -> dict:
    """The object `sdsim predict --format json` prints (sdsim/schemas/predict.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "device": p.device, "opt": p.options.describe(), "precision": p.precision,
        "resolution": p.resolution, "steps": p.steps, "scheduler": p.scheduler,
        "traffic": p.traffic, "half_arith_flops_share": half_share(p), "total_s": p.total_s, "total_s_low": p.total_s_low,
        "total_s_high": p.total_s_high, "peak_memory_bytes": p.peak_memory_bytes,
        "peak_memory_naive_bytes": (sum(c.weights_bytes for c in p.components)
                                    + max(c.activations_naive for c in p.components)),
        "time_by_kernel_class_s": class_breakdown(p),
        "time_by_bound_s": time_split(p)[0],
        "time_beyond_sweep_s": beyond_s(p),
        "published": [{"time_s": pub["value"], "workload": pub["workload"],
                       "source": pub["source"]} for pub in p.published],
        "components": {c.name: {
            "calls": c.calls, "latency_s": c.latency_per_call * c.calls,
            "latency_per_call_s": c.latency_per_call, "flops": c.flops_per_call * c.calls,
            "dram_bytes": c.dram_per_call * c.calls, "dispatches_per_call": len(c.kernels),
            "weights_bytes": c.weights_bytes, "peak_memory_bytes": c.peak_memory,
            "peak_memory_naive_bytes": c.peak_memory_naive,
            "over_max_allocation": [{"id": i, "bytes": b} for i, b in c.oversized],
        } for c in p.components},
    }
