"""Attention on an OpenCL device: naive, partially fused softmax and FlashAttention
(opencl/attention.cl), as device-buffer functions, a host wrapper and bench cases.

Tensors are (B, N, heads*head_dim) in the storage precision, read in place per head.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.cl.bench import BenchCase
from sdsim.errors import SdsimError
from sdsim.kernels import attention as cost
from sdsim.kernels import costs

VARIANTS = ("naive", "partial_softmax", "flash")
#: local memory the flash kernel may use for its K/V tiles (fits every GPU's 32 KiB minimum)
FLASH_LOCAL_BUDGET = 32 * 1024
SOFTMAX_WG = 64


def flash_key_tile(head_dim: int, local_mem: int) -> int:
    """Key rows per local-memory tile of the flash kernel: K and V tiles of BK x head_dim floats."""
    budget = min(local_mem, FLASH_LOCAL_BUDGET)
    return max(1, min(32, budget // (8 * head_dim)))


def attention(rt, q, k, v, batch, nq, nk, heads, head_dim, *, causal=False, variant="flash",
              precision="fp32", out=None, wait_for=None):
    """softmax(q k^T / sqrt(head_dim)) v per head on device buffers; returns (out_buf, events)."""
    if variant not in VARIANTS:
        raise SdsimError(f"attention: unknown variant '{variant}'; expected one of {VARIANTS}")
    if causal and nq > nk:
        raise SdsimError(f"attention: causal mask needs nq <= nk, got nq={nq}, nk={nk}")
    d, bh = head_dim, batch * heads
    scale = np.float32(1.0 / math.sqrt(d))
    i32 = np.int32
    if out is None:
        out = rt.alloc(batch * nq * heads * d, precision, "attention output")
    if variant == "flash":
        bq, bk = cost.FLASH_BQ, flash_key_tile(d, rt.local_mem)
        kern = rt.kernel("attention", "attn_flash", precision, {"D": d, "BQ": bq, "BK": bk})
        ev = rt.launch(kern, (math.ceil(nq / bq) * bq, bh), (bq, 1), q, k, v, out, i32(nq),
                       i32(nk), i32(heads), scale, i32(causal), wait_for=wait_for)
        return out, [ev]
    t = cost.TILE
    s = rt.alloc(bh * nq * nk, precision, f"attention scores ({bh}x{nq}x{nk})")
    mx = rt.alloc(bh * nq, "fp32", "row max")
    sm = rt.alloc(bh * nq, "fp32", "row sum")
    wg = SOFTMAX_WG
    while wg > rt.max_wg:     # a power of two the device allows (tree reductions need one)
        wg //= 2
    defs = {"TILE": t, "WG": wg}
    qk = rt.kernel("attention", "attn_qk", precision, defs)
    events = [rt.launch(qk, (nk, nq, bh), (t, t, 1), q, k, s, i32(nq), i32(nk), i32(heads),
                        i32(d), scale, i32(causal), wait_for=wait_for)]
    rows = bh * nq
    red = (rows * wg,)
    if variant == "naive":
        k1 = rt.kernel("attention", "softmax_max", precision, defs)
        events.append(rt.launch(k1, red, (wg,), s, mx, i32(nk), wait_for=events[-1:]))
        k2 = rt.kernel("attention", "softmax_sum", precision, defs)
        events.append(rt.launch(k2, red, (wg,), s, mx, sm, i32(nk),
                                wait_for=events[-1:]))
        k3 = rt.kernel("attention", "softmax_normalize", precision, defs)
        events.append(rt.launch(k3, (nk, rows), rt.local_size(k3, (64, 1)), s, mx, sm, i32(nk),
                                i32(rows), wait_for=events[-1:]))
        pv = rt.kernel("attention", "attn_pv", precision, defs)
    else:
        k1 = rt.kernel("attention", "softmax_stats", precision, defs)
        events.append(rt.launch(k1, red, (wg,), s, mx, sm, i32(nk),
                                wait_for=events[-1:]))
        pv = rt.kernel("attention", "attn_pv", precision, dict(defs, SOFTMAX_IN_PV=1))
    events.append(rt.launch(pv, (d, nq, bh), (t, t, 1), s, v, mx, sm, out, i32(nq), i32(nk),
                            i32(heads), i32(d), wait_for=events[-1:]))
    return out, events


def attention_host(rt, q, k, v, heads, *, causal=False, variant="flash", precision="fp32"):
    """Host-array wrapper: q (B, Nq, C), k and v (B, Nk, C); returns (float32 out, events)."""
    batch, nq, c = q.shape
    nk = k.shape[1]
    if c % heads:
        raise SdsimError(f"attention: {c} channels do not split into {heads} heads")
    bufs = [rt.to_device(a, precision, n) for a, n in ((q, "q"), (k, "k"), (v, "v"))]
    out, events = attention(rt, *bufs, batch, nq, nk, heads, c // heads, causal=causal,
                            variant=variant, precision=precision)
    return rt.from_device(out, (batch, nq, c), precision, wait_for=events), events


def reference(q, k, v, heads, causal=False):
    """float64 NumPy attention with max-subtracted softmax: the independent reference."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, nq, c = q.shape
    nk, d = k.shape[1], c // heads
    qh = q.reshape(b, nq, heads, d).transpose(0, 2, 1, 3)
    kh = k.reshape(b, nk, heads, d).transpose(0, 2, 1, 3)
    vh = v.reshape(b, nk, heads, d).transpose(0, 2, 1, 3)
    s = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        s = np.where(np.tril(np.ones((nq, nk), bool)), s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return (p @ vh).transpose(0, 2, 1, 3).reshape(b, nq, c)


#: fp32: sums of up to 4096 products in float32, relative error ~1e-6 · sqrt(n); 1e-4 of the
#: output scale leaves margin. fp16: inputs and output rounded to half (2^-11 relative each),
#: and for naive the probabilities too; 2e-2 of max|ref| covers the worst case seen.
TOLERANCE = {"fp32": (1e-5, 1e-4), "fp16": (1e-3, 2e-2)}


def _case(variant, batch, heads, nq, nk, d, causal, precision):
    c = heads * d
    shape = dict(batch=batch, heads=heads, nq=nq, nk=nk, head_dim=d, causal=causal)

    def make(rng):
        return {"q": rng.standard_normal((batch, nq, c), np.float32),
                "k": rng.standard_normal((batch, nk, c), np.float32),
                "v": rng.standard_normal((batch, nk, c), np.float32)}

    def run(rt, i):
        return attention_host(rt, i["q"], i["k"], i["v"], heads, causal=causal, variant=variant,
                              precision=precision)

    def ref(i):
        # the kernel sees inputs rounded to the storage precision
        r = {n: i[n].astype(np.float16) if precision == "fp16" else i[n] for n in "qkv"}
        return reference(r["q"], r["k"], r["v"], heads, causal)

    return BenchCase("attention", variant, shape, precision, make, run, ref, TOLERANCE[precision],
                     costs("attention", variant, precision=precision, **shape))


def bench_cases(quick: bool) -> list[BenchCase]:
    """SD1.4 attention shapes (batch 2 for classifier-free guidance; 8 heads): self-attention at
    64x64 (d=40), 32x32 (d=80), 16x16 (d=160), cross-attention to 77 tokens, the CLIP causal
    self-attention (12 heads of 64, 77 tokens) and the VAE mid-block (1 head of 512, 64x64).
    --quick uses small shapes that keep the same head dims."""
    if quick:
        shapes = [(1, 2, 64, 64, 40, False), (1, 2, 64, 77, 80, False),
                  (1, 1, 32, 32, 160, False), (1, 2, 77, 77, 64, True)]
    else:
        shapes = [(2, 8, 4096, 4096, 40, False), (2, 8, 4096, 77, 40, False),
                  (2, 8, 1024, 1024, 80, False), (2, 8, 256, 256, 160, False),
                  (1, 12, 77, 77, 64, True), (1, 1, 4096, 4096, 512, False)]
    cases = []
    for (b, h, nq, nk, d, causal) in shapes:
        for precision in ("fp32", "fp16"):
            for v in VARIANTS:
                cases.append(_case(v, b, h, nq, nk, d, causal, precision))
    return cases
