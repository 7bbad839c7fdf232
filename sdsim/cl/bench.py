"""The bench harness: every family module in sdsim/cl provides `bench_cases(quick) -> [BenchCase]`;
`run_case` runs one on a device, times it by OpenCL events and checks it against its reference.

A BenchCase's `run(rt, inputs)` does the uploads itself and returns the output as a float32 host
array plus the events of the timed dispatches (uploads and read-backs are not timed). Its
`reference(inputs)` is independent float64 NumPy math. `tolerance = (atol, rel)` passes when
max|out - ref| <= atol + rel * max|ref|, and each module says why its numbers are what they are.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sdsim.kernels import KernelCost


@dataclass
class BenchCase:
    family: str                       # e.g. "conv2d" (the sdsim.kernels family)
    variant: str                      # e.g. "winograd_f4"
    shape: dict                       # the op's shape kwargs (as given to sdsim.kernels.costs)
    precision: str                    # "fp32" | "fp16"
    make_inputs: Callable[[np.random.Generator], dict]
    run: Callable                     # (rt, inputs) -> (float32 ndarray, [cl.Event])
    reference: Callable[[dict], np.ndarray]   # inputs -> float64 ndarray
    tolerance: tuple[float, float]    # (atol, rel to max|ref|)
    cost: list[KernelCost] = field(default_factory=list)

    def check(self, out: np.ndarray, ref: np.ndarray) -> tuple[float, bool]:
        """Max abs error and whether it is within tolerance (shape mismatch or NaN fails)."""
        if out.shape != ref.shape:
            return float("inf"), False
        err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
        atol, rel = self.tolerance
        bound = atol + rel * (float(np.max(np.abs(ref))) if ref.size else 0.0)
        return err, bool(np.isfinite(err) and err <= bound)


def family_modules() -> list:
    """The sdsim.cl modules that provide bench cases."""
    import sdsim.cl as pkg

    mods = []
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if m.name in ("runtime", "bench") or m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"sdsim.cl.{m.name}")
        if hasattr(mod, "bench_cases"):
            mods.append(mod)
    return mods


def all_cases(quick: bool, families=None, precisions=("fp32", "fp16")) -> list[BenchCase]:
    """Every bench case of every family module, filtered by family name and precision."""
    cases = []
    for mod in family_modules():
        for c in mod.bench_cases(quick):
            if families and c.family not in families and mod.__name__.rsplit(".", 1)[1] \
                    not in families:
                continue
            if c.precision in precisions:
                cases.append(c)
    return cases


def run_case(rt, case: BenchCase, repeat: int = 3, seed: int = 0) -> dict:
    """Run `case` once for checking, `repeat` more times for timing; one flat result record."""
    rng = np.random.default_rng(seed)
    inputs = case.make_inputs(rng)
    out, events = case.run(rt, inputs)
    ref = case.reference(inputs)
    err, ok = case.check(out, ref)
    times = []
    for _ in range(max(1, repeat)):
        _, events = case.run(rt, inputs)
        times.append(sum((e.profile.end - e.profile.start) for e in events) * 1e-6)
    t = float(np.median(times))
    flops = sum(c.flops for c in case.cost)
    nbytes = sum(c.dram_bytes for c in case.cost)
    return {
        "family": case.family,
        "variant": case.variant,
        "shape": " ".join(f"{k}={_fmt(v)}" for k, v in case.shape.items() if k != "precision"),
        "precision": case.precision,
        "time_ms": t,
        "gflops": flops / (t * 1e6) if t > 0 else 0.0,
        "gbps": nbytes / (t * 1e6) if t > 0 else 0.0,
        "max_abs_err": err,
        "ok": ok,
    }


def _fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return "x".join(str(x) for x in v)
    return str(v)
