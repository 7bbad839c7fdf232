"""The GEMM kernel of opencl/gemm.cl in NumPy, rounding exactly where the kernel rounds, so that a
device with native half arithmetic can be checked against it bit for bit.

C[b] = act(alpha * A[b] @ B[b] + bias), fp16 storage. Rounding points per arithmetic (ARITH):
- inputs A, B (and bias) are stored in fp16; every output element walks its K slice in order
  k = kb, kb + 1, ... (both kernel bodies; a transposed call sums the same products in the same
  order); the local-memory body goes on to a whole number of TK steps, adding 0 * 0, which
  turns a -0 sum into +0;
- "fp16": each product a * b rounded to half (the float product of two halves is exact, so this
  is the half multiply), added to a float32 accumulator;
- "fp16acc": acc = fma(a, b, acc) in half, one rounding per step (sdsim.sim.half.fma16: a
  subnormal result rounds through float32, as Intel's OpenCL CPU runtime does on an AMD EPYC
  host, or once, as the active sdsim.sim.half.library says);
- "fp32": float32 multiply-add (the device may contract to FMA: not a bit-exact mirror);
- each slice's accumulator times alpha in float32; a split call's slices summed in float32 in
  slice order from 0; then + bias in float32, one rounding to fp16;
- the GELU epilogue (opencl/activation.cl) in the half builds rounds that value to half and
  applies the standalone kernel's half GELU (sdsim.sim.activation.gelu), so a fused GELU stores
  what the unfused pair does; in float, the float build's GELU before the rounding.
The GELU's exp is the device's float library function there and NumPy's here: the one documented
source of a one-ulp difference.
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.precision import ARITHS, stored
from sdsim.sim import activation
from sdsim.sim.half import fma16


def _slice(a, b, kb, ke, arith, k_step):
    """One K slice's accumulator, walked in order k = kb .. ke - 1, as float32."""
    shape = np.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1, b.shape[-1]))
    acc = np.zeros(shape, np.float16 if arith == "fp16acc" else np.float32)
    with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN are what half gives
        for k in range(kb, ke):
            prod = a[..., :, k, None] * b[..., None, k, :]   # float32: exact for half operands
            if arith == "fp16":
                acc = acc + prod.astype(np.float16).astype(np.float32)
            elif arith == "fp16acc":
                acc = fma16(prod, acc)
            else:
                acc = prod + acc
        if k_step and (ke - kb) % k_step:   # steps past the end add 0 * 0: -0 becomes +0
            acc = acc + acc.dtype.type(0)
    return acc.astype(np.float32)


def gemm(a, b, *, arith: str = "fp16", bias=None, bias_mode: int = 0, act: int = 0,
         alpha: float = 1.0, kslice: int | None = None, k_step: int | None = None
         ) -> np.ndarray:
    """C (batch, M, N) as the fp16-storage GEMM kernel computes it from A (batch, M, K) and
    B (batch, K, N); bias_mode 1 adds bias[col], 2 bias[row]; act 1 is the GELU; `kslice` is
    the split-K slice length (None: the whole of K); `k_step` the TK of a local-memory build,
    which walks each slice in whole steps with zero operands past its end (None: the CPU
    micro-kernel, which stops at the end). Returned as float16."""
    if arith not in ARITHS:
        raise SdsimError(f"gemm sim: unknown arithmetic '{arith}'; expected one of "
                         f"{', '.join(ARITHS)}")
    a, b = (stored(x, "fp16", np.float32) for x in (a, b))
    k = a.shape[-1]
    if b.shape[-2] != k:
        raise SdsimError(f"gemm sim: A has {k} columns but B has {b.shape[-2]} rows")
    step = kslice or max(k, 1)
    alpha = np.float32(alpha)
    parts = [alpha * _slice(a, b, kb, min(k, kb + step), arith, k_step)
             for kb in range(0, k, step)]
    v = parts[0]
    for part in parts[1:]:   # gemm_split_reduce: slice order, float32
        v = v + part
    if bias_mode:
        bias = stored(bias, "fp16", np.float32)
        v = v + (bias[None, None, :] if bias_mode == 1 else bias[None, :, None])
    if act and arith == "fp32":
        v = activation.gelu32(v)
    elif act:
        return activation.gelu(v.astype(np.float16), arith)
    return v.astype(np.float32).astype(np.float16)
