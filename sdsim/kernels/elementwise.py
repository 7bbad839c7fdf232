"""Costs of the elementwise and data-movement ops (family "elementwise"): one dispatch each.

FLOP convention shared by norm, gelu and attention: each arithmetic operation counts 1 (a
multiply-add counts 2) and each special function (exp, erf, rsqrt) counts 1, since mobile GPUs
issue those on a special-function unit at about one per lane per cycle. Per-element counts:
"""

from __future__ import annotations

from sdsim.kernels import BYTES, KernelCost, variant

#: x / (1 + exp(-x)): negate, exp, add, divide
SILU_FLOPS = 4
#: 0.5 * x * (1 + erf(x / sqrt 2)): multiply, erf, add, multiply, multiply
GELU_FLOPS = 5
#: x / (1 + exp(-1.702 x)): multiply, exp, add, divide
QUICK_GELU_FLOPS = 4


def _one(kernel, flops, read, written, cls="elementwise"):
    return [KernelCost(kernel, cls, float(flops), float(read), float(written))]


@variant("elementwise", "add")
def add(numel, precision, numel_b=None):
    """out = a + b; `b` has `numel_b` elements (default numel) broadcast over a, e.g. a (C,) bias
    or a (B,C,1,1) time embedding onto NCHW: b is read once per output element but its few
    distinct values stay in cache, so DRAM reads are numel + numel_b elements."""
    b = BYTES[precision]
    nb = numel if numel_b is None else numel_b
    return _one("ew_add", numel, (numel + nb) * b, numel * b)


def _unary(name, per_elem):
    def cost(numel, precision):
        b = BYTES[precision]
        return _one(f"ew_{name}", per_elem * numel, numel * b, numel * b)

    cost.__doc__ = f"out = {name}(x) over `numel` elements: read once, write once."
    return cost


silu = variant("elementwise", "silu")(_unary("silu", SILU_FLOPS))
gelu = variant("elementwise", "gelu")(_unary("gelu", GELU_FLOPS))
quick_gelu = variant("elementwise", "quick_gelu")(_unary("quick_gelu", QUICK_GELU_FLOPS))


@variant("elementwise", "upsample_nearest2x")
def upsample_nearest2x(numel, precision):
    """NCHW nearest 2x upsample; `numel` is the input size, the output has 4x numel."""
    b = BYTES[precision]
    return _one("ew_upsample_nearest2x", 0, numel * b, 4 * numel * b)


@variant("elementwise", "concat")
def concat(numel, precision):
    """Concatenation of two tensors (the UNet's skip concat) along channels in one dispatch;
    `numel` is the output size (sum of the inputs)."""
    b = BYTES[precision]
    return _one("ew_concat", 0, numel * b, numel * b)


@variant("elementwise", "nchw_to_nlc")
def nchw_to_nlc(numel, precision):
    """(B,C,H,W) -> (B,HW,C) transpose through local-memory tiles: read once, write once."""
    b = BYTES[precision]
    return _one("ew_transpose", 0, numel * b, numel * b)


@variant("elementwise", "nlc_to_nchw")
def nlc_to_nchw(numel, precision):
    """(B,HW,C) -> (B,C,H,W) transpose through local-memory tiles: read once, write once."""
    b = BYTES[precision]
    return _one("ew_transpose", 0, numel * b, numel * b)


@variant("elementwise", "embedding")
def embedding(tokens, dim, precision):
    """Row gather table[ids]: reads `tokens` int32 ids and `tokens` rows of `dim`, writes them."""
    b = BYTES[precision]
    return _one("ew_embedding", 0, tokens * 4 + tokens * dim * b, tokens * dim * b)


@variant("elementwise", "timestep_embedding")
def timestep_embedding(batch, dim, precision):
    """diffusers' sinusoidal timestep embedding on device: per output element one exp (frequency),
    one multiply and one sin/cos; reads `batch` fp32 timesteps."""
    b = BYTES[precision]
    return _one("ew_timestep_embedding", 3 * batch * dim, batch * 4, batch * dim * b)
