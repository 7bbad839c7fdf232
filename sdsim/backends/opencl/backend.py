"""OpenCLBackend: the model's ops run on a device, one lowered op at a time, every dispatch timed.

The backend is driven by the kernel plan of the same component (trace -> lowering): the model calls
its ops in execution order, the i-th call is op i of the traced graph, and the plan's calls for op i
say which variant runs and which kernel identity each dispatch has. So a measurement and a
prediction share `KernelCall.identity` ("unet/down_blocks.0.resnets.0.conv1:wino_gemm_f4"). Each
op runs through its variant record's launcher (sdsim/kernels), the code `sdsim bench` checks.

Memory: weights are uploaded once (and Winograd-transformed once per variant) when first used.
Activation buffers come from a pool keyed by byte size; a tensor's buffer goes back to the pool
after the last op that reads it (live ranges from the traced graph), so a UNet call reuses a few
dozen buffers instead of allocating one per tensor. Workspaces a kernel function allocates for
itself (Winograd tiles, attention scores) are released when it returns.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from sdsim import kernels
from sdsim.cl.runtime import DTYPES
from sdsim.errors import SdsimError
from sdsim.lower.plan import op_shape
from sdsim.backends.planned import PlannedOps


@dataclass
class CLTensor:
    """A device tensor: buffer, shape, storage dtype ("fp32" | "fp16" | "int32"), traced id."""

    buf: object
    shape: tuple
    dtype: str
    tid: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


_ITEMSIZE = {"fp32": 4, "fp16": 2, "int32": 4}


class BufferPool:
    """Device buffers reused by exact byte size."""

    def __init__(self, rt):
        self.rt = rt
        self.free: dict[int, list] = defaultdict(list)
        self.allocated = 0      # buffers created
        self.bytes = 0          # bytes created

    def get(self, nbytes: int, what: str):
        nbytes = max(4, int(nbytes))
        if self.free[nbytes]:
            return self.free[nbytes].pop()
        self.rt.check_alloc(nbytes, what)
        self.allocated += 1
        self.bytes += nbytes
        return cl.Buffer(self.rt.ctx, cl.mem_flags.READ_WRITE, nbytes)

    def put(self, buf) -> None:
        self.free[buf.size].append(buf)


class OpenCLBackend(PlannedOps):
    """Runs one component's ops on `rt` following `plan` (lower_graph of `graph`)."""

    name = "opencl"

    def __init__(self, rt, graph, plan, weights, precision: str = "fp32", pool=None,
                 watch: bool = False):
        super().__init__()
        if precision not in ("fp32", "fp16"):
            raise SdsimError(f"precision must be fp32 or fp16, not {precision!r}")
        self.rt, self.graph, self.precision = rt, graph, precision
        self.weights = weights
        self.pool = pool or BufferPool(rt)
        self.calls: dict[int, list] = defaultdict(list)
        for c in plan:
            self.calls[c.op_index].append(c)
        self.last_use: dict[int, int] = {}
        for op in graph.ops:
            for t in op.inputs:
                self.last_use[t.id] = op.index
        self.keep = {t.id for t in graph.outputs}
        self.events: list[tuple] = []     # (KernelCall, cl.Event)
        self._wcache: dict[tuple, object] = {}
        self._live: dict[int, CLTensor] = {}
        self._i = 0
        # with `watch`, every op's output is read back until one holds inf/NaN: (kind, scope)
        self.watch = watch
        self.first_nonfinite: tuple | None = None

    def reset(self) -> None:
        """Start a new run of the component: op counter and events cleared, activations back in
        the pool; weights stay uploaded."""
        self.rt.finish()
        for t in self._live.values():
            self.pool.put(t.buf)
        self._live.clear()
        self.events = []
        self._i = 0

    # --- tensors and weights ---------------------------------------------------------------
    def upload(self, array, spec) -> CLTensor:
        """A graph input (a traced TensorSpec) copied to the device."""
        dtype = spec.dtype if spec.dtype in ("int32", "fp32") else self.precision
        host = np.ascontiguousarray(np.asarray(array).reshape(spec.shape),
                                    dtype=np.int32 if dtype == "int32" else DTYPES[dtype])
        buf = self.pool.get(host.nbytes, "input")
        cl.enqueue_copy(self.rt.queue, buf, host)
        t = CLTensor(buf, tuple(spec.shape), dtype, spec.id)
        self._live[spec.id] = t
        return t

    def download(self, t: CLTensor) -> np.ndarray:
        """A device tensor read back as float32 (int32 for ids)."""
        if t.dtype == "int32":
            host = np.empty(t.shape, np.int32)
            cl.enqueue_copy(self.rt.queue, host, t.buf)
            return host
        return self.rt.from_device(t.buf, t.shape, t.dtype)

    def value(self, param, role="w"):
        """The device buffer of a weight (uploaded once, in storage precision)."""
        if param is None:
            return None
        key = (param.name, role)
        buf = self._wcache.get(key)
        if buf is None:
            arr = self.weight(self.weights, param)
            buf = self.rt.to_device(np.asarray(arr, np.float32), self.precision, param.name)
            self._wcache[key] = buf
        return buf

    def _prepared(self, record, shape, params, names):
        """Weights after a variant's load-time transform (cached per weight and variant)."""
        if record.prepare is None:
            return params
        if not names:   # the cache is keyed by the weights' names: without them every op would
            raise SdsimError(f"{record.key}: load-time weight preparation needs the weights' "
                             "names")   # share the first one's prepared weights
        key = (names, record.key)
        p = self._wcache.get(key)
        if p is None:
            p = record.prepare(self.rt, shape, params, self.precision)
            self._wcache[key] = p
        return p

    # --- running one op ----------------------------------------------------------------------
    def _run(self, kind, ins, params=None, pnames=(), **extra):
        i, op, calls = self._next(kind)
        if not calls:  # fused into its producer (GELU in a GEMM epilogue): a renamed view
            src = ins[0]
            out = CLTensor(src.buf, tuple(op.output.shape), src.dtype, op.output.id)
            self._live.pop(src.tid, None)
            self._live[out.tid] = out
            self._release(i)
            return out
        record = kernels.get(calls[0].family, calls[0].variant)
        dtype = self.precision   # every op output, the timestep embedding included
        out = CLTensor(self.pool.get(op.output.numel * _ITEMSIZE[dtype], f"{op.scope} output"),
                       tuple(op.output.shape), dtype, op.output.id)
        shape = dict(op_shape(op), **extra)
        params = self._prepared(record, shape, params or {}, pnames)
        evs = record.launch(self.rt, shape, [t.buf for t in ins], params, out.buf, self.precision)
        if len(evs) != len(calls):
            raise SdsimError(f"{self.graph.name} op {i} ({record.key}): {len(evs)} "
                             f"dispatches ran, the plan has {len(calls)}")
        self.events += list(zip(calls, evs))
        self._live[out.tid] = out
        self._release(i)
        if self.watch and self.first_nonfinite is None \
                and not np.isfinite(self.download(out)).all():
            self.first_nonfinite = (kind, op.scope)
        return out

    def _release(self, i):
        for tid in [t for t, x in self._live.items()
                    if self.last_use.get(t, -1) <= i and t not in self.keep
                    and t != self.graph.ops[i].output.id]:
            self.pool.put(self._live.pop(tid).buf)

    def timings(self) -> list[tuple]:
        """(KernelCall, measured seconds) for every dispatch run so far (waits for the queue)."""
        self.rt.finish()
        return [(c, (e.profile.end - e.profile.start) * 1e-9) for c, e in self.events]

    def reshape(self, x, shape):
        if int(np.prod(shape)) != x.numel:
            raise SdsimError(f"reshape {x.shape} to {shape} in {self.current_scope}")
        return CLTensor(x.buf, tuple(shape), x.dtype, x.tid)
