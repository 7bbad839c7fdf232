"""The three calls of a text-to-image run on an OpenCL device, for the pipeline's loop.

Each call (text encoder, UNet, VAE decoder) runs through a ComponentRunner: traced at the call's
shape, lowered with the run's optimizations, its weights uploaded once and kept for every later
call of the same shape. Every call's kernel time (the sum of its dispatches' OpenCL event times)
and wall time (upload, run, read back; the first call also builds kernels and uploads weights)
are kept per component, so a run can be set beside the cost model's prediction of the same calls.
Every call after a component's first runs gated (`ComponentRunner.run(gated=True)`): its
dispatches back to back, as a native host feeds them; a component's first call (weight uploads)
runs as the host enqueues it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdsim.backends.opencl.run import ComponentRunner
from sdsim.backends.planned import PlannedStages
from sdsim.model import components


@dataclass
class StageTimes:
    """Measured time of one component over a run: calls, kernel seconds, wall seconds."""

    component: str
    graph: object                  # the traced graph of one call (for the prediction)
    calls: int = 0
    kernel_s: float = 0.0
    wall_s: float = 0.0
    first_wall_s: float = 0.0      # the first call alone: kernel builds and weight uploads
    nonfinite: bool = False
    per_call: list = field(default_factory=list)


class OpenCLStages(PlannedStages):
    """Text encoder, UNet and VAE decoder on `rt` with the kernel plan of `opt`."""

    name = "opencl"

    def __init__(self, rt, cfg, params: dict, opt, precision: str, watch: bool = False,
                 progress=None):
        self.rt, self.cfg, self.params, self.opt, self.precision = rt, cfg, params, opt, precision
        self.watch = watch      # read every op's output back to name the first inf/NaN
        self.progress = progress   # a sdsim.progress.Progress told of each component's set-up
        self.runners: dict[tuple, ComponentRunner] = {}
        self.times: dict[str, StageTimes] = {}

    def _run(self, name: str, inputs: list, size, batch: int) -> np.ndarray:
        key = (name, size, batch)
        runner = self.runners.get(key)
        if runner is None:
            if self.progress is not None:
                self.progress.phase(f"{name}: lowering, building kernels and uploading weights "
                                    f"on {self.rt.device.name.strip()}")
            folder = components.COMPONENTS[name].folder
            runner = ComponentRunner(self.rt, name, self.cfg, self.opt, self.precision, size,
                                     batch, weights=self.params[folder], watch=self.watch)
            self.runners[key] = runner
        run = runner.run(inputs, gated=True)
        t = self.times.setdefault(name, StageTimes(name, runner.graph))
        kernel = sum(s for _, s in run.timings)
        t.calls += 1
        t.kernel_s += kernel
        t.wall_s += run.wall_s
        t.first_wall_s = t.first_wall_s or run.wall_s
        t.per_call.append(kernel)
        t.nonfinite = t.nonfinite or not np.isfinite(run.output).all()
        return run.output

    def nonfinite_report(self) -> str | None:
        """The first component whose output held inf/NaN, and the op when watched."""
        for name in components.TEXT_TO_IMAGE:
            where = [r.backend.first_nonfinite for key, r in self.runners.items()
                     if key[0] == name and r.backend.first_nonfinite]
            if where:
                op, scope = where[0]
                return f"{name}: {op} in {scope or '<top>'}"
            t = self.times.get(name)
            if t is not None and t.nonfinite:
                return f"{name}: its output (rerun with --find-overflow to name the op)"
        return None


def time_rows(stages: OpenCLStages, profile=None) -> list[dict]:
    """Per component and in total: calls, measured kernel and wall seconds, and, with a device
    profile, the cost model's prediction of the same calls (same graphs, same plan) and its error
    against the kernel time."""
    from sdsim.cost.predict import predict_component

    rows = []
    for name in components.TEXT_TO_IMAGE:
        t = stages.times.get(name)
        if t is None:
            continue
        row = {"component": name, "calls": t.calls, "kernel_s": t.kernel_s, "wall_s": t.wall_s,
               "first_call_wall_s": t.first_wall_s}
        if profile is not None:
            pred = predict_component(t.graph, t.calls, profile, stages.opt, stages.precision)
            row["predicted_s"] = pred.latency_per_call * t.calls
        rows.append(row)
    total = {"component": "total", "calls": sum(r["calls"] for r in rows),
             **{k: sum(r[k] for r in rows)
                for k in ("kernel_s", "wall_s", "first_call_wall_s", "predicted_s")
                if rows and k in rows[0]}}
    for r in rows + [total]:
        if "predicted_s" in r:
            r["error_pct"] = 100.0 * (r["predicted_s"] / r["kernel_s"] - 1.0)
    return rows + [total]
