"""Costs of scaled dot-product attention (family "attention"), as the kernels of
opencl/attention.cl tile it.

kwargs: batch, heads, nq, nk, head_dim, causal (bool), precision. Inputs are (B, N, heads*head_dim)
tensors read in place (no head transposes). Scores and probabilities are stored in the storage
precision; per-row statistics (max, sum of exponentials) are fp32.
- "naive": QK^T (16x16 output tiles, writes S), row max, row exp-sum, normalize (writes P over S),
  P·V (16x16 output tiles). Causal entries are masked in QK^T, the full matrix is still computed.
- "partial_softmax": QK^T (writes S), one reduction pass writing row max and sum of exponentials
  (online), and P·V that loads each score as exp(s - max) / sum so P is never written.
- "flash": one dispatch; a work-group owns FLASH_BQ query rows and streams K/V tiles through local
  memory with the online softmax; K and V are re-read once per query tile. With `causal`, key
  tiles wholly after a query tile's last row are skipped.
"""

from __future__ import annotations

from math import ceil

from sdsim.kernels import BYTES, KernelCost, variant

#: output tile edge of the QK^T and P·V kernels (local size TILE x TILE)
TILE = 16
#: query rows per FlashAttention work-group (one work-item per row)
FLASH_BQ = 32
STAT = 4  # fp32 row statistics

# per score element: max, subtract, exp, add (stats); subtract, exp, divide (normalize)
_STATS_FLOPS = 4
_NORM_FLOPS = 3


def _qk(bh, nq, nk, d, b):
    # 2 per multiply-add, plus the 1/sqrt(d) scaling of each score
    flops = bh * nq * nk * (2 * d + 1)
    read = bh * d * b * (nq * ceil(nk / TILE) + nk * ceil(nq / TILE))
    s = bh * nq * nk * b
    return KernelCost("attn_qk", "gemm", flops, read, s, workspace=s)


def _pv(bh, nq, nk, d, b, name, extra_read=0, extra_flops=0):
    flops = bh * nq * nk * (2 * d + extra_flops)
    read = bh * b * (nq * nk * ceil(d / TILE) + nk * d * ceil(nq / TILE)) + extra_read
    return KernelCost(name, "gemm", flops, read, bh * nq * d * b)


@variant("attention", "naive")
def naive(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, d = BYTES[precision], batch * heads, head_dim
    s = bh * nq * nk
    rows = bh * nq * STAT
    return [
        _qk(bh, nq, nk, d, b),
        KernelCost("softmax_max", "reduction", s, s * b, rows, workspace=rows),
        KernelCost("softmax_sum", "reduction", 3 * s, s * b + rows, rows, workspace=rows),
        KernelCost("softmax_normalize", "elementwise", _NORM_FLOPS * s, s * b + 2 * rows, s * b),
        _pv(bh, nq, nk, d, b, "attn_pv"),
    ]


@variant("attention", "partial_softmax")
def partial_softmax(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, d = BYTES[precision], batch * heads, head_dim
    s = bh * nq * nk
    rows = bh * nq * STAT
    # P·V re-derives each probability once per d-tile of the output it feeds
    return [
        _qk(bh, nq, nk, d, b),
        KernelCost("softmax_stats", "reduction", _STATS_FLOPS * s, s * b, 2 * rows,
                   workspace=2 * rows),
        _pv(bh, nq, nk, d, b, "attn_pv_softmax", extra_read=2 * rows * ceil(d / TILE),
            extra_flops=_NORM_FLOPS * ceil(d / TILE)),
    ]


def flash_visits(nq, nk, causal):
    """(keys streamed, scores computed) summed over query tiles; causal stops each tile after
    the key of its last row (key j is visible to query i when j <= i)."""
    keys = pairs = 0
    for t in range(ceil(nq / FLASH_BQ)):
        rows = min(FLASH_BQ, nq - t * FLASH_BQ)
        k = min(nk, t * FLASH_BQ + rows) if causal else nk
        keys += k
        pairs += rows * k
    return keys, pairs


@variant("attention", "flash")
def flash(batch, heads, nq, nk, head_dim, precision, causal=False):
    b, bh, d = BYTES[precision], batch * heads, head_dim
    keys, pairs = flash_visits(nq, nk, causal)
    # per score: dot (2d) + scale + online softmax (max, subtract, exp, add) + P·V (2d);
    # the d accumulators are rescaled once per key tile (amortised d / FLASH_BQ per score)
    flops = bh * pairs * (4 * d + 5 + d / FLASH_BQ)
    read = bh * b * (nq * d + 2 * keys * d)
    return [KernelCost("attn_flash", "attention", flops, read, bh * nq * d * b)]
