"""The bench harness: each kernel variant's record (sdsim.kernels) at each of its bench shapes,
run on a device through the record's own launcher, timed by OpenCL events and checked against
the record's float64 reference.

A check passes when max|out - ref| <= atol + rel * max|ref| with the record's tolerance for the
storage precision. Uploads, the load-time weight preparation and read-backs are not timed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdsim import kernels
from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Variant, accepted_args, shape_key

#: the bench sizes every record defines: tiny (Oclgrind), quick (CI, a CPU), full (SD1.4 shapes)
SIZES = ("tiny", "quick", "full")


def storage(a, precision: str) -> str:
    """How a record's host input goes up: integer arrays as int32, float64 arrays as fp32
    (timesteps), float32 arrays in the storage precision."""
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return "int32"
    return "fp32" if a.dtype == np.float64 else precision


def stored_inputs(inputs: dict, precision: str) -> tuple[list, dict]:
    """A record's host inputs (make_inputs) as the device holds them after `upload`: the
    (ins, params) a simulation (Variant.simulate) starts from."""
    from sdsim.cl.runtime import DTYPES

    def held(a):
        return np.asarray(a).astype(DTYPES[storage(a, precision)])
    return [held(a) for a in inputs["ins"]], {k: held(v) for k, v in inputs["params"].items()}


def upload(rt, record: Variant, shape: dict, inputs: dict, precision: str):
    """Device buffers for one run: (ins, params after the record's weight preparation, out),
    each input in its `storage`."""
    def up(a, what):
        return rt.to_device(np.asarray(a), storage(a, precision), what)

    ins = [up(a, f"{record.key} input {i}") for i, a in enumerate(inputs["ins"])]
    params = {k: up(v, f"{record.key} {k}") for k, v in inputs["params"].items()}
    if record.prepare is not None:
        params = record.prepare(rt, shape, params, precision)
    out = rt.alloc(record.operands(shape)[2], precision, f"{record.key} output")
    return ins, params, out


@dataclass
class BenchCase:
    """One record at one shape and storage precision."""

    record: Variant
    shape: dict
    precision: str

    @property
    def family(self) -> str:
        return self.record.family

    @property
    def variant(self) -> str:
        return self.record.name

    @property
    def cost(self) -> list[KernelCost]:
        return self.record.costs(self.precision, **self.shape)

    @property
    def tolerance(self) -> tuple[float, float]:
        return self.record.tolerance[self.precision]

    def make_inputs(self, rng: np.random.Generator) -> dict:
        return self.record.make_inputs(self.shape, rng)

    def run(self, rt, inputs: dict):
        """(output as float32 host array, events of the timed dispatches)."""
        ins, params, out = upload(rt, self.record, self.shape, inputs, self.precision)
        events = self.record.launch(rt, self.shape, ins, params, out, self.precision)
        n = self.record.operands(self.shape)[2]
        return rt.from_device(out, (n,), self.precision, wait_for=events), events

    def reference(self, inputs: dict) -> np.ndarray:
        return self.record.reference(self.shape, inputs, self.precision)

    def check(self, out: np.ndarray, ref: np.ndarray) -> tuple[float, bool]:
        """Max abs error and whether it is within tolerance (size mismatch or NaN fails)."""
        if out.size != ref.size:
            return float("inf"), False
        ref = ref.reshape(-1)
        err = float(np.max(np.abs(out.reshape(-1).astype(np.float64) - ref))) if ref.size else 0.0
        atol, rel = self.tolerance
        bound = atol + rel * (float(np.max(np.abs(ref))) if ref.size else 0.0)
        return err, bool(np.isfinite(err) and err <= bound)


def all_cases(size: str, families=None, precisions=("fp32", "fp16")) -> list[BenchCase]:
    """Every record at its `size` bench shapes, filtered by family or family/variant names."""
    cases = []
    for p in precisions:
        for r in kernels.records():
            if families and r.family not in families and r.key not in families:
                continue
            cases += [BenchCase(r, dict(s), p) for s in r.bench.get(size, ())]
    return cases


def time_events(rt, launch, repeat: int, cold_keeping=None, gated: bool = True,
                lead: int = 0, before=None) -> np.ndarray:
    """Seconds of each dispatch (columns) in `repeat` runs (rows) of `launch()` (which enqueues
    and returns its events), each waited for; event times, not wall time. With `cold_keeping`
    (buffers), every run starts after `rt.flush_caches(cold_keeping)` (not timed). `gated`: each
    run's flush and dispatches are enqueued behind a gate (Runtime.gated) and run back to back,
    as a pipeline's do when `sdsim validate` times them; ungated, the device starts each dispatch
    as the host enqueues it, and on an H200 a small kernel fed that way measures 7-50% longer
    (reports/pipeline-timing-nvidia-h200-text_encoder-fp32.md). `lead`: that many small
    dispatches run between the flush and the launch (`Runtime.lead`), so the launch sits deep in
    a stream as a pipeline's dispatch does; `before` (a callable that enqueues dispatches), in
    place of the lead, the stream the launch follows (benchmarks/dispatch_context.py)."""
    import contextlib

    runs = []
    for _ in range(repeat):
        with rt.gated() if gated else contextlib.nullcontext():
            if cold_keeping is not None:
                rt.flush_caches(cold_keeping)
            if before is None:
                rt.lead(lead)
            else:
                before()
            events = launch()
        rt.finish()
        runs.append([(e.profile.end - e.profile.start) * 1e-9 for e in events])
    return np.array(runs)


def time_launches(rt, record: Variant, shape: dict, buffers: tuple, precision: str,
                  repeat: int, cold: bool = False, gated: bool = True,
                  lead: int = 0) -> np.ndarray:
    """time_events of a record's launcher on uploaded buffers (ins, params, out); `cold`: from
    the pipeline's cache state (weights evicted, activation inputs cached); `lead`: see
    time_events."""
    return time_events(rt, lambda: record.launch(rt, shape, *buffers, precision), repeat,
                       buffers[0] if cold else None, gated, lead)


def run_case(rt, case: BenchCase, repeat: int = 3, seed: int = 0, cache: dict | None = None,
             max_timed_s: float | None = None) -> dict:
    """Run `case` once for checking, `repeat` more times for timing; one flat result record.
    With `cache` (a dict), the inputs and reference of records that share their `make_inputs`
    and `reference` functions (the conv2d variants) are made once per shape and precision.
    With `max_timed_s`, the timed runs are cut to what fits in that many seconds at the check
    run's time; a check run longer than that is the timing itself (its events, `repeat` 0). The
    record then says how many timed runs there were (`repeat`)."""
    key = (case.record.make_inputs, case.record.reference, shape_key(case.shape),
           case.precision, seed)
    if cache is not None and key in cache:
        inputs, ref = cache[key]
    else:
        inputs = case.make_inputs(np.random.default_rng(seed))
        ref = case.reference(inputs)
        if cache is not None:
            cache[key] = inputs, ref
    out, events = case.run(rt, inputs)
    err, ok = case.check(out, ref)
    repeat = max(1, repeat)
    first = [(e.profile.end - e.profile.start) * 1e-9 for e in events]
    if max_timed_s is not None and sum(first) * repeat > max_timed_s:
        repeat = int(max_timed_s / sum(first))
    if repeat:
        buffers = upload(rt, case.record, case.shape, inputs, case.precision)
        times = time_launches(rt, case.record, case.shape, buffers, case.precision, repeat)
    else:
        times = np.array([first])
    t = float(np.median(times.sum(axis=1)))
    cost = case.cost
    flops = sum(c.flops for c in cost)
    nbytes = sum(c.dram_bytes for c in cost)
    return {
        "family": case.family,
        "variant": case.variant,
        "shape": describe(case.shape),
        "precision": case.precision,
        "time_s": t,
        "flops_per_s": flops / t if t > 0 else 0.0,
        "bytes_per_s": nbytes / t if t > 0 else 0.0,
        "max_abs_err": err,
        "ok": ok,
        **({"repeat": repeat} if max_timed_s is not None else {}),
    }


def describe(shape: dict) -> str:
    """A shape as one short line: `batch=1 cin=16 ... in=1x8x5x5,1x8x1x1 out=1x8x5x5`."""
    def fmt(v):
        if isinstance(v, (tuple, list)):
            if v and isinstance(v[0], (tuple, list)):
                return ",".join(fmt(x) for x in v)
            return "x".join(str(x) for x in v)
        return str(v)

    names = {"in_shapes": "in", "out_shape": "out"}
    return " ".join(f"{names.get(k, k)}={fmt(v)}" for k, v in shape.items())


# --- the SD suite: every variant at the model's own layer shapes -------------------------------
#: op families, in report order (families not listed follow, alphabetically)
SUITE_ORDER = ("conv2d", "attention", "linear", "group_norm", "layer_norm", "gelu", "elementwise")


@dataclass
class ModelShape:
    """One distinct (family, op shape) of a traced component: the op kind, the shape as
    `op_shape` gives it, how many of the component's ops have it, and the variants that can run
    it (the one `--opt paper` lowers it to, its alternatives, the baseline)."""

    family: str
    kind: str
    shape: dict
    calls: int
    candidates: list          # Variant records, baseline first
    baseline: str             # variant name of the family's baseline for this op
    paper: str                # variant name `--opt paper` lowers it to

    def variants(self, families=None) -> list:
        """The candidates `families` (family or family/variant names) asks for, and the
        baseline (always: the speed-ups are over it)."""
        return [r for i, r in enumerate(self.candidates)
                if not families or i == 0 or r.family in families or r.key in families]

    def label(self) -> str:
        """The shape as one line: the op's attrs, plus its tensor shapes where the record's
        cost formula reads them (elementwise ops)."""
        tensors = {"in_shapes", "out_shape"}
        keep = tensors & set(accepted_args(self.candidates[0].cost, self.shape))
        return describe({k: v for k, v in self.shape.items() if k not in tensors or keep})


def _runs(record: Variant, shape: dict, precision: str) -> bool:
    """Whether the record's cost formula takes the shape (Winograd rejects k != 3 or a stride)."""
    try:
        record.costs(precision, **shape)
    except (ValueError, KeyError, TypeError, SdsimError):
        return False
    return True


def _alternatives(family: str) -> list[Variant]:
    """The records of `family` that are alternatives to one another: those a switch with two or
    more values in the family selects (conv3x3, attention, groupnorm, gelu). Elementwise records
    are each their own op, and the linear family's `tiled_gelu` computes a GELU on top (it is only
    ever the lowering's own choice)."""
    recs = kernels.records(family)
    switches = [r.option[0] for r in recs if r.option]
    return [r for r in recs if r.option and switches.count(r.option[0]) >= 2]


#: arguments a component passes to an op at call time that the trace does not record (the
#: OpenCL backend gets them from the call): {op kind: cfg -> extra shape keys}
_CALL_ARGS = {
    "timestep_embedding": lambda cfg: {"flip_sin_to_cos": cfg.unet.flip_sin_to_cos,
                                       "shift": float(cfg.unet.freq_shift)},
}


def model_shapes(model_cfg, component: str = "unet", resolution: int = 512, batch: int = 2,
                 precision: str = "fp32") -> list[ModelShape]:
    """The distinct (family, op shape) pairs the lowering produces for one call of `component`,
    each with its number of calls and the variants that can run it, in trace order of first use.
    Ops the lowering fuses into a neighbour (no kernel of their own) are left out."""
    from sdsim.backends.trace import trace_component
    from sdsim.lower.options import SETS
    from sdsim.lower.plan import lower_graph, op_shape

    graph = trace_component(component, model_cfg, resolution, batch, precision)
    paper = {c.op_index: (c.family, c.variant)
             for c in lower_graph(graph, SETS["paper"], precision)}
    none_opt = SETS["none"]
    groups: dict = {}
    for op in graph.ops:
        if op.index not in paper:
            continue
        family, chosen = paper[op.index]
        shape = op_shape(op)
        if op.kind in _CALL_ARGS:
            shape.update(_CALL_ARGS[op.kind](model_cfg))
        key = (family, op.kind, shape_key(shape))
        if key in groups:
            groups[key].calls += 1
            continue
        recs = [kernels.get(family, chosen)] + [r for r in _alternatives(family)
                                               if r.name != chosen and _runs(r, shape, precision)]
        # the baseline: the record the all-baselines set `none` selects in this family, if it
        # can run the op (conv2d direct, attention naive, group_norm naive, gelu standalone),
        # else the lowering's choice (elementwise, linear)
        base = next((r for r in recs if r.option and
                     getattr(none_opt, r.option[0], None) == r.option[1]), recs[0])
        recs = [base] + sorted((r for r in recs if r is not base), key=lambda r: r.name)
        groups[key] = ModelShape(family, op.kind, shape, 1, recs, base.name, chosen)
    return list(groups.values())


def roofline_s(record: Variant, shape: dict, precision: str, peak: float, bw: float) -> float:
    """Seconds of the record's dispatches at the roofline (FLOPs at `peak` FLOP/s, bytes at
    `bw` B/s, whichever is longer, per dispatch)."""
    from sdsim.cost.roofline import roofline

    return sum(max(roofline(k, peak, bw)) for k in record.costs(precision, **shape))


def device_peaks(rt, precisions, bandwidth_bytes: int = 256 << 20) -> tuple[dict, float]:
    """({precision: FLOP/s}, B/s) of the device, measured with the calibration microbenchmarks
    (opencl/calibrate.cl): independent multiply-add chains in the storage precision's
    arithmetic, and a streaming float4 copy."""
    from sdsim.calibration import microbench

    items = int(rt.device.max_compute_units) * 16384
    rates = {p: microbench.arithmetic_rate(rt, p, items, 2048) for p in precisions}
    return rates, microbench.bandwidth(rt, bandwidth_bytes)


def select_shapes(points: list[ModelShape], precision: str, peak: float, bw: float,
                  families=None, limit: int | None = None) -> tuple[list, list]:
    """(kept, left out): the shapes of the families asked for (names or family/variant keys),
    by family (SUITE_ORDER) and, within one, heaviest first (calls x the baseline's roofline
    time); with `limit`, only the first `limit` shapes of each family are kept."""
    def wanted(pt):
        return not families or any(r.family in families or r.key in families
                                   for r in pt.candidates)

    def order(pt):
        f = pt.family
        rank = SUITE_ORDER.index(f) if f in SUITE_ORDER else len(SUITE_ORDER)
        return (rank, f, -pt.calls * roofline_s(pt.candidates[0], pt.shape, precision, peak, bw))

    kept, left, seen = [], [], {}
    for pt in sorted((p for p in points if wanted(p)), key=order):
        seen[pt.family] = seen.get(pt.family, 0) + 1
        (kept if limit is None or seen[pt.family] <= limit else left).append(pt)
    return kept, left


def suite_rows(rt, points: list[ModelShape], precision: str, peak: float, bw: float,
               repeat: int = 3, point_budget_s: float = float("inf"),
               budget_s: float = float("inf"), families=None, progress=None,
               start: float | None = None) -> list[dict]:
    """Run every candidate variant of every model shape (checked, then timed); one row per
    (variant, shape), skipped ones included with the reason. `peak` (FLOP/s) and `bw` (B/s) give
    the fractions; a case whose time at 5% of the roofline exceeds `point_budget_s` is skipped,
    as is everything left once `budget_s` seconds have passed since `start` (a
    `time.perf_counter()` value; default: now). `families` filters by family or family/variant
    (the baseline always runs, for the speed-ups). `progress(case)` is called before each case.
    A case the device cannot run (an allocation over its limit, too little local memory) is a
    row saying why."""
    import time

    import pyopencl as cl

    from sdsim.calibration.sweep import pessimistic_s

    t0 = time.perf_counter() if start is None else start
    rows = []
    for pt in points:
        recs = pt.variants(families)
        cache: dict = {}
        shape_rows = []
        for r in recs:
            row = {"family": pt.family, "variant": r.name, "op": pt.kind, "shape": pt.label(),
                   "precision": precision, "calls": pt.calls, "time_s": None,
                   "flops_per_s": None, "frac_peak": None, "bytes_per_s": None, "frac_bw": None,
                   "bound": None, "max_abs_err": None, "ok": None, "repeat": 0, "speedup": None,
                   "fastest": False,
                   "baseline": pt.baseline, "paper": r.name == pt.paper, "status": "ran"}
            cost = r.costs(precision, **pt.shape)
            flops = sum(k.flops for k in cost)
            nbytes = sum(k.dram_bytes for k in cost)
            row["bound"] = "compute" if flops / peak >= nbytes / bw else "memory"
            if progress:
                progress(BenchCase(r, pt.shape, precision))
            if time.perf_counter() - t0 > budget_s:
                row["status"] = f"skipped: --budget-s {budget_s:g} s spent"
            elif (t5 := pessimistic_s(r, pt.shape, precision, peak, bw)) > point_budget_s:
                row["status"] = (f"skipped: {t5:.3g} s at 5% of roofline > "
                                 f"{point_budget_s:g} s per point")
            else:
                try:
                    res = run_case(rt, BenchCase(r, pt.shape, precision), repeat=repeat,
                                   cache=cache, max_timed_s=point_budget_s)
                except (SdsimError, cl.Error, MemoryError) as e:
                    row["status"] = f"not run: {(str(e).splitlines() or [type(e).__name__])[0]}"
                else:
                    row.update(time_s=res["time_s"], flops_per_s=res["flops_per_s"],
                               bytes_per_s=res["bytes_per_s"],
                               max_abs_err=res["max_abs_err"], ok=res["ok"], repeat=res["repeat"],
                               status="ran" if res["ok"] else "outside tolerance")
                    row["frac_peak"] = res["flops_per_s"] / peak
                    if row["bound"] == "memory":
                        row["frac_bw"] = res["bytes_per_s"] / bw
            shape_rows.append(row)
        # the fastest variant, only where every variant ran and passed its check
        base = shape_rows[0]
        if all(x["ok"] for x in shape_rows):
            min(shape_rows, key=lambda x: x["time_s"])["fastest"] = True
        for x in shape_rows:
            if base["ok"] and x["ok"] is not None and x["time_s"] > 0:
                x["speedup"] = base["time_s"] / x["time_s"]
        rows += shape_rows
    return rows


def suite_summary(rows: list[dict], peak: float, bw: float) -> list[dict]:
    """Per family and variant: shapes run out of those it applies to, calls covered, seconds per
    model call (sum of calls x time), the time-weighted (by calls) fractions of peak and of
    bandwidth (total FLOPs or bytes over total time), and how many shapes it was fastest at;
    plus, per family and overall, the same for the fastest variant at each shape."""
    out = []

    def agg(family, variant, sel, shapes):
        ran = [r for r in sel if r["time_s"] is not None]
        t = sum(r["calls"] * r["time_s"] for r in ran)
        flops = sum(r["calls"] * r["flops_per_s"] * r["time_s"] for r in ran)
        nbytes = sum(r["calls"] * r["bytes_per_s"] * r["time_s"] for r in ran)
        out.append({"family": family, "variant": variant, "shapes_run": len(ran),
                    "shapes": shapes, "calls": sum(r["calls"] for r in ran),
                    "time_per_call_s": t, "frac_peak": flops / (t * peak) if t else None,
                    "frac_bw": nbytes / (t * bw) if t else None,
                    "fastest_at": sum(r["fastest"] for r in sel)})

    fams = list(dict.fromkeys(r["family"] for r in rows))
    for f in fams:
        fr = [r for r in rows if r["family"] == f]
        nshapes = len({(r["op"], r["shape"]) for r in fr})
        for v in dict.fromkeys(r["variant"] for r in fr):
            sel = [r for r in fr if r["variant"] == v]
            agg(f, v, sel, len(sel))
        if len({r["variant"] for r in fr}) > 1:
            agg(f, "(fastest)", [r for r in fr if r["fastest"]], nshapes)
    agg("all", "(fastest)", [r for r in rows if r["fastest"]],
        len({(r["family"], r["op"], r["shape"]) for r in rows}))
    return out
