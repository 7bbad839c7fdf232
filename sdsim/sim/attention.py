"""NumPy simulations of the attention kernels of opencl/attention.cl that round to the storage
precision exactly where the kernels store, so their fp16 error can be studied without a GPU.

Rounding points (fp16 storage; arithmetic is float32 unless `acc` says otherwise):
- inputs q, k, v are stored in fp16;
- naive: S = fp16(scale * q.k); row max and sum of exp are fp32; P = fp16(exp(S - max) / sum);
  O = fp16(P @ V);
- partial_softmax: S = fp16(scale * q.k); stats fp32 (the max and 1 / sum); O =
  fp16((exp(S - max) * (1 / sum)) @ V), the probabilities never rounded;
- flash: nothing stored but O = fp16(acc / l); scores, running max, sum and the accumulators
  live in registers (float32, or float16 with acc="fp16" to model native-half accumulation),
  streamed over key tiles of `bk` rows with the online-softmax rescale per tile.
Summation order inside a dot product differs from the kernels (fp32 noise, not a rounding point).
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.errors import SdsimError
from sdsim.precision import BYTES, stored

#: accumulator dtypes of the tiled FlashAttention simulation
ACC = {"fp32": np.float32, "fp16": np.float16}


def _heads(x, heads):
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)


def _merge(o):
    b, h, n, d = o.shape
    return o.transpose(0, 2, 1, 3).reshape(b, n, h * d)


def _prepare(q, k, v, heads, precision):
    if precision not in BYTES:
        raise SdsimError(f"attention sim: unknown precision '{precision}'; expected fp32 or fp16")
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


def naive(q, k, v, heads, causal=False, precision="fp16"):
    """The naive chain: scores and probabilities both stored."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision)
    s = stored(_scores(qh, kh, scale, causal), precision, np.float32)
    m = s.max(-1, keepdims=True)
    l = np.exp(s - m).sum(-1, keepdims=True, dtype=np.float32)
    p = stored(np.exp(s - m) / l, precision, np.float32)
    return stored(_merge(np.matmul(p, vh)), precision, np.float32)


def partial_softmax(q, k, v, heads, causal=False, precision="fp16"):
    """Partially fused softmax: stored scores, fp32 row stats, probabilities formed in P.V."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision)
    s = stored(_scores(qh, kh, scale, causal), precision, np.float32)
    m = s.max(-1, keepdims=True)
    inv = np.float32(1) / np.exp(s - m).sum(-1, keepdims=True, dtype=np.float32)
    return stored(_merge(np.matmul(np.exp(s - m) * inv, vh)), precision, np.float32)


def flash(q, k, v, heads, causal=False, precision="fp16", bk=32, acc="fp32"):
    """FlashAttention: online softmax over key tiles of `bk` rows; `acc` is the register type
    of the running max, sum and output accumulators ("fp32" as the kernel, "fp16" to model a
    native-half variant)."""
    qh, kh, vh, scale = _prepare(q, k, v, heads, precision)
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
