"""The kernel plan: each traced op lowered to kernel calls, each call with its identity and cost.

`lower_graph(graph, options, precision)` walks the ops of one traced component in execution order
and applies one rule per op kind (`_choose`); the rule picks a kernel variant record
(sdsim.kernels) and says which `--opt` switch, if any, decided it. The costs of every dispatch
come from that record. A call's identity is the diffusers module scope of its op and the kernel
name (`unet/down_blocks.0.resnets.1.conv1:wino_gemm_f4`, with `#n` where one scope runs the same
kernel more than once); an OpenCL run reports the same identities, so a prediction and a
measurement are matched call by call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdsim import kernels
from sdsim.errors import SdsimError
from sdsim.kernels import Launch, conv
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
    switch: str | None     # the --opt switch whose rule chose the variant (None: no choice)
    identity: str          # component/scope:kernel[#n], unique within the component
    launch: Launch | None = None   # the dispatch's launch geometry
    model_key: str = ""            # the timing model's key (sdsim/cost/waves.py)
    half_arith: bool = False       # has a half-arithmetic build (KernelCost.half_arith)
    model_alt: str = ""            # the key timed in its place (KernelCost.model_alt)

    @property
    def dram_bytes(self) -> float:
        return self.bytes_read + self.bytes_written


def op_shape(op) -> dict:
    """The shape a variant record takes for a traced op: its attrs plus the shapes of its input
    and output tensors (elementwise variants read those)."""
    return dict(op.attrs, in_shapes=[tuple(t.shape) for t in op.inputs],
                out_shape=tuple(op.output.shape))


def conv_variant(a: dict, opt: Options) -> tuple[str, str | None]:
    """(conv2d variant, governing switch) for a conv with trace attrs `a` under `opt`.
    A 1x1 stride-1 unpadded conv is a matrix multiply whatever the switches say: it runs as the
    tiled GEMM. The conv3x3 switch governs every 3x3 conv; Winograd applies to the stride-1 ones
    with at least `winograd_min_channels` input and output channels, the others run direct."""
    if a["k"] == 1 and a["stride"] == 1 and tuple(a["padding"]) == (0, 0, 0, 0):
        return conv.POINTWISE, None
    if a["k"] != 3:
        return kernels.chosen("conv2d", "conv3x3", "direct").name, None
    rec = kernels.chosen("conv2d", "conv3x3", opt.conv3x3)
    if rec.name in conv.WINOGRAD_M and not (
            a["stride"] == 1 and min(a["cin"], a["cout"]) >= opt.winograd_min_channels):
        rec = kernels.chosen("conv2d", "conv3x3", "direct")
    return rec.name, "conv3x3"


def attention_variant(a: dict, opt: Options) -> str:
    """The paper's rule: FlashAttention where head_dim == flash_head_dim, partially fused softmax
    elsewhere; or the variant the attention switch names."""
    value = opt.attention
    if value == "paper":
        value = "flash" if a["head_dim"] == opt.flash_head_dim else "partial_softmax"
    return kernels.chosen("attention", "attention", value).name


def _folds_gelu(linear, nxt, consumers) -> bool:
    """Whether the erf GELU `nxt` reads only `linear`'s output, so the GEMM epilogue can apply
    it (CLIP's quick_gelu does not fold: the epilogue computes the erf GELU)."""
    return (nxt is not None and nxt.kind == "gelu" and nxt.inputs[0].id == linear.output.id
            and consumers[linear.output.id] == 1)


def _choose(op, opt: Options, consumers: dict, ops: list) -> list[tuple[str, str, str | None]]:
    """(family, variant, switch) of the kernels one op lowers to; [] when fused into another op."""
    a, kind = op.attrs, op.kind
    if kind == "conv2d":
        return [("conv2d", *conv_variant(a, opt))]
    if kind == "linear":
        nxt = ops[op.index + 1] if op.index + 1 < len(ops) else None
        if _folds_gelu(op, nxt, consumers):
            rec = (kernels.chosen("linear", "gelu", "fused") if opt.gelu == "fused"
                   else kernels.default("linear"))
            return [("linear", rec.name, "gelu")]
        return [("linear", kernels.default("linear").name, None)]
    if kind in ("gelu", "quick_gelu"):
        prev = ops[op.index - 1] if op.index else None
        if prev is not None and prev.kind == "linear" and _folds_gelu(prev, op, consumers):
            return [] if opt.gelu == "fused" else [("elementwise", kind, "gelu")]
        return [("elementwise", kind, None)]
    if kind == "geglu":
        return [("gelu", kernels.chosen("gelu", "gelu", opt.gelu).name, "gelu")]
    if kind == "group_norm":
        return [("group_norm", kernels.chosen("group_norm", "groupnorm", opt.groupnorm).name,
                 "groupnorm")]
    if kind == "layer_norm":
        return [("layer_norm", kernels.default("layer_norm").name, None)]
    if kind == "attention":
        return [("attention", attention_variant(a, opt), "attention")]
    if kind in ("add", "upsample_nearest2x", "silu", "concat", "nchw_to_nlc", "nlc_to_nchw",
                "embedding", "timestep_embedding"):
        return [("elementwise", kind, None)]   # elementwise records are named for their op
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
    rows = []
    for op in graph.ops:
        shape = op_shape(op)
        for family, variant, switch in _choose(op, opt, consumers, graph.ops):
            try:
                record = kernels.get(family, variant)
            except KeyError as e:
                raise SdsimError(f"{graph.name} op {op.index} ({op.scope}): {e.args[0]}") from None
            for i, k in enumerate(record.costs(precision, **shape)):
                rows.append((op, family, variant, switch, i, k))
    names = [f"{graph.name}/{op.scope or '<top>'}:{k.kernel}" for op, *_, k in rows]
    total = {n: names.count(n) for n in set(names)}
    seen: dict = {}
    plan = []
    for name, (op, family, variant, switch, i, k) in zip(names, rows):
        seen[name] = seen.get(name, 0) + 1
        identity = name if total[name] == 1 else f"{name}#{seen[name]}"
        plan.append(KernelCall(graph.name, op.index, op.kind, op.scope, family, variant, i,
                               k.kernel, k.kernel_class, k.flops, k.bytes_read, k.bytes_written,
                               k.workspace, switch, identity, k.launch, k.model_key,
                               k.half_arith, k.model_alt))
    return plan
