"""Predicted versus measured, call by call: the metrics the field reports.

For one component run, every dispatch has a measured time (its OpenCL event) and a predicted
time (the cost model's, for the call with the same identity). Errors are (predicted - measured)
/ measured. Reported:
- e2e_error_pct: error of the summed time of all calls;
- rmspe_pct: root mean square of the per-call percentage errors;
- accN_calls_pct / accN_time_pct: share of calls, and of measured time, whose prediction is
  within +-N% (N = 10, 15);
- beyond_time_pct: share of measured time in calls whose geometry lies past what their kernel
  body's calibration swept (the prediction extrapolates, sdsim/cost/waves.py `beyond`), and
  beyond_acc10_time_pct the share of those calls' time predicted within +-10%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdsim import repeats
from sdsim.cost.waves import BEYOND
from sdsim.errors import SdsimError
from sdsim.lower.options import SWITCHES


@dataclass
class CallRow:
    identity: str
    op_index: int
    op_kind: str
    scope: str
    family: str
    variant: str
    kernel: str
    kernel_class: str
    attrs: dict
    flops: float
    dram_bytes: float
    bound: str
    predicted_s: float
    measured_s: float
    switch: str | None = None   # the --opt switch whose rule chose the call's variant
    why: str = ""               # the prediction's one-line explanation

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def beyond(self) -> bool:
        """Whether the prediction extrapolates past its body's calibration sweep."""
        return BEYOND in self.why


def join(timings, costed) -> list[CallRow]:
    """Pair each measured dispatch with the predicted call of the same identity."""
    pred = {c.call.identity: c for c in costed}
    rows = []
    for call, meas in timings:
        p = pred.get(call.identity)
        if p is None:
            raise SdsimError(f"measured call {call.identity} has no prediction: the run and the "
                             "prediction used different plans")
        rows.append(CallRow(call.identity, call.op_index, call.op_kind, call.scope, call.family,
                            call.variant, call.kernel, call.kernel_class, {}, call.flops,
                            call.dram_bytes, p.time.bound, p.time.total_s, max(meas, 1e-9),
                            call.switch, p.time.why))
    if len(rows) != len(pred):
        missing = sorted(set(pred) - {r.identity for r in rows})[:3]
        raise SdsimError(f"{len(pred) - len(rows)} predicted calls were not measured "
                         f"(e.g. {', '.join(missing)})")
    return rows


def timings(runs: list[list], statistic: str = "median") -> list:
    """(call, seconds) over repeated runs of one plan (each a list of (call, seconds)), each
    call's runs reduced by `statistic` (sdsim/repeats.py)."""
    return [(calls[0][0], float(repeats.reduce([t for _, t in calls], statistic)))
            for calls in zip(*runs)]


def noise(runs: list[list], statistic: str = "median") -> dict | None:
    """The measurement's own run-to-run agreement, the ceiling any prediction can reach: the
    first run taken as the "prediction" of the median of the others, in the metrics below; for
    the fastest run (`statistic` "min"), the fastest of the first half of the runs as that of
    the others (one run against the fastest of several would count the minimum's own gain as
    noise)."""
    if len(runs) < 2:
        return None
    half = 1 if statistic == "median" else len(runs) // 2
    head, rest = timings(runs[:half], statistic), timings(runs[half:], statistic)
    rows = [CallRow(c.identity, c.op_index, c.op_kind, c.scope, c.family, c.variant, c.kernel,
                    c.kernel_class, {}, c.flops, c.dram_bytes, "", max(first, 1e-9),
                    max(t, 1e-9)) for (c, first), (_, t) in zip(head, rest)]
    return metrics(rows)


def metrics(rows: list[CallRow]) -> dict:
    meas = sum(r.measured_s for r in rows)
    pred = sum(r.predicted_s for r in rows)
    errs = [r.error for r in rows]
    out = {"calls": len(rows), "measured_s": meas, "predicted_s": pred,
           "e2e_error_pct": 100.0 * (pred - meas) / meas,
           "rmspe_pct": 100.0 * math.sqrt(sum(e * e for e in errs) / len(errs))}
    for n in (10, 15):
        ok = [r for r in rows if abs(r.error) <= n / 100]
        out[f"acc{n}_calls_pct"] = 100.0 * len(ok) / len(rows)
        out[f"acc{n}_time_pct"] = 100.0 * sum(r.measured_s for r in ok) / meas
    far = [r for r in rows if r.beyond]
    far_s = sum(r.measured_s for r in far)
    out["beyond_time_pct"] = 100.0 * far_s / meas
    out["beyond_acc10_time_pct"] = (100.0 * sum(r.measured_s for r in far if abs(r.error) <= 0.1)
                                    / far_s if far_s else None)
    return out


def by_class(rows: list[CallRow], key: str = "class") -> list[dict]:
    """Per kernel class (or per variant, key="variant"): calls, measured and predicted totals,
    error, share of time within +-10% and +-15%."""
    name = (lambda r: r.kernel_class) if key == "class" else (lambda r: f"{r.family}/{r.variant}")
    out = []
    for cls in sorted({name(r) for r in rows}):
        rs = [r for r in rows if name(r) == cls]
        m = metrics(rs)
        out.append({key: cls, "calls": len(rs), "measured_ms": m["measured_s"] * 1e3,
                    "predicted_ms": m["predicted_s"] * 1e3, "error_pct": m["e2e_error_pct"],
                    "share_of_time_pct": 0.0, "acc10_time_pct": m["acc10_time_pct"],
                    "acc15_time_pct": m["acc15_time_pct"]})
    total = sum(r["measured_ms"] for r in out)
    for r in out:
        r["share_of_time_pct"] = 100.0 * r["measured_ms"] / total
    return out


def optimization_effect(base_rows, opt_rows, base_opt, opt_opt) -> list[dict]:
    """Per switch that differs between two runs of one graph: the measured and predicted
    speed-up of the kernels of the ops that switch decided (as the plan recorded which rule
    chose each call), baseline time / optimized time."""
    out = []
    for sw in SWITCHES:
        if getattr(base_opt, sw) == getattr(opt_opt, sw):
            continue
        ops = {r.op_index for rows in (base_rows, opt_rows) for r in rows if r.switch == sw}
        ops = {i for i in ops
               if {r.variant for r in base_rows if r.op_index == i}
               != {r.variant for r in opt_rows if r.op_index == i}}
        if not ops:
            continue
        tot = lambda rows, key: sum(getattr(r, key) for r in rows if r.op_index in ops)
        mb, mo = tot(base_rows, "measured_s"), tot(opt_rows, "measured_s")
        pb, po = tot(base_rows, "predicted_s"), tot(opt_rows, "predicted_s")
        out.append({"optimization": sw, "baseline": getattr(base_opt, sw),
                    "optimized": getattr(opt_opt, sw), "ops": len(ops),
                    "measured_baseline_ms": mb * 1e3, "measured_optimized_ms": mo * 1e3,
                    "measured_speedup": mb / mo if mo else float("nan"),
                    "predicted_baseline_ms": pb * 1e3, "predicted_optimized_ms": po * 1e3,
                    "predicted_speedup": pb / po if po else float("nan")})
    return out


def effect(runs: list) -> list[dict]:
    """The optimizations' effect between a run's first --opt (optimized) and second (baseline);
    none with a single --opt."""
    if len(runs) < 2:
        return []
    return optimization_effect(runs[1]["rows"], runs[0]["rows"], runs[1]["options"],
                               runs[0]["options"])


def repredict(ctx: dict, runs: list, profile) -> tuple[list, list]:
    """Stored runs (sdsim/validation/report.py load) with every call predicted again by
    `profile`: the measured times stay, the predictions follow today's model and coefficients
    (after `sdsim calibrate --refit`, say). Returns (runs, optimization effect)."""
    from dataclasses import replace

    from sdsim.backends.trace import trace_component
    from sdsim.cost.predict import predict_component
    from sdsim.model.presets import load_model_config

    # runs stored before the context named its model ran the default, SD1.4
    cfg = load_model_config(ctx.get("model") or "sd14")
    graph = trace_component(ctx["component"], cfg, ctx["resolution"], ctx["batch"],
                            ctx["precision"])
    out = []
    for run in runs:
        pred = {c.call.identity: c for c in predict_component(
            graph, 1, profile, run["options"], ctx["precision"]).kernels}
        if set(pred) != {r.identity for r in run["rows"]}:
            raise SdsimError("the stored run's calls are not today's plan of the same "
                             f"{ctx['component']} (--opt {run['opt']}); it cannot be predicted "
                             "again")
        rows = [replace(r, bound=pred[r.identity].time.bound,
                        predicted_s=pred[r.identity].time.total_s, why=pred[r.identity].time.why)
                for r in run["rows"]]
        out.append(dict(run, rows=rows, metrics=metrics(rows)))
    return out, effect(out)
