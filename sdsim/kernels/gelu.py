"""Costs of the GEGLU activation of the UNet transformer's feed-forward (family "gelu").

kwargs: tokens, dim, precision. The FF's first linear writes a (tokens, 2*dim) tensor
[hidden | gate]; GEGLU returns hidden * gelu(gate), a (tokens, dim) tensor. Variants list only the
dispatches *after* the GEMM (the GEMM is costed by the gemm family):
- "standalone": two passes as a framework runs it, with the split as a strided view:
  gelu over the gate half (writes a (tokens, dim) temporary), then the multiply.
- "geglu_fused": one pass reads [hidden | gate] and writes hidden * gelu(gate).
- "gemm_epilogue": GELU is applied in the epilogue of the GEMM that produces the gate half (its
  FLOPs are in gemm/gemm_gelu), so only the multiply pass remains: it reads hidden and gelu(gate).
"""

from __future__ import annotations

from sdsim.kernels import BYTES, KernelCost, variant
from sdsim.kernels.elementwise import GELU_FLOPS


@variant("gelu", "standalone")
def standalone(tokens, dim, precision):
    b = BYTES[precision]
    n = tokens * dim
    return [KernelCost("gelu", "elementwise", GELU_FLOPS * n, n * b, n * b, workspace=n * b),
            KernelCost("mul", "elementwise", n, 2 * n * b, n * b)]


@variant("gelu", "geglu_fused")
def geglu_fused(tokens, dim, precision):
    b = BYTES[precision]
    n = tokens * dim
    return [KernelCost("geglu", "elementwise", (GELU_FLOPS + 1) * n, 2 * n * b, n * b)]


@variant("gelu", "gemm_epilogue")
def gemm_epilogue(tokens, dim, precision):
    b = BYTES[precision]
    n = tokens * dim
    return [KernelCost("mul", "elementwise", n, 2 * n * b, n * b)]
