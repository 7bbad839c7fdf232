"""Costs of the GEMM kernels of opencl/gemm.cl: linear (+bias, optional GELU epilogue) and
batched matmul.

The kernel computes a TILE x TILE (64 x 64) block of C per work-group, streaming K in steps of 16
through local memory; so A is read once per column block of C (ceil(n/64) times) and B once per
row block (ceil(m/64) times); C is written once. The bias is read once per row block.
"""

from __future__ import annotations

from math import ceil

from sdsim.kernels import BYTES, KernelCost, variant

#: output tile edge of the gemm kernel (work-group 16x16, 4x4 outputs per work-item)
TILE = 64
#: FLOPs charged per element for the exact erf GELU (erf polynomial, multiply, add, scale)
GELU_FLOPS = 20


def gemm_cost(kernel: str, batch: int, m: int, k: int, n: int, precision: str,
              bias: bool = False, gelu: bool = False, kernel_class: str = "gemm") -> KernelCost:
    """One dispatch of the tiled gemm: C[b] (m x n) = A[b] (m x k) @ B[b] (k x n) (+bias, GELU)."""
    e = BYTES[precision]
    row_blocks, col_blocks = ceil(m / TILE), ceil(n / TILE)
    flops = 2.0 * batch * m * n * k
    flops += batch * m * n * (1 if bias else 0) + batch * m * n * (GELU_FLOPS if gelu else 0)
    read = batch * (m * k * col_blocks + k * n * row_blocks) * e
    if bias:
        read += batch * n * row_blocks * e
    return KernelCost(kernel, kernel_class, flops, float(read), float(batch * m * n * e))


@variant("linear", "tiled")
def linear_tiled(m, k, n, bias=True, precision="fp32"):
    """y (m x n) = x (m x k) @ W^T (W is n x k) + b, one dispatch."""
    return [gemm_cost("gemm_bias" if bias else "gemm", 1, m, k, n, precision, bias=bias)]


@variant("linear", "tiled_gelu")
def linear_tiled_gelu(m, k, n, bias=True, precision="fp32"):
    """linear with the exact GELU applied in the GEMM epilogue: no separate GELU pass."""
    return [gemm_cost("gemm_gelu", 1, m, k, n, precision, bias=bias, gelu=True)]


@variant("matmul", "batched")
def matmul_batched(batch, m, k, n, precision="fp32"):
    """C[b] = A[b] @ B[b] for b < batch, one dispatch (attention's QK^T and P.V)."""
    return [gemm_cost("matmul_batched", batch, m, k, n, precision)]
