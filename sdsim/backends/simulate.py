"""The kernel plan of a text-to-image run in NumPy, each op through its variant's simulation.

`SimBackend` runs one component's ops as the OpenCL backend does (same trace, same lowering, same
op vocabulary: sdsim.backends.planned) but on host arrays, each op through `Variant.simulate`,
which rounds where the kernels round at fp16 storage in the chosen arithmetic (sdsim/sim). It
answers, without a device, what a device with native half arithmetic must compute for a plan
(`sdsim generate --backend sim`), and a device that has half (Intel's OpenCL CPU runtime) is
checked against it. Slow (the GEMM walks K in Python): meant for the tiny model and small sizes.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sdsim import kernels
from sdsim.backends.planned import PlannedOps, PlannedStages
from sdsim.backends.trace import trace_component
from sdsim.errors import SdsimError
from sdsim.lower.plan import lower_graph, op_shape
from sdsim.model import components
from sdsim.precision import ARITHS


class SimBackend(PlannedOps):
    """One component's plan on host arrays: activations and weights stored as float16."""

    name = "sim"

    def __init__(self, graph, plan, weights, arith: str = "fp16"):
        super().__init__()
        if arith not in ARITHS:
            raise SdsimError(f"unknown arithmetic '{arith}'; expected one of {', '.join(ARITHS)}")
        self.graph, self.weights, self.arith = graph, weights, arith
        self.calls: dict[int, list] = defaultdict(list)
        for c in plan:
            self.calls[c.op_index].append(c)
        self._stored: dict[str, np.ndarray] = {}
        self._i = 0

    def reset(self) -> None:
        self._i = 0

    def upload(self, array, spec) -> np.ndarray:
        """A graph input as the device holds it: ids int32, timesteps float32, the rest fp16."""
        dtype = {"int32": np.int32, "fp32": np.float32}.get(spec.dtype, np.float16)
        return np.asarray(array).reshape(spec.shape).astype(dtype)

    def value(self, param):
        """A weight as stored (fp16), once per name."""
        if param is None:
            return None
        arr = self._stored.get(param.name)
        if arr is None:
            arr = np.asarray(self.weight(self.weights, param), np.float32).astype(np.float16)
            self._stored[param.name] = arr
        return arr

    def _run(self, kind, ins, params=None, pnames=(), **extra):
        i, op, calls = self._next(kind)
        if not calls:   # fused into its producer
            return ins[0].reshape(op.output.shape)
        record = kernels.get(calls[0].family, calls[0].variant)
        if record.simulate is None:
            raise SdsimError(f"{record.key} ({op.scope}) has no NumPy simulation; choose another "
                             "variant with --opt")
        shape = dict(op_shape(op), **extra)
        with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN are what half gives
            out = record.simulate(shape, ins, params or {}, self.arith)
        return np.asarray(out, np.float16).reshape(op.output.shape)

    def reshape(self, x, shape):
        if int(np.prod(shape)) != x.size:
            raise SdsimError(f"reshape {x.shape} to {shape} in {self.current_scope}")
        return x.reshape(shape)


class SimStages(PlannedStages):
    """Text encoder, UNet and VAE decoder through the plan of `opt` in NumPy (SimBackend), fp16
    storage in `arith`, for the pipeline's loop (as sdsim.backends.opencl.stages runs them)."""

    name = "sim"

    def __init__(self, cfg, params: dict, opt, arith: str = "fp16"):
        self.cfg, self.params, self.opt, self.arith = cfg, params, opt, arith
        self.runners: dict[tuple, tuple] = {}
        self.nonfinite: list[str] = []

    def _run(self, name: str, inputs: list, size, batch: int) -> np.ndarray:
        key = (name, size, batch)
        if key not in self.runners:
            comp = components.get(name, components.OPENCL)
            graph = trace_component(name, self.cfg, size, batch, "fp16")
            plan = lower_graph(graph, self.opt, "fp16")
            folder = components.COMPONENTS[name].folder
            self.runners[key] = (SimBackend(graph, plan, self.params[folder], self.arith),
                                 comp.build(self.cfg)[1])
        F, fn = self.runners[key]
        F.reset()
        out = fn(F, *[F.upload(a, s) for a, s in zip(inputs, F.graph.inputs)])
        if F.ops_run != len(F.graph.ops):
            raise SdsimError(f"{name}: ran {F.ops_run} ops, the trace has {len(F.graph.ops)}")
        out = out.astype(np.float32)
        if not np.isfinite(out).all() and name not in self.nonfinite:
            self.nonfinite.append(name)
        return out

    def nonfinite_report(self) -> str | None:
        """The first component whose output held inf/NaN."""
        return f"{self.nonfinite[0]}: its output" if self.nonfinite else None
