"""NumPy simulations of the attention kernels of opencl/attention.cl that round to the storage
precision exactly where the kernels store, so their fp16 error can be studied without a GPU.

Rounding points with float arithmetic (arith="fp32"; fp16 storage; float32 unless `acc` says
otherwise):
- inputs q, k, v are stored in fp16;
- naive: S = fp16(scale * q.k); row max and sum of exp are fp32; P = fp16(exp(S - max) / sum);
  O = fp16(P @ V);
- partial_softmax: S = fp16(scale * q.k); stats fp32 (the max and 1 / sum); O =
  fp16((exp(S - max) * (1 / sum)) @ V), the probabilities never rounded;
- flash: nothing stored but O = fp16(acc / l); scores, running max, sum and the accumulators
  live in registers (float32, or float16 with acc="fp16": everything in half, the running sum
  too), streamed over key tiles of `bk` rows with the online-softmax rescale per tile.
Here summation order inside a dot product differs from the kernels (fp32 noise).

With half arithmetic (arith "fp16" or "fp16acc", the kernels' ARITH 1 and 2 on a device with
cl_khr_fp16) the simulation is the kernels' bit for bit, summation orders included:
- QK^T and P.V are opencl/gemm.cl's GEMM (sdsim.sim.gemm, K walked as `walk` says): S =
  fp16(scale * dot), the dot of half products into float32 ("fp16") or of half fma into half
  ("fp16acc"); flash computes each score the same way, walking all of d;
- half: the row max, e = exp_h(fp16(s - max)) (exp_h: sdsim.sim.half.exp16, float's exp rounded
  to half unless a device's own library is in use), flash's rescale exp_h(fp16(m_old - m_new)),
  its P.V products and, with "fp16acc", its output accumulators and their rescale (one rounding
  each, sdsim.sim.half.fma16);
- float32: the row sum of exponentials in the kernels' order (naive: WG work-items each adding
  every WG-th element, then a tree; partial softmax: the online per-item sums and their tree
  merge; flash: per key in turn, or on the CPU body 8 lanes and a tree per key tile), its
  reciprocal, P = fp16(e / sum) (naive) or fp16(e * (1 / sum)) (P.V's prologue), flash's output
  accumulators with "fp16" and O = fp16(acc * (1 / l)). A half sum of 4096 terms near 1 stalls at
  2048 (half's spacing there is 2), so the sum is never half.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels.attention import SOFTMAX_WG
from sdsim.precision import ARITHS, BYTES, stored
from sdsim.sim import gemm as gemm_sim
from sdsim.sim.half import exp16, fma16

#: accumulator dtypes of the tiled FlashAttention simulation
ACC = {"fp32": np.float32, "fp16": np.float16}
#: FlashAttention bodies: the GPU's, looping over a key tile's keys or unrolled over the whole
#: tile (FLASH_UNROLL), and the CPU's (FLASH_CPU)
BODIES = ("gpu", "gpu_unrolled", "cpu")


def _heads(x, heads):
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)


def _merge(o):
    b, h, n, d = o.shape
    return o.transpose(0, 2, 1, 3).reshape(b, n, h * d)


def _prepare(q, k, v, heads, precision, arith="fp32"):
    if precision not in BYTES:
        raise SdsimError(f"attention sim: unknown precision '{precision}'; expected fp32 or fp16")
    if arith not in ARITHS:
        raise SdsimError(f"attention sim: unknown arithmetic '{arith}'; expected one of "
                         f"{', '.join(ARITHS)}")
    if arith != "fp32" and precision != "fp16":
        raise SdsimError(f"attention sim: arithmetic '{arith}' needs fp16 storage")
    c = q.shape[-1]
    if c % heads:
        raise SdsimError(f"attention sim: {c} channels do not split into {heads} heads")
    qh, kh, vh = (_heads(stored(x, precision, np.float32), heads) for x in (q, k, v))
    return qh, kh, vh, np.float32(1.0 / math.sqrt(c // heads))


def _scores(qh, kh, scale, causal):
    s = np.matmul(qh, kh.transpose(0, 1, 3, 2)) * scale
    if causal:
        nq, nk = s.shape[-2:]
        s = np.where(np.tril(np.ones((nq, nk), bool)), s, np.float32(-np.inf))
    return s.astype(np.float32)


# --- half arithmetic: the kernels' rounding points and summation orders -------------------------
def _no_walk(batch, m, k, n):
    return None, None


def _gemm(a, b, arith, walk, alpha=1.0):
    """A @ B of (B, H, m, k) and (B, H, k, n) halves as gemm.cl computes it, as float32."""
    lead = a.shape[:2]
    a, b = a.reshape(-1, *a.shape[2:]), b.reshape(-1, *b.shape[2:])
    kslice, k_step = walk(a.shape[0], a.shape[1], a.shape[2], b.shape[2])
    c = gemm_sim.gemm(a, b, arith=arith, alpha=alpha, kslice=kslice, k_step=k_step)
    return c.astype(np.float32).reshape(*lead, *c.shape[1:])


def _half_scores(qh, kh, scale, causal, arith, walk):
    s = _gemm(qh, kh.transpose(0, 1, 3, 2), arith, walk, scale)
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, np.float32(-np.inf))
    return s


def _exp_diff(x, m):
    """exp(x - m) of halves (float32 arrays holding halves) in half: the difference rounded to
    half, then the device's half exp (sdsim.sim.half.exp16). As float32."""
    with np.errstate(invalid="ignore", over="ignore"):
        return exp16((x - m).astype(np.float16)).astype(np.float32)


def _columns(x, wg, fill):
    """x (..., n) as (..., ceil(n / wg), wg): column l holds elements l, l + wg, ..."""
    n = x.shape[-1]
    t = -(-n // wg)
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, t * wg - n)], constant_values=fill)
    return x.reshape(*x.shape[:-1], t, wg)


def _wg_sum(e, wg):
    """softmax_sum's float row sums: work-item l adds elements l, l + wg, ... in turn, then a
    tree adds item l + o into item l for o = wg / 2, ..., 1."""
    acc = np.zeros(e.shape[:-1] + (wg,), np.float32)
    for col in np.moveaxis(_columns(e, wg, 0), -2, 0):
        acc = acc + col
    o = wg // 2
    while o:
        acc = acc[..., :o] + acc[..., o:2 * o]
        o //= 2
    return acc[..., 0]


def _online_stats(s, wg):
    """softmax_stats: each work-item's online max and float sum of exponentials over elements
    l, l + wg, ..., merged pairwise by the same tree; (row max, row sum)."""
    m = np.full(s.shape[:-1] + (wg,), -np.inf, np.float32)
    acc = np.zeros_like(m)
    for x in np.moveaxis(_columns(s, wg, -np.inf), -2, 0):
        valid = x != -np.inf
        up = valid & (x > m)
        acc = np.where(up, acc * _exp_diff(m, x) + np.float32(1),
                       np.where(valid, acc + _exp_diff(x, m), acc))
        m = np.where(up, x, m)
    o = wg // 2
    while o:
        ma, mb = m[..., :o], m[..., o:2 * o]
        mm = np.maximum(ma, mb)
        ea = np.where(ma == -np.inf, np.float32(0), _exp_diff(ma, mm))
        eb = np.where(mb == -np.inf, np.float32(0), _exp_diff(mb, mm))
        acc = acc[..., :o] * ea + acc[..., o:2 * o] * eb
        m = mm
        o //= 2
    return m[..., 0], acc[..., 0]


def _mac(a, b, acc, arith):
    """acc + a * b as gemm.cl's MAC: "fp16" rounds the product to half into a float32
    accumulator; "fp16acc" is a half fma (sdsim.sim.half.fma16), held as float32."""
    prod = a * b   # float32: exact for halves
    if arith == "fp16":
        return acc + prod.astype(np.float16).astype(np.float32)
    return fma16(prod, acc).astype(np.float32)


def _to_acc(x, arith):
    return x.astype(np.float16).astype(np.float32) if arith == "fp16acc" else x


def _flash_half(qh, kh, vh, scale, causal, arith, bk, bq, body):
    """attn_flash with half arithmetic (module doc), as float32 before the output's rounding."""
    s = _half_scores(qh, kh, scale, causal, arith, _no_walk)
    nq, nk = s.shape[-2:]
    tiles = -(-nk // bk)
    s = np.pad(s, [(0, 0)] * 3 + [(0, tiles * bk - nk)], constant_values=-np.inf)
    vp = np.pad(vh, [(0, 0)] * 2 + [(0, tiles * bk - nk), (0, 0)])
    # keys a query tile stages: causal stops after the key of the tile's last row
    last = np.minimum(nq, (np.arange(nq) // bq + 1) * bq)
    kend = np.minimum(nk, last) if causal else np.full(nq, nk)
    m = np.full(s.shape[:-1], -np.inf, np.float32)
    l = np.zeros_like(m)
    o = np.zeros(qh.shape, np.float32)
    for j0 in range(0, tiles * bk, bk):
        sc = s[..., j0:j0 + bk]
        mt = np.maximum(m, sc.max(-1))
        run = (j0 < kend) & (mt != -np.inf)
        alpha = np.where(m == -np.inf, np.float32(0), _exp_diff(m, mt))
        p = np.where(sc == -np.inf, np.float32(0), _exp_diff(sc, mt[..., None]))
        if body == "cpu":   # 8 lanes of key t * 8 + lane, then a tree over the lanes
            lv = np.zeros(p.shape[:-1] + (8,), np.float32)
            for t in range(bk // 8):
                lv = lv + p[..., 8 * t:8 * t + 8]
            l4 = lv[..., :4] + lv[..., 4:]
            l2 = l4[..., :2] + l4[..., 2:]
            ln = l * alpha + (l2[..., 0] + l2[..., 1])
        else:
            ln = l * alpha
            for jj in range(bk):
                ln = ln + p[..., jj]
        on = _to_acc(o * alpha[..., None], arith)
        for jj in range(bk):   # keys past the staged ones are zero rows, walked unless "gpu"
            staged = j0 + jj < kend
            walked = (staged if body == "gpu" else j0 < kend)[:, None]
            vj = np.where(staged[:, None], vp[:, :, j0 + jj, None, :], np.float32(0))
            on = np.where(walked, _mac(p[..., jj, None], vj, on, arith), on)
        o = np.where(run[..., None], on, o)
        l = np.where(run, ln, l)
        m = np.where(run, mt, m)
    return o * (np.float32(1) / l)[..., None]


def naive(q, k, v, heads, causal=False, precision="fp16", arith="fp32", walk=None):
    """The naive chain: scores and probabilities both stored. `arith`: the kernels' arithmetic
    (module doc); `walk(batch, m, k, n)` -> (kslice, k_step): how each GEMM walks K
    (sdsim.kernels.gemm.k_walk; default the CPU micro-kernel, unsplit)."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision, arith)
    if arith != "fp32":
        walk = walk or _no_walk
        s = _half_scores(qh, kh, scale, causal, arith, walk)
        e = _exp_diff(s, s.max(-1, keepdims=True))
        p = (e / _wg_sum(e, SOFTMAX_WG)[..., None]).astype(np.float16).astype(np.float32)
        return _merge(_gemm(p, vh, arith, walk))
    s = stored(_scores(qh, kh, scale, causal), precision, np.float32)
    m = s.max(-1, keepdims=True)
    l = np.exp(s - m).sum(-1, keepdims=True, dtype=np.float32)
    p = stored(np.exp(s - m) / l, precision, np.float32)
    return stored(_merge(np.matmul(p, vh)), precision, np.float32)


def partial_softmax(q, k, v, heads, causal=False, precision="fp16", arith="fp32", walk=None):
    """Partially fused softmax: stored scores, fp32 row stats, probabilities formed in P.V;
    `arith` and `walk` as for `naive`."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision, arith)
    if arith != "fp32":
        walk = walk or _no_walk
        s = _half_scores(qh, kh, scale, causal, arith, walk)
        m, total = _online_stats(s, SOFTMAX_WG)
        inv = (np.float32(1) / total)[..., None]
        p = (_exp_diff(s, m[..., None]) * inv).astype(np.float16).astype(np.float32)
        return _merge(_gemm(p, vh, arith, walk))
    s = stored(_scores(qh, kh, scale, causal), precision, np.float32)
    m = s.max(-1, keepdims=True)
    inv = np.float32(1) / np.exp(s - m).sum(-1, keepdims=True, dtype=np.float32)
    return stored(_merge(np.matmul(np.exp(s - m) * inv, vh)), precision, np.float32)


def flash(q, k, v, heads, causal=False, precision="fp16", bk=32, acc="fp32", arith="fp32",
          bq=32, body="gpu"):
    """FlashAttention: online softmax over key tiles of `bk` rows; `acc` is the register type
    of the running max, sum and output accumulators with float arithmetic ("fp32" as the
    kernel, "fp16" to model an all-half variant). `arith` "fp16" or "fp16acc": the kernel's half
    builds (module doc), for work-groups of `bq` query rows and the kernel body `body` (BODIES),
    which set which keys a tile walks and the order of its float sum."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision, arith)
    if arith != "fp32":
        if acc != "fp32" or body not in BODIES or (body == "cpu" and bk % 8):
            raise SdsimError(f"flash sim: arithmetic '{arith}' takes acc fp32 and a body of "
                             f"{', '.join(BODIES)} (the CPU's with bk a multiple of 8)")
        o = _flash_half(qh, kh, vh, scale, causal, arith, bk, bq, body)
        return stored(_merge(o), precision, np.float32)
    at = ACC[acc]
    nq, nk = qh.shape[2], kh.shape[2]
    m = np.full(qh.shape[:3] + (1,), -np.inf, at)
    l = np.zeros(qh.shape[:3] + (1,), at)
    o = np.zeros(qh.shape, at)
    rows = np.arange(nq)[:, None]
    for j0 in range(0, nk, bk):
        s = np.matmul(qh, kh[:, :, j0:j0 + bk].transpose(0, 1, 3, 2)) * scale
        if causal:
            s = np.where(np.arange(j0, min(nk, j0 + bk))[None, :] <= rows, s, -np.inf)
        s = s.astype(at)
        mt = np.maximum(m, s.max(-1, keepdims=True))
        with np.errstate(invalid="ignore"):
            alpha = np.where(np.isneginf(m), 0, np.exp(m - mt)).astype(at)
            p = np.where(np.isneginf(s), 0, np.exp(s - mt)).astype(at)
        l = (l * alpha + p.sum(-1, keepdims=True, dtype=at)).astype(at)
        o = (o * alpha + np.matmul(p, vh[:, :, j0:j0 + bk].astype(at))).astype(at)
        m = np.where(np.isneginf(mt), m, mt).astype(at)
    return stored(_merge((o / l).astype(np.float32)), precision, np.float32)


VARIANTS = {"naive": naive, "partial_softmax": partial_softmax, "flash": flash}


def fp16_error_table(seqs=(77, 256, 1024), head_dim=40, heads=2, seed=0, logit_scale=1.0):
    """Max abs error against float64 of each simulated variant in fp16, per sequence length:
    rows of dicts for sdsim.output.render_rows."""
    from sdsim.kernels.attention import reference  # the float64 reference (pure NumPy)

    rng = np.random.default_rng(seed)
    rows = []
    for n in seqs:
        q, k, v = (rng.standard_normal((1, n, heads * head_dim)).astype(np.float32)
                   for _ in range(3))
        q *= np.float32(logit_scale)
        ref = reference(*(x.astype(np.float16) for x in (q, k, v)), heads)
        row = {"seq": n, "head_dim": head_dim}
        for name, fn in VARIANTS.items():
            row[name] = float(np.abs(fn(q, k, v, heads, precision="fp16") - ref).max())
        row["flash_fp16_acc"] = float(np.abs(flash(q, k, v, heads, precision="fp16", acc="fp16")
                                             - ref).max())
        rows.append(row)
    return rows
