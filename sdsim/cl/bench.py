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
from sdsim.kernels import KernelCost, Variant

#: the bench sizes every record defines: tiny (Oclgrind), quick (CI, a CPU), full (SD1.4 shapes)
SIZES = ("tiny", "quick", "full")


def upload(rt, record: Variant, shape: dict, inputs: dict, precision: str):
    """Device buffers for one run: (ins, params after the record's weight preparation, out).
    Integer arrays go up as int32, float64 arrays as fp32 (timesteps), float32 arrays in the
    storage precision."""
    def up(a, what):
        a = np.asarray(a)
        if a.dtype.kind in "iu":
            return rt.to_device(a, "int32", what)
        return rt.to_device(a, "fp32" if a.dtype == np.float64 else precision, what)

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


def time_launches(rt, record: Variant, shape: dict, buffers: tuple, precision: str,
                  repeat: int) -> np.ndarray:
    """Seconds of each dispatch (columns) in `repeat` timed launches (rows) of a record on
    uploaded buffers (ins, params, out), each waited for; event times, not wall time."""
    runs = []
    for _ in range(repeat):
        events = record.launch(rt, shape, *buffers, precision)
        rt.finish()
        runs.append([(e.profile.end - e.profile.start) * 1e-9 for e in events])
    return np.array(runs)


def run_case(rt, case: BenchCase, repeat: int = 3, seed: int = 0) -> dict:
    """Run `case` once for checking, `repeat` more times for timing; one flat result record."""
    rng = np.random.default_rng(seed)
    inputs = case.make_inputs(rng)
    out, _ = case.run(rt, inputs)
    err, ok = case.check(out, case.reference(inputs))
    buffers = upload(rt, case.record, case.shape, inputs, case.precision)
    times = time_launches(rt, case.record, case.shape, buffers, case.precision, max(1, repeat))
    t = float(np.median(times.sum(axis=1))) * 1e3
    cost = case.cost
    flops = sum(c.flops for c in cost)
    nbytes = sum(c.dram_bytes for c in cost)
    return {
        "family": case.family,
        "variant": case.variant,
        "shape": describe(case.shape),
        "precision": case.precision,
        "time_ms": t,
        "gflops": flops / (t * 1e6) if t > 0 else 0.0,
        "gbps": nbytes / (t * 1e6) if t > 0 else 0.0,
        "max_abs_err": err,
        "ok": ok,
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
