"""Trace backend: runs the model on shapes only and records the op graph.

Each op becomes an OpRecord with its kind, scope (module path), input/output tensors, attributes
(the shape arguments a kernel needs), parameter bytes, FLOPs and the DRAM bytes it would move if
run unfused. FLOPs follow the PyTorch FLOP counter's convention: matmul-like ops only (conv2d,
linear, the two matmuls of attention), 2 per multiply-add; elementwise work is left to the kernel
cost formulas of sdsim/kernels, which know what each kernel really executes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import prod

from sdsim.errors import SdsimError
from sdsim.kernels import BYTES
from sdsim.model import components
from sdsim.ops import Backend, conv_out_hw, padding4, upsample_size


@dataclass(frozen=True)
class TensorSpec:
    """A tensor known by shape only; `id` ties producers to consumers (a reshape keeps the id)."""

    shape: tuple
    dtype: str
    id: int

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass
class OpRecord:
    index: int
    kind: str
    scope: str
    inputs: list
    output: TensorSpec
    params: list
    param_bytes: int
    flops: int
    bytes_read: int
    bytes_written: int
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """The ops of one component call, in execution order."""

    name: str
    ops: list
    inputs: list
    outputs: list
    tensors: dict
    params: int = 0
    param_bytes: int = 0

    def count(self, kind: str) -> int:
        return sum(op.kind == kind for op in self.ops)

    @property
    def flops(self) -> int:
        return sum(op.flops for op in self.ops)


class TraceBackend(Backend):
    name = "trace"

    def __init__(self, precision: str = "fp32"):
        super().__init__()
        if precision not in BYTES:
            raise SdsimError(f"precision must be one of {', '.join(BYTES)}, got '{precision}'")
        self.precision = precision
        self.itemsize = BYTES[precision]
        self.ops: list[OpRecord] = []
        self.tensors: dict[int, TensorSpec] = {}
        self._ids = itertools.count()

    # --- bookkeeping --------------------------------------------------------------------
    def tensor(self, shape, dtype=None) -> TensorSpec:
        t = TensorSpec(tuple(int(s) for s in shape), dtype or self.precision, next(self._ids))
        self.tensors[t.id] = t
        return t

    def value(self, param):
        return param

    def _record(self, kind, inputs, out_shape, params=(), flops=0, out_dtype=None, **attrs):
        params = [p for p in params if p is not None]
        out = self.tensor(out_shape, out_dtype)
        pbytes = sum(p.numel for p in params) * self.itemsize
        read = sum(t.numel * BYTES.get(t.dtype, 4) for t in inputs) + pbytes
        self.ops.append(OpRecord(
            index=len(self.ops), kind=kind, scope=self.current_scope, inputs=list(inputs), output=out,
            params=[p.name for p in params], param_bytes=pbytes, flops=int(flops), bytes_read=int(read),
            bytes_written=out.numel * BYTES.get(out.dtype, 4), attrs=attrs))
        return out

    @staticmethod
    def _need(cond, msg):
        if not cond:
            raise SdsimError(f"shape error: {msg}")

    # --- ops ----------------------------------------------------------------------------
    def conv2d(self, x, weight, bias, stride=1, padding=0):
        b, cin, h, w = x.shape
        cout, wcin, k, _ = weight.shape
        self._need(cin == wcin, f"conv {weight.name}: input has {cin} channels, weight expects {wcin}")
        ho, wo = conv_out_hw(h, w, k, stride, padding)
        return self._record("conv2d", [x], (b, cout, ho, wo), [weight, bias],
                            flops=2 * b * cout * ho * wo * cin * k * k,
                            batch=b, cin=cin, cout=cout, h=h, w=w, k=k, stride=stride,
                            padding=padding4(padding), bias=bias is not None)

    def linear(self, x, weight, bias=None):
        n, k = weight.shape
        self._need(x.shape[-1] == k, f"linear {weight.name}: input has {x.shape[-1]} features, weight expects {k}")
        m = prod(x.shape[:-1])
        return self._record("linear", [x], x.shape[:-1] + (n,), [weight, bias], flops=2 * m * k * n,
                            m=m, k=k, n=n, bias=bias is not None)

    def group_norm(self, x, groups, weight, bias, eps, act=None):
        b, c = x.shape[:2]
        self._need(c % groups == 0, f"group_norm {weight.name}: {c} channels not divisible by {groups} groups")
        return self._record("group_norm", [x], x.shape, [weight, bias], batch=b, channels=c,
                            hw=prod(x.shape[2:]), groups=groups, eps=eps, act=act)

    def layer_norm(self, x, weight, bias, eps):
        return self._record("layer_norm", [x], x.shape, [weight, bias], rows=prod(x.shape[:-1]),
                            dim=x.shape[-1], eps=eps)

    def attention(self, q, k, v, heads, causal=False):
        b, nq, c = q.shape
        nk = k.shape[1]
        self._need(k.shape == v.shape and k.shape[0] == b and k.shape[2] == c,
                   f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not match")
        self._need(c % heads == 0, f"attention: {c} channels not divisible by {heads} heads")
        return self._record("attention", [q, k, v], q.shape, flops=2 * 2 * b * nq * nk * c,
                            batch=b, heads=heads, nq=nq, nk=nk, head_dim=c // heads, causal=causal)

    def geglu(self, x):
        self._need(x.shape[-1] % 2 == 0, f"geglu: last dim {x.shape[-1]} is odd")
        d = x.shape[-1] // 2
        return self._record("geglu", [x], x.shape[:-1] + (d,), tokens=prod(x.shape[:-1]), dim=d)

    def _eltwise(self, kind, x):
        return self._record(kind, [x], x.shape, numel=x.numel)

    def gelu(self, x):
        return self._eltwise("gelu", x)

    def quick_gelu(self, x):
        return self._eltwise("quick_gelu", x)

    def silu(self, x):
        return self._eltwise("silu", x)

    def add(self, a, b):
        try:
            shape = _broadcast(a.shape, b.shape)
        except ValueError:
            raise SdsimError(f"shape error: add of {a.shape} and {b.shape} in {self.current_scope}") from None
        return self._record("add", [a, b], shape, numel=prod(shape))

    def upsample_nearest2x(self, x, size=None):
        b, c, h, w = x.shape
        oh, ow = upsample_size(h, w, size)
        return self._record("upsample_nearest2x", [x], (b, c, oh, ow), numel=b * c * oh * ow)

    def concat(self, xs, axis=1):
        shape = list(xs[0].shape)
        shape[axis] = sum(t.shape[axis] for t in xs)
        return self._record("concat", list(xs), tuple(shape), numel=prod(shape), axis=axis,
                            parts=[t.shape[axis] for t in xs])

    def nchw_to_nlc(self, x):
        b, c, h, w = x.shape
        return self._record("nchw_to_nlc", [x], (b, h * w, c), numel=x.numel)

    def nlc_to_nchw(self, x, h, w):
        b, n, c = x.shape
        self._need(n == h * w, f"nlc_to_nchw: {n} tokens is not {h}x{w}")
        return self._record("nlc_to_nchw", [x], (b, c, h, w), numel=x.numel)

    def reshape(self, x, shape):
        self._need(prod(shape) == x.numel, f"reshape {x.shape} to {shape}")
        t = TensorSpec(tuple(shape), x.dtype, x.id)
        return t

    def embedding(self, ids, table, position_table=None):
        b, n = ids.shape
        return self._record("embedding", [ids], (b, n, table.shape[1]), [table],
                            numel=b * n * table.shape[1], vocab=table.shape[0])

    def timestep_embedding(self, t, dim, flip_sin_to_cos, shift):
        return self._record("timestep_embedding", [t], (t.shape[0], dim), out_dtype="fp32",
                            numel=t.shape[0] * dim)


def _broadcast(a, b):
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError
        out.append(max(x, y))
    return tuple(out)


def trace_component(name: str, model_cfg, resolution=512, batch: int = 2,
                    precision: str = "fp16", seq_len: int | None = None) -> Graph:
    """Trace one component call at `resolution` (pixels: an int for a square image, or
    (height, width)) and `batch`.

    The UNet and text encoder run at the classifier-free-guidance batch; the VAE at batch // 2
    for the UNet's batch of 2 (one image), i.e. `max(1, batch // 2)` (sdsim.model.components)."""
    comp = components.get(name)
    if comp.spatial:
        check_size(model_cfg, *components.image_hw(resolution))
    if batch <= 0:
        raise SdsimError(f"batch must be at least 1, got {batch}")
    F = TraceBackend(precision)
    inputs = [F.tensor(spec.shape, spec.dtype)
              for spec in comp.inputs(model_cfg, resolution, batch, seq_len)]
    model, fn = comp.build(model_cfg)
    out = fn(F, *inputs)
    nparams = sum(p.numel for _, p in comp.params(model))
    return Graph(name=name, ops=F.ops, inputs=inputs, outputs=[out], tensors=F.tensors,
                 params=nparams, param_bytes=nparams * F.itemsize)


def size_multiple(model_cfg) -> int:
    """Image sizes must be multiples of this: the VAE factor (the UNet takes any latent size,
    rounding odd sizes up on the way down and cropping on the way up, as diffusers does)."""
    return model_cfg.vae.downscale


def check_size(model_cfg, height: int, width: int) -> None:
    """An error unless height x width pixels make whole latents."""
    need = size_multiple(model_cfg)
    for what, s in (("height", height), ("width", width)):
        if s <= 0 or s % need:
            raise SdsimError(f"resolution {height}x{width}: the {what} must be a positive "
                             f"multiple of {need} (the VAE's downscale factor)")


def trace_pipeline(model_cfg, resolution: int = 512, batch: int = 2, precision: str = "fp16") -> dict:
    """Text encoder, UNet (one call) and VAE decoder of a text-to-image run."""
    return {name: trace_component(name, model_cfg, resolution, batch, precision)
            for name in components.TEXT_TO_IMAGE}
