"""Scaled dot-product attention (family "attention"): the kernels of opencl/attention.cl, their
costs as those kernels tile the work, launchers and records.

kwargs: batch, heads, nq, nk, head_dim, causal (bool), precision. Inputs are (B, N, heads*head_dim)
tensors read in place (no head transposes). Scores and probabilities are stored in the storage
precision; per-row statistics (max, sum of exponentials) are fp32. With fp16 storage on a device
with native half, the GEMMs, the exponentials and FlashAttention run half arithmetic (records
with half_arith; opencl/attention.cl says what stays float: the sums of exponentials); the row
max (softmax_max: a comparison, exact in either) has no half build.
- "naive": QK^T (writes S), row max, row exp-sum, normalize (writes P over S), P·V. QK^T and P·V
  are the register-tiled GEMM (opencl/gemm.cl, sdsim.kernels.gemm) on each (batch, head)'s
  matrices in place; causal entries are masked in QK^T's epilogue, the full matrix is still
  computed.
- "partial_softmax": QK^T (writes S), one reduction pass writing row max and sum of exponentials
  (online), and P·V that loads each score as exp(s - max) / sum so P is never written.
- "flash": one dispatch; a work-group owns `flash_rows()` query rows and streams K/V tiles through
  local memory with the online softmax; K and V are re-read once per query tile. GPUs give each
  row a work-item; CPUs run one work-item per group that walks the rows with vector arithmetic.
  With `causal`, key tiles wholly after a query tile's last row are skipped.
"""

from __future__ import annotations

import math
from dataclasses import replace
from math import ceil

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Launch, Variant, register, sweep, tuning
from sdsim.kernels.gemm import gemm, gemm_cost
from sdsim.precision import BYTES, stored

def flash_rows() -> int:
    """Query rows per FlashAttention work-group (one work-item per row): the active device
    tuning's choice (sdsim/kernels/tuning.py; `sdsim tune` measures it)."""
    return tuning.current().flash_rows
STAT = 4  # fp32 row statistics
#: local memory the flash kernel may use for its K/V tiles (fits every GPU's 32 KiB minimum)
FLASH_LOCAL_BUDGET = 32 * 1024
#: work-group size of the softmax reductions (one work-group per score row)
SOFTMAX_WG = 64
#: local size of the normalize pass
NORM_LOCAL = (64, 1)

# per score element: max, subtract, exp, add (stats); subtract, exp, divide (normalize; the
# partially fused P.V multiplies by the reciprocal of the sum instead)
_STATS_FLOPS = 4
_NORM_FLOPS = 3


def flash_key_tile(head_dim: int, local_mem: int = FLASH_LOCAL_BUDGET) -> int:
    """Key rows per local-memory tile of the flash kernel: K and V tiles of BK x head_dim floats,
    a multiple of 8 keys where 8 fit (the CPU body walks a tile 8 keys at a time)."""
    budget = min(local_mem, FLASH_LOCAL_BUDGET)
    bk = max(1, min(32, budget // (8 * head_dim)))
    return bk - bk % 8 if bk >= 8 else bk


def flash_cpu() -> bool:
    """Whether FlashAttention runs its CPU body (one work-item per work-group walking the
    group's query rows with vector arithmetic): the active tuning's device type."""
    return tuning.current().device_type == "cpu"


# --- launch geometry (read by the launcher and the costs alike) ---------------------------------
def reduce_launch(rows, nk) -> Launch:
    """One SOFTMAX_WG work-group per score row, each work-item striding over the row."""
    return Launch.grid((rows * SOFTMAX_WG,), (SOFTMAX_WG,), steps=ceil(nk / SOFTMAX_WG),
                       useful=rows * min(nk, SOFTMAX_WG))


def normalize_launch(rows, nk) -> Launch:
    return Launch.grid((nk, rows), NORM_LOCAL)


def flash_launch(bh, nq, nk, d, causal) -> Launch:
    """One work-group per tile of flash_rows() query rows, walking key tiles: on a GPU one
    work-item per row; on a CPU (flash_cpu()) one work-item walking the tile's rows."""
    bq = flash_rows()
    keys, _ = flash_visits(nq, nk, causal)
    tiles = ceil(nq / bq)
    steps = ceil(keys / (tiles * flash_key_tile(d)))
    if flash_cpu():
        return Launch.grid((tiles, bh), (1, 1), steps=steps, useful=bh * nq / bq)
    return Launch.grid((nq, bh), (bq, 1), steps=steps)


def _qk(bh, nq, nk, d, heads, precision):
    """S = scale * Q K^T per (batch, head); S is a workspace P·V reads. Q's rows are the heads'
    channels apart."""
    calls = gemm_cost("attn_qk", bh, nq, d, nk, precision, caller="attn_qk", attention=True,
                      pitch_a=heads * d, strided_b=True)
    return calls[:-1] + [replace(calls[-1], workspace=bh * nq * nk * BYTES[precision])]


def _pv(bh, nq, nk, d, precision, name, softmax=False):
    """O = P V per (batch, head); with `softmax` each score is loaded as its probability."""
    return gemm_cost(name, bh, nq, nk, d, precision, caller=name, attention=True,
                     prologue_flops=_NORM_FLOPS if softmax else 0)


def _sizes(batch, heads, nq, nk, precision):
    """(bytes per element, batch*heads, score elements, bytes of one fp32 row statistic)."""
    b, bh = BYTES[precision], batch * heads
    return b, bh, bh * nq * nk, bh * nq * STAT


def naive_cost(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, s, rows = _sizes(batch, heads, nq, nk, precision)
    d = head_dim
    return [
        *_qk(bh, nq, nk, d, heads, precision),
        KernelCost("softmax_max", "reduction", s, s * b, rows, workspace=rows,
                   launch=reduce_launch(bh * nq, nk)),
        KernelCost("softmax_sum", "reduction", 3 * s, s * b + rows, rows, workspace=rows,
                   launch=reduce_launch(bh * nq, nk), half_arith=True),
        KernelCost("softmax_normalize", "elementwise", _NORM_FLOPS * s, s * b + 2 * rows, s * b,
                   launch=normalize_launch(bh * nq, nk), half_arith=True),
        *_pv(bh, nq, nk, d, precision, "attn_pv"),
    ]


def partial_softmax_cost(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, s, rows = _sizes(batch, heads, nq, nk, precision)
    d = head_dim
    # P·V re-derives each probability once per column tile of the output it feeds
    return [
        *_qk(bh, nq, nk, d, heads, precision),
        KernelCost("softmax_stats", "reduction", _STATS_FLOPS * s, s * b, 2 * rows,
                   workspace=2 * rows, launch=reduce_launch(bh * nq, nk), half_arith=True),
        *_pv(bh, nq, nk, d, precision, "attn_pv_softmax", softmax=True),
    ]


def flash_visits(nq, nk, causal):
    """(keys streamed, scores computed) summed over query tiles; causal stops each tile after
    the key of its last row (key j is visible to query i when j <= i)."""
    keys = pairs = 0
    bq = flash_rows()
    for t in range(ceil(nq / bq)):
        rows = min(bq, nq - t * bq)
        k = min(nk, t * bq + rows) if causal else nk
        keys += k
        pairs += rows * k
    return keys, pairs


def flash_cost(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, d = BYTES[precision], batch * heads, head_dim
    keys, pairs = flash_visits(nq, nk, causal)
    # per score: dot (2d) + scale + online softmax (max, subtract, exp, add) + P·V (2d);
    # the d accumulators are rescaled once per key tile (amortised d / BK per score)
    flops = bh * pairs * (4 * d + 5 + d / flash_key_tile(d))
    read = bh * b * (nq * d + 2 * keys * d)
    # one timing model per head dim: a key-tile step does head_dim-long dot products
    return [KernelCost("attn_flash", "attention", flops, read, bh * nq * d * b,
                       launch=flash_launch(bh, nq, nk, d, causal), model=f"attn_flash_d{d}",
                       half_arith=True)]


# --- device ---------------------------------------------------------------------------------------


def attention(rt, q, k, v, batch, nq, nk, heads, head_dim, *, causal=False, variant="flash",
              precision="fp32", out=None, wait_for=None):
    """softmax(q k^T / sqrt(head_dim)) v per head on device buffers; returns (out_buf, events)."""
    if variant not in ("naive", "partial_softmax", "flash"):
        raise SdsimError(f"attention: unknown variant '{variant}'; expected naive, "
                         "partial_softmax or flash")
    if causal and nq > nk:
        raise SdsimError(f"attention: causal mask needs nq <= nk, got nq={nq}, nk={nk}")
    d, bh = head_dim, batch * heads
    scale = np.float32(1.0 / math.sqrt(d))
    i32 = np.int32
    if out is None:
        out = rt.alloc(batch * nq * heads * d, precision, "attention output")
    if variant == "flash":
        bq, bk = flash_rows(), flash_key_tile(d)
        cpu = flash_cpu()
        if rt.local_mem < 8 * d * bk:
            raise SdsimError(f"attention: flash needs {8 * d * bk} bytes of local memory for "
                             f"head_dim {d}; {rt.name} has {rt.local_mem}")
        if cpu and bk % 8:
            raise SdsimError(f"attention: flash on a CPU walks key tiles of 8 keys; head_dim {d} "
                             f"leaves room for {bk} (head_dim at most {FLASH_LOCAL_BUDGET // 64})")
        kern = rt.kernel("attention", "attn_flash", precision,
                         {"D": d, "BQ": bq, "BK": bk, "FLASH_CPU": int(cpu),
                          "FLASH_UNROLL": int(tuning.current().flash_unroll)})
        ev = flash_launch(bh, nq, nk, d, causal).enqueue(
            rt, kern, q, k, v, out, i32(nq), i32(nk), i32(heads), scale, i32(causal),
            wait_for=wait_for)
        return out, [ev]
    s = rt.alloc(bh * nq * nk, precision, f"attention scores ({bh}x{nq}x{nk})")
    mx = rt.alloc(bh * nq, "fp32", "row max")
    sm = rt.alloc(bh * nq, "fp32", "row sum (partial softmax: its reciprocal)")
    defs = {"WG": SOFTMAX_WG}
    # per (batch, head): Q (nq x d) and K^T (d x nk) read in place from (B, N, heads * d) rows,
    # S (nq x nk) dense; P·V reads S and V (nk x d) in place and writes O like Q
    c, plane = heads * d, nq * nk
    events = gemm(rt, q, k, s, nq, nk, d, batch=bh, heads=heads, strides_a=(nq * c, c, 1),
                  strides_b=(nk * c, 1, c), strides_c=(heads * plane, nk, 1),
                  head_strides=(d, d, plane), act=2 if causal else 0, alpha=float(scale),
                  precision=precision, wait_for=wait_for)
    rows = bh * nq
    red = reduce_launch(rows, nk)
    if variant == "naive":
        k1 = rt.kernel("attention", "softmax_max", precision, defs)
        events.append(red.enqueue(rt, k1, s, mx, i32(nk), wait_for=events[-1:]))
        k2 = rt.kernel("attention", "softmax_sum", precision, defs)
        events.append(red.enqueue(rt, k2, s, mx, sm, i32(nk), wait_for=events[-1:]))
        k3 = rt.kernel("attention", "softmax_normalize", precision, defs)
        events.append(normalize_launch(rows, nk).enqueue(rt, k3, s, mx, sm, i32(nk), i32(rows),
                                                         wait_for=events[-1:]))
    else:
        k1 = rt.kernel("attention", "softmax_stats", precision, defs)
        events.append(red.enqueue(rt, k1, s, mx, sm, i32(nk), wait_for=events[-1:]))
    events += gemm(rt, s, v, out, nq, d, nk, batch=bh, heads=heads,
                   strides_a=(heads * plane, nk, 1), strides_b=(nk * c, c, 1),
                   strides_c=(nq * c, c, 1), head_strides=(plane, d, d),
                   stats=(mx, sm) if variant == "partial_softmax" else None,
                   precision=precision, wait_for=events[-1:])
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



# --- the records -------------------------------------------------------------------------------
#: fp32: sums of up to 4096 products in float32, relative error ~1e-6 · sqrt(n); 1e-4 of the
#: output scale leaves margin. fp16: inputs and output rounded to half (2^-11 relative each),
#: and for naive the probabilities too; 2e-2 of max|ref| covers the worst case seen.
TOLERANCE = {"fp32": (1e-5, 1e-4), "fp16": (1e-3, 2e-2)}




def simulate(variant, q, k, v, heads, causal, arith):
    """What `attention` stores at fp16 storage for (B, N, heads * d) host arrays, under the
    active tuning (sdsim.sim.attention: the GEMM walk, FlashAttention's rows, key tile and
    body)."""
    from sdsim.kernels import gemm as g
    from sdsim.sim import attention as sim

    if variant == "flash":
        body = "cpu" if flash_cpu() else (
            "gpu_unrolled" if tuning.current().flash_unroll else "gpu")
        return sim.flash(q, k, v, heads, causal, bk=flash_key_tile(q.shape[-1] // heads),
                         arith=arith, bq=flash_rows(), body=body)
    return sim.VARIANTS[variant](q, k, v, heads, causal, arith=arith,
                                 walk=lambda *s: g.k_walk(*s, attention=True))


def _shape(batch, heads, nq, nk, head_dim, causal=False):
    return dict(batch=batch, heads=heads, nq=nq, nk=nk, head_dim=head_dim, causal=causal)


def _record(name, cost):
    def launch(rt, a, ins, p, out, precision):
        return attention(rt, *ins[:3], a["batch"], a["nq"], a["nk"], a["heads"], a["head_dim"],
                         causal=bool(a.get("causal")), variant=name, precision=precision,
                         out=out)[1]

    def operands(a):
        c = a["heads"] * a["head_dim"]
        q, kv = a["batch"] * a["nq"] * c, a["batch"] * a["nk"] * c
        return [q, kv, kv], {}, q

    def make_inputs(a, rng):
        c = a["heads"] * a["head_dim"]
        return {"ins": [rng.standard_normal((a["batch"], n, c), np.float32)
                        for n in (a["nq"], a["nk"], a["nk"])], "params": {}}

    def ref(a, i, precision):
        return reference(*(stored(x, precision) for x in i["ins"]), a["heads"],
                         bool(a.get("causal")))

    # bench: SD1.4 (batch 2 for classifier-free guidance; 8 heads): self-attention at 64x64
    # (d=40), cross-attention to 77 tokens, 32x32 (d=80), 16x16 (d=160), the CLIP causal
    # self-attention (12 heads of 64, 77 tokens) and the VAE mid-block (1 head of 512, 64x64);
    # --quick keeps the head dims at small sizes. Calibration: shapes off SD1.4's.
    return Variant(
        "attention", name, cost, launch, operands, make_inputs, ref, TOLERANCE,
        {"tiny": [_shape(1, 2, 5, 7, 8), _shape(1, 1, 6, 6, 16, True)],
         "quick": [_shape(1, 2, 64, 64, 40), _shape(1, 2, 64, 77, 80), _shape(1, 1, 32, 32, 160),
                   _shape(1, 2, 77, 77, 64, True)],
         "full": [_shape(2, 8, 4096, 4096, 40), _shape(2, 8, 4096, 77, 40),
                  _shape(2, 8, 1024, 1024, 80), _shape(2, 8, 256, 256, 160),
                  _shape(1, 12, 77, 77, 64, True), _shape(1, 1, 4096, 4096, 512)]},
        _CAL[name], ("attention", name),
        simulate=lambda a, ins, p, arith: simulate(name, *ins[:3], a["heads"],
                                                   bool(a.get("causal")), arith))


def _attn_point(batch, heads, nq, nk, head_dim):
    return _shape(batch, heads, nq, nk, head_dim, causal=head_dim == 64 and nq == nk and nq < 300)


# Calibration sweeps (synthetic token counts off SD1.4's): query and key counts from tens to
# thousands and batch x heads from 1 to 30, so work-groups span a fraction of a wave to tens of
# waves on a large GPU and the key-tile steps 2 to ~200 (each head dim's sweep also gets a few
# points at the many-waves end, which a random draw can miss); FlashAttention's timing is per
# head dim (one model each), so its sweep covers each head dim SD runs attention at (40, 80, 160
# in the UNet, 64 in CLIP, 512 in the VAE), and the other variants' sweeps reach 512 too. The
# pools are more draws of the same kinds, for kernel bodies the sweep leaves short of cases
# (sdsim.calibration.sweep.top_up).
_TOKENS = [60, 150, 500, 900, 1500, 2500, 5000, 7000]
_GENERAL = dict(batch=[1, 2], heads=[1, 3, 6, 10, 15], nq=_TOKENS, nk=[50, *_TOKENS])
_MANY_WAVES = [_attn_point(2, h, nq, nk, 0) for h, nq, nk in
               ((10, 3600, 3000), (15, 6000, 1000), (6, 7000, 2500), (15, 2500, 200))]


def _with_dim(points, d):
    return [dict(p, head_dim=d) for p in points]


_CAL = {
    "naive": {"quick": sweep(_attn_point, 3, seed=6, batch=[1, 2], heads=[2, 4],
                             nq=[36, 100], nk=[60, 100], head_dim=[40, 96]),
              "full": sweep(_attn_point, 24, seed=6, **_GENERAL, head_dim=[40, 64, 96, 160])
              + _with_dim(_MANY_WAVES[:2], 96)
              # head dim 512 (the VAE's single head): a P.V whose V of several MiB per head is
              # read again by every row of tiles, where the draws above stay under 4 MiB
              + sweep(_attn_point, 3, seed=512, batch=[1, 2], heads=[1, 2], nq=_TOKENS[1:5],
                      nk=_TOKENS[2:], head_dim=[512])
              + [_attn_point(1, 1, 3600, 3600, 512), _attn_point(2, 1, 1500, 5000, 512)],
              # head dims up to tuning.NARROW put P.V, and as few keys QK^T, in the narrow GEMM
              # class, whose build may be a body of its own (the H100's l32x64): drawn from the
              # pool so that top_up gives it cases (SD1.4 runs neither)
              "pool": sweep(_attn_point, 300, seed=60, **_GENERAL, head_dim=[40, 64, 96, 160])
              + sweep(_attn_point, 40, seed=61, **_GENERAL, head_dim=[16, 32])
              + sweep(_attn_point, 40, seed=62, **dict(_GENERAL, nk=[8, 20, 32]),
                      head_dim=[40, 64, 96])},
    "flash": {"quick": sweep(_attn_point, 4, seed=7, batch=[1, 2], heads=[2, 4],
                             nq=[36, 100], nk=[60, 100], head_dim=[40]),
              "full": [p for d in (40, 64, 80, 160, 512)
                       for p in sweep(_attn_point, 12 if d == 40 else 6, seed=d, **_GENERAL,
                                      head_dim=[d]) + _with_dim(_MANY_WAVES, d)]
              # head dim 40 (the one SD runs it at) also over 2 to 8 waves of long key walks
              + sweep(_attn_point, 12, seed=41, batch=[1, 2], heads=[3, 6, 10, 12],
                      nq=[2500, 3600, 5000, 7000], nk=[2500, 3600, 5000, 7000], head_dim=[40]),
              "pool": [p for d in (40, 64, 80, 160, 512)
                       for p in sweep(_attn_point, 60, seed=100 + d, **_GENERAL, head_dim=[d])]},
}
_CAL["partial_softmax"] = _CAL["naive"]


RECORDS = (_record("naive", naive_cost), _record("partial_softmax", partial_softmax_cost),
           _record("flash", flash_cost))
register(*RECORDS)
