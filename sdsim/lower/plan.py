"""The kernel plan: each traced op lowered to kernel calls, each call with its identity and cost.

`lower_graph(graph, options, precision)` walks the ops of one traced component in execution order
and applies one rule per op kind (see `_rules`); the costs of every dispatch come from
the variants registered in `sdsim.kernels` (what `kernels.costs(family, variant, **shape)`
returns), the one place that owns those formulas. A call's
identity (component, op index, dispatch index, kernel name) is what a later OpenCL run reports,
so a prediction and a measurement can be matched call by call.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

from sdsim import kernels
from sdsim.errors import SdsimError
from sdsim.lower.options import Options

@dataclass(frozen=True)
class KernelCall:
    """One dispatch of the plan."""

    component: str
    op_index: int
    op_kind: str
    scope: str
    family: str
    variant: str
    dispatch: int          # position among the op's dispatches
    kernel: str
    kernel_class: str
    flops: float
    bytes_read: float
    bytes_written: float
    workspace: int

    @property
    def dram_bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def identity(self) -> str:
        return f"{self.component}/{self.op_index}/{self.dispatch}:{self.kernel}"


@functools.lru_cache(maxsize=None)
def _variant(family: str, variant: str):
    """(cost function, keyword names it takes or None for **kwargs), looked up once per variant."""
    try:
        fn = kernels.lookup(family, variant)
    except KeyError:
        known = [v for f, v in kernels.variants(family)]
        raise SdsimError(f"no kernel cost formula for {family}/{variant} (known for {family}: "
                         f"{', '.join(known) or 'none'}); sdsim/kernels must register it")
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn, None
    return fn, frozenset(p.name for p in params)


def _costs(family, variant, precision, shape):
    """The variant's dispatches, passing only the shape arguments it takes (trace attrs carry
    extras such as eps)."""
    fn, names = _variant(family, variant)
    args = dict(shape, precision=precision)
    if names is not None:
        args = {k: v for k, v in args.items() if k in names}
    return fn(**args)


def conv_variant(a: dict, opt: Options) -> str:
    """The conv2d variant for a conv with trace attrs `a` under `opt` (see options.py's rule).
    A 1x1 stride-1 unpadded conv is a matrix multiply whatever the switches say: it runs as the
    tiled GEMM (im2col_gemm skips the im2col pass for it)."""
    if a["k"] == 1 and a["stride"] == 1 and tuple(a["padding"]) == (0, 0, 0, 0):
        return "im2col_gemm"
    if a["k"] != 3 or opt.conv3x3 == "direct":
        return "direct"
    if opt.conv3x3 == "im2col":
        return "im2col_gemm"
    if a["stride"] == 1 and min(a["cin"], a["cout"]) >= opt.winograd_min_channels:
        return opt.conv3x3
    return "direct"


def attention_variant(a: dict, opt: Options) -> str:
    if opt.attention == "paper":
        return "flash" if a["head_dim"] == opt.flash_head_dim else "partial_softmax"
    return opt.attention


def _choose(op, opt: Options, consumers: dict, ops: list) -> list[tuple[str, str, dict]]:
    """(family, variant, shape) of the kernels one op lowers to; [] when fused into another op."""
    a, kind = op.attrs, op.kind
    if kind == "conv2d":
        return [("conv2d", conv_variant(a, opt), a)]
    if kind == "linear":
        nxt = ops[op.index + 1] if op.index + 1 < len(ops) else None
        fold = (opt.gelu == "fused" and nxt is not None and nxt.kind == "gelu"
                and nxt.inputs[0].id == op.output.id and consumers[op.output.id] == 1)
        return [("linear", "tiled_gelu" if fold else "tiled", a)]
    if kind in ("gelu", "quick_gelu"):
        prev = ops[op.index - 1] if op.index else None
        # only the erf GELU folds: the GEMM epilogue computes erf GELU, not CLIP's quick_gelu
        if (kind == "gelu" and opt.gelu == "fused" and prev is not None and prev.kind == "linear"
                and op.inputs[0].id == prev.output.id and consumers[prev.output.id] == 1):
            return []  # applied in the epilogue of the preceding GEMM
        return [("elementwise", kind, {"numel": a["numel"]})]
    if kind == "geglu":
        return [("gelu", "standalone" if opt.gelu == "standalone" else "geglu_fused", a)]
    if kind == "group_norm":
        return [("group_norm", opt.groupnorm, a)]
    if kind == "layer_norm":
        return [("layer_norm", "rowwise", a)]
    if kind == "attention":
        return [("attention", attention_variant(a, opt), a)]
    if kind == "add":
        return [("elementwise", "add", {"numel": a["numel"], "numel_b": op.inputs[1].numel})]
    if kind == "upsample_nearest2x":
        return [("elementwise", kind, {"numel": op.inputs[0].numel})]
    if kind in ("silu", "concat", "nchw_to_nlc", "nlc_to_nchw"):
        return [("elementwise", kind, {"numel": a["numel"]})]
    if kind == "embedding":
        return [("elementwise", "embedding", {"tokens": op.inputs[0].numel,
                                              "dim": op.output.shape[-1]})]
    if kind == "timestep_embedding":
        return [("elementwise", kind, {"batch": op.output.shape[0], "dim": op.output.shape[-1]})]
    raise SdsimError(f"no lowering rule for op kind '{kind}' (op {op.index}, {op.scope})")


def consumer_counts(graph) -> dict:
    """How many ops read each tensor id."""
    counts: dict = {}
    for op in graph.ops:
        for t in op.inputs:
            counts[t.id] = counts.get(t.id, 0) + 1
    return counts


def lower_graph(graph, opt: Options, precision: str) -> list[KernelCall]:
    """The kernel plan of one traced component under the optimization switches `opt`."""
    consumers = consumer_counts(graph)
    plan = []
    for op in graph.ops:
        for family, variant, shape in _choose(op, opt, consumers, graph.ops):
            for i, k in enumerate(_costs(family, variant, precision, shape)):
                plan.append(KernelCall(graph.name, op.index, op.kind, op.scope, family, variant,
                                       i, k.kernel, k.kernel_class, k.flops, k.bytes_read,
                                       k.bytes_written, k.workspace))
    return plan
