"""Costs of the conv2d kernels of opencl/conv.cl (+ the gemm of opencl/gemm.cl they call).

Byte-counting rule: an operand is charged once per time the kernel's tiling streams it; window
gathers that re-read neighbouring elements inside one work-group (conv windows, Winograd tile
halos) are charged at their unique footprint, as caches serve the overlap.

- direct: one work-item per output pixel and block of COB=16 output channels, work-group 16x16
  pixels; the input is streamed once per channel block, the block's weights once per work-group
  (staged through local memory).
- im2col_gemm: an im2col dispatch writes the column matrix (workspace), then the tiled gemm
  (sdsim.kernels.gemm) multiplies W (cout x cin*k*k) by it with bias. A 1x1, stride-1, unpadded conv
  skips im2col (the input already is the column matrix).
- winograd_f{2,4,6} (3x3, stride 1 only): input transform V = B^T d B per (tile, channel) into
  alpha^2 matrices (alpha = m + 2; workspace), batched gemm M[xi] = U[xi] @ V[xi] over the alpha^2
  positions (M is workspace too), output transform Y = A^T M A + bias. FLOPs are those executed by the dense transform
  loops. The weight transform U = G g G^T is done once at load time and is not in the list.
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

from sdsim.kernels import BYTES, KernelCost, variant
from sdsim.kernels.gemm import gemm_cost
from sdsim.ops import conv_out_hw, padding4

#: output channels per work-item of the direct kernel
COB = 16
#: input channels whose weights the direct kernel stages in local memory at a time
CB = 4
#: work-group edge (pixels) of the direct and transform kernels
WG = 16
WINOGRAD_M = {"winograd_f2": 2, "winograd_f4": 4, "winograd_f6": 6}


@variant("conv2d", "direct")
def direct(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    e = BYTES[precision]
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    groups = batch * ceil(cout / COB) * ceil(ho / WG) * ceil(wo / WG)
    flops = 2.0 * batch * cout * ho * wo * cin * k * k + batch * cout * ho * wo
    read = batch * cin * h * w * ceil(cout / COB) + groups * (COB * cin * k * k + COB)
    return [KernelCost("conv_direct", "conv", flops, float(read * e),
                       float(batch * cout * ho * wo * e))]


@variant("conv2d", "im2col_gemm")
def im2col_gemm(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    e = BYTES[precision]
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    out = []
    if not (k == 1 and stride == 1 and padding4(padding) == (0, 0, 0, 0)):
        col = batch * cin * k * k * ho * wo
        out.append(KernelCost("im2col", "elementwise", 0.0, float(batch * cin * h * w * e),
                              float(col * e), workspace=col * e))
    out.append(gemm_cost("gemm_bias", batch, cout, cin * k * k, ho * wo, precision, bias=True))
    return out


def winograd(m, batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    if k != 3 or stride != 1:
        raise ValueError(f"Winograd F({m}x{m},3x3) needs k=3 and stride 1 (got k={k}, "
                         f"stride={stride})")
    e = BYTES[precision]
    a = m + 2
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    p = batch * ceil(ho / m) * ceil(wo / m)
    v = a * a * cin * p
    mm = a * a * cout * p
    return [
        KernelCost(f"wino_input_transform_f{m}", "winograd_transform",
                   4.0 * a ** 3 * cin * p, float(batch * cin * h * w * e), float(v * e),
                   workspace=v * e),
        replace(gemm_cost(f"wino_gemm_f{m}", a * a, cout, cin, p, precision),
                workspace=mm * e),
        KernelCost(f"wino_output_transform_f{m}", "winograd_transform",
                   (2.0 * (m * a * a + m * m * a) + m * m) * cout * p,
                   float((mm + cout) * e), float(batch * cout * ho * wo * e)),
    ]


def _register(name, m):
    @variant("conv2d", name)
    def cost(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
        return winograd(m, batch, cin, cout, h, w, k, stride, padding, precision)
    cost.__name__ = name
    cost.__doc__ = f"Winograd F({m}x{m},3x3): input transform, batched gemm, output transform."
    return cost


for _name, _m in WINOGRAD_M.items():
    _register(_name, _m)
