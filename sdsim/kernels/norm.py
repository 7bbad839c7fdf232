"""Costs of GroupNorm (family "group_norm") and LayerNorm (family "layer_norm").

group_norm kwargs: batch, channels, hw, groups, act (None | "silu"), precision.
- "naive": three dispatches with fp32 intermediate tensors (mean, then variance, then
  normalize + affine [+ SiLU]); x is read by each of them.
- "fused": the paper's specialised kernel, one dispatch, one work-group per (batch, group): a
  first sweep accumulates shifted sum and sum of squares in fp32, a second sweep normalizes with
  affine [+ SiLU]. The group slice (channels/groups * hw elements, 160 KiB at SD1.4's 320 ch 64x64
  in fp32) does not fit in local memory, so x is read twice.
layer_norm kwargs: rows, dim, precision. "rowwise": one work-group per row; a row (<= a few KiB)
stays in cache between the statistics and normalize sweeps, so x is read once.
"""

from __future__ import annotations

from sdsim.kernels import BYTES, KernelCost, variant
from sdsim.kernels.elementwise import SILU_FLOPS

STAT = 4  # per-group statistics are fp32 whatever the storage precision


def _normalize_flops(act):
    # (x - mean) * rstd: 2; * gamma + beta: 2; optional SiLU
    return 4 + (SILU_FLOPS if act == "silu" else 0)


@variant("group_norm", "naive")
def group_norm_naive(batch, channels, hw, groups, precision, act=None):
    b = BYTES[precision]
    n = batch * channels * hw
    ng = batch * groups
    return [
        KernelCost("gn_mean", "reduction", n, n * b, ng * STAT, workspace=ng * STAT),
        # (x - mean)^2 accumulated: subtract, multiply-add
        KernelCost("gn_var", "reduction", 3 * n, n * b + ng * STAT, ng * STAT, workspace=ng * STAT),
        KernelCost("gn_normalize", "elementwise", _normalize_flops(act) * n + 2 * ng,
                   n * b + 2 * ng * STAT + 2 * channels * b, n * b),
    ]


@variant("group_norm", "fused")
def group_norm_fused(batch, channels, hw, groups, precision, act=None):
    b = BYTES[precision]
    n = batch * channels * hw
    # sweep 1: shift-subtract, add, multiply-add per element; sweep 2: normalize
    return [KernelCost("gn_fused", "reduction", (4 + _normalize_flops(act)) * n,
                       2 * n * b + 2 * channels * b, n * b)]


@variant("layer_norm", "rowwise")
def layer_norm_rowwise(rows, dim, precision):
    b = BYTES[precision]
    n = rows * dim
    return [KernelCost("ln_rowwise", "reduction", 8 * n, n * b + 2 * dim * b, n * b)]
