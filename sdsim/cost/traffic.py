"""DRAM traffic of each dispatch under three models: tiled, cached, compulsory.

- `tiled`: the kernel formulas' bytes (sdsim/kernels): every re-read of an operand by another
  work-group or dispatch is charged to DRAM, as if there were no cache.
- `compulsory`: each op's traffic capped at its compulsory bytes C (its inputs, weights and output
  moved once, plus its workspace written and read once): as if the cache served every re-read.
- `cached`: re-reads beyond C are charged only as far as a cache of the profile's `cache` size
  cannot serve them. Per op, with T its tiled bytes and S the cache in bytes:
    * the op's whole footprint fits (C <= S): every re-read hits, as in `compulsory`;
    * otherwise its streaming dispatches (elementwise, reductions, transforms, im2col) keep their
      tiled bytes: the data they re-read is larger than the cache and comes from DRAM again;
    * and its contraction dispatches (kernel classes gemm, conv, attention: matrix products of
      M*N*K multiply-adds, FLOPs = 2*M*N*K) move what the cache-blocked schedule moves, whose
      three b x b blocks (one of A, B, C) fit in the cache, b = sqrt(S / (3 * e)) elements for e
      bytes per element. That schedule reads a b-wide panel of A and of B per b x b block of C:
      2*M*N*K / b elements = FLOPs * e / b bytes. Hong & Kung ("I/O complexity: the red-blue
      pebble game", STOC 1981) show Omega(M*N*K / sqrt(S)) is necessary; Lam, Rothberg & Wolf
      ("The cache performance and optimizations of blocked algorithms", ASPLOS 1991) show the
      blocked schedule reaches it. The op is charged min(T, C + FLOPs_contractions * e / b),
      the saving taken from its contraction dispatches only (never below what `compulsory`
      charges them). FLOPs are the dispatches' own, so epilogues and a fused softmax count as
      multiply-adds too: a slight overestimate of the re-reads.
  It reads only the profile's cache size and the op and kernel shapes (FLOPs, bytes). It is an
  estimate of what a cache can save, not a simulation: it assumes the work-group order gives
  the blocked schedule's reuse, and that nothing else competes for the cache.

Where `compulsory` saves bytes in an op with contractions, the saving is taken from its
contraction dispatches (the ones whose tiling re-reads operands; the transforms and im2col around
them move their data once) in proportion to their bytes, or from all its dispatches by one
common factor where it exceeds theirs (or the op has none). No dispatch is charged less under
`cached` than under `compulsory`, so compulsory <= cached <= tiled for every dispatch.
"""

from __future__ import annotations

import dataclasses
import math

from sdsim.kernels import BYTES

TRAFFIC = ("tiled", "cached", "compulsory")
#: the default mode: the bytes the kernels' tiling moves, every re-read charged
DEFAULT = "tiled"
#: kernel classes whose FLOPs are matrix products (the blocked-schedule bound applies)
CONTRACTIONS = ("gemm", "conv", "attention")


def _per_op(plan) -> dict:
    """op index -> [tiled bytes, workspace bytes, contraction FLOPs, contraction bytes]."""
    out: dict = {}
    for c in plan:
        v = out.setdefault(c.op_index, [0.0, 0, 0.0, 0.0])
        v[0] += c.dram_bytes
        v[1] += c.workspace
        if c.kernel_class in CONTRACTIONS:
            v[2] += c.flops
            v[3] += c.dram_bytes
    return out


def block_edge(cache_bytes: float, precision: str) -> float:
    """Edge b (elements) of the square blocks of which three fit in the cache."""
    return math.sqrt(cache_bytes / (3 * BYTES[precision]))


def _scaled(plan: list, factors: dict) -> list:
    """The plan with each dispatch's bytes times its op's factor (contraction, other)."""
    out = []
    for c in plan:
        k = factors.get(c.op_index, (1.0, 1.0))[c.kernel_class not in CONTRACTIONS]
        out.append(dataclasses.replace(c, bytes_read=c.bytes_read * k,
                                       bytes_written=c.bytes_written * k))
    return out


def apply(graph, plan: list, traffic: str, cache_bytes: float = 0.0,
          precision: str = "fp16") -> list:
    """The plan with each dispatch's bytes as `traffic` charges them (see the module doc)."""
    if traffic not in TRAFFIC:
        raise ValueError(f"unknown traffic model {traffic!r}; expected one of {TRAFFIC}")
    if traffic == "tiled":
        return plan
    per_op = _per_op(plan)
    to_comp, cached = {}, {}   # op index -> (factor of contraction dispatches, of the others)
    for op in graph.ops:
        t, ws, f, tc = per_op.get(op.index, (0.0, 0, 0.0, 0.0))
        if not t:
            continue
        comp = op.bytes_read + op.bytes_written + 2 * ws
        saved = t - min(t, comp)
        to_comp[op.index] = ((1.0 - saved / tc, 1.0) if tc and saved <= tc
                             else (1.0 - saved / t,) * 2)
        if traffic == "compulsory":
            continue
        if comp <= cache_bytes:
            cached[op.index] = to_comp[op.index]
        elif tc:
            target = min(t, comp + f * BYTES[precision] / block_edge(cache_bytes, precision))
            cached[op.index] = (min(1.0, max(0.0, (target - (t - tc)) / tc)), 1.0)
    compulsory = _scaled(plan, to_comp)
    if traffic == "compulsory":
        return compulsory
    return [c if c.dram_bytes >= p.dram_bytes else p
            for c, p in zip(_scaled(plan, cached), compulsory)]


def cap_to_compulsory(graph, plan: list) -> list:
    """Each op's dispatch bytes scaled down to at most its compulsory traffic."""
    return apply(graph, plan, "compulsory")
