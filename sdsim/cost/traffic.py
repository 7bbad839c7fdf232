"""DRAM traffic of each dispatch under three models: tiled, cached, compulsory.

- `tiled`: the kernel formulas' bytes (sdsim/kernels): every re-read of an operand by another
  work-group or dispatch is charged to DRAM, as if there were no cache.
- `compulsory`: each op's traffic capped at its compulsory bytes C (its inputs, weights and output
  moved once, plus its workspace written and read once): as if the cache served every re-read.
- `cached`: re-reads beyond C are charged only as far as a cache of the profile's `cache` size
  cannot serve them. Per op, with T its tiled bytes and S the cache in bytes:
    * the op's whole footprint fits (C <= S): every re-read hits, traffic = min(T, C);
    * otherwise, for an op with contractions (kernel classes gemm, conv, attention: matrix
      products of M*N*K multiply-adds, FLOPs = 2*M*N*K): the traffic of the cache-blocked schedule
      whose three b x b blocks (one of A, B, C) fit in the cache, b = sqrt(S / (3 * e)) elements
      for e bytes per element. That schedule reads a b-wide panel of A and of B per b x b block of
      C: 2*M*N*K / b elements = FLOPs * e / b bytes beyond C. Hong & Kung ("I/O complexity: the
      red-blue pebble game", STOC 1981) show Omega(M*N*K / sqrt(S)) is necessary; Lam, Rothberg &
      Wolf ("The cache performance and optimizations of blocked algorithms", ASPLOS 1991) show the
      blocked schedule reaches it. Traffic = min(T, C + sum of the contraction dispatches'
      FLOPs * e / b);
    * otherwise (streaming ops: elementwise, reductions, transforms) the re-read data is larger
      than the cache and comes from DRAM again: traffic = T.
  It reads only the profile's cache size and the op and kernel shapes (FLOPs, bytes). It is an
  estimate of what a cache can save, not a simulation: it assumes the work-group order gives
  the blocked schedule's reuse, and that nothing else competes for the cache.

As with the compulsory cap, an op's dispatches are scaled down by one common factor, so the
model keeps compulsory <= cached <= tiled for every dispatch.
"""

from __future__ import annotations

import dataclasses
import math

from sdsim.kernels import BYTES

TRAFFIC = ("tiled", "cached", "compulsory")
#: the default mode; chosen by measured accuracy (reports/traffic-models.md)
DEFAULT = "tiled"
#: kernel classes whose FLOPs are matrix products (the blocked-schedule bound applies)
CONTRACTIONS = ("gemm", "conv", "attention")


def _per_op(plan) -> dict:
    """op index -> (tiled bytes, workspace bytes, contraction FLOPs) of its dispatches."""
    out: dict = {}
    for c in plan:
        t, w, f = out.get(c.op_index, (0.0, 0, 0.0))
        out[c.op_index] = (t + c.dram_bytes, w + c.workspace,
                           f + (c.flops if c.kernel_class in CONTRACTIONS else 0.0))
    return out


def block_edge(cache_bytes: float, precision: str) -> float:
    """Edge b (elements) of the square blocks of which three fit in the cache."""
    return math.sqrt(cache_bytes / (3 * BYTES[precision]))


def op_bytes(tiled: float, compulsory: float, contraction_flops: float, cache_bytes: float,
             precision: str, traffic: str) -> float:
    """DRAM bytes of one op under `traffic` (see the module doc)."""
    if traffic == "tiled":
        return tiled
    if traffic == "compulsory" or compulsory <= cache_bytes:
        return min(tiled, compulsory)
    if contraction_flops:
        e = BYTES[precision]
        return min(tiled, compulsory + contraction_flops * e / block_edge(cache_bytes, precision))
    return tiled


def apply(graph, plan: list, traffic: str, cache_bytes: float = 0.0,
          precision: str = "fp16") -> list:
    """The plan with each op's dispatch bytes scaled to its traffic under `traffic`."""
    if traffic not in TRAFFIC:
        raise ValueError(f"unknown traffic model {traffic!r}; expected one of {TRAFFIC}")
    if traffic == "tiled":
        return plan
    per_op = _per_op(plan)
    scale = {}
    for op in graph.ops:
        t, ws, f = per_op.get(op.index, (0.0, 0, 0.0))
        comp = op.bytes_read + op.bytes_written + 2 * ws
        scale[op.index] = op_bytes(t, comp, f, cache_bytes, precision, traffic) / t if t else 1.0
    return [dataclasses.replace(c, bytes_read=c.bytes_read * scale[c.op_index],
                                bytes_written=c.bytes_written * scale[c.op_index]) for c in plan]


def cap_to_compulsory(graph, plan: list) -> list:
    """Scale each op's dispatch bytes down to at most its compulsory traffic."""
    return apply(graph, plan, "compulsory")
