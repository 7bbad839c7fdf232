"""Run one SD component on an OpenCL device: trace, lower, execute the plan, time every dispatch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdsim.backends.opencl.backend import OpenCLBackend
from sdsim.backends.trace import trace_component
from sdsim.errors import SdsimError
from sdsim.lower.plan import lower_graph
from sdsim.model import components


def random_inputs(name, graph, model_cfg, seed=0) -> list[np.ndarray]:
    """Seeded inputs of a component: N(0,1) latents and context, timestep 500, random token ids."""
    rng = np.random.default_rng(seed)
    out = []
    for spec, role in zip(graph.inputs, components.get(name).input_names):
        if role == "input_ids":
            vocab = model_cfg.text_encoder.vocab_size
            out.append(rng.integers(0, vocab, spec.shape).astype(np.int32))
        elif role == "timestep":
            out.append(np.full(spec.shape, 500.0, np.float32))
        else:
            out.append(rng.standard_normal(spec.shape).astype(np.float32))
    return out


@dataclass
class DeviceRun:
    """One component run: its output, the plan, and (KernelCall, seconds) per dispatch."""

    output: np.ndarray
    plan: list
    timings: list
    wall_s: float
    pool_buffers: int
    pool_bytes: int
    gated: bool = False   # whether the dispatches ran back to back behind a gate (Runtime.gated)


class ComponentRunner:
    """A component prepared on a device (model, plan, weights uploaded on the first run)."""

    def __init__(self, rt, name, model_cfg, opt, precision="fp32", resolution=512, batch=2,
                 weights=None, seed=0, watch=False):
        from sdsim.model.weights import RandomWeights

        comp = components.get(name, components.OPENCL)
        self.name, self.model_cfg = name, model_cfg
        self.graph = trace_component(name, model_cfg, resolution, batch, precision)
        self.plan = lower_graph(self.graph, opt, precision)
        self.model, self.fn = comp.build(model_cfg)
        weights = weights if weights is not None else RandomWeights(self.model, seed)
        self.weights = weights
        self.backend = OpenCLBackend(rt, self.graph, self.plan, weights, precision, watch=watch)
        self.rt, self.seed = rt, seed
        self.runs = 0

    def run(self, inputs=None, gated: bool = False) -> DeviceRun:
        """One call of the component. With `gated`, its dispatches are enqueued behind a gate
        and run back to back once all are enqueued (Runtime.gated); the first run uploads the
        weights with blocking copies and is never gated, nor is a run that watches for inf/NaN
        (it reads every op's output back)."""
        import contextlib
        import time

        F = self.backend
        F.reset()
        inputs = inputs if inputs is not None else random_inputs(self.name, self.graph,
                                                                   self.model_cfg, self.seed)
        t0 = time.perf_counter()
        ins = [F.upload(a, s) for a, s in zip(inputs, self.graph.inputs)]
        gated = gated and self.runs > 0 and not F.watch
        gate = self.rt.gated() if gated else contextlib.nullcontext()
        with gate:
            out = self.fn(F, *ins)
        timings = F.timings()
        wall = time.perf_counter() - t0
        self.runs += 1
        if F.ops_run != len(self.graph.ops):
            raise SdsimError(f"{self.name}: ran {F.ops_run} ops, the trace has "
                             f"{len(self.graph.ops)}")
        return DeviceRun(F.download(out), self.plan, timings, wall, F.pool.allocated,
                         F.pool.bytes, gated=gated and not gate.timed_out)
