"""GroupNorm and LayerNorm of opencl/norm.cl in NumPy, rounding exactly where the kernels round,
so that a device with native half arithmetic can be checked against them bit for bit.

fp16 storage; arith "fp16" and "fp16acc" are the same kernels (ARITH 2's half accumulators do not
apply to the statistics: a half sum of 40,960 squares near 1, one SD1.4 UNet slice, stops growing
at 2048 and overflows once they average 1.6). Rounding points:
- x, gamma and beta are stored in fp16;
- the statistics are float32 in the kernels' order. K is the slice's first element; lane l of a
  WG-lane work-group (sdsim.kernels.norm.WG for GroupNorm, LN_WG for LayerNorm) adds t = x - K and t * t (rounded, then added: no FMA) over its elements
  e0 + l, e0 + l + WG, ... starting from 0, then the lanes add as a tree (lane i += lane i + o
  for o = WG / 2, ..., 1). dm = S1 / n, var = fmax(S2 / n - dm * dm, 0) and rstd =
  1 / sqrt(var + eps), each operation rounded to float32. The fused split form sums each chunk
  of a row that way (gn_partial's partials), then lane l of every chunk's work-group adds
  partials l, l + WG, ... and the same tree. The naive chain stores mean = K + S1 / n and
  var = (sum of (x - mean)^2) / n, both summed that way;
- the normalize step is half: t = (x - K) - dm (naive: x - mean), y = t * rstd * gamma + beta,
  SiLU y / (1 + exp(-y)), dm, mean and rstd rounded to half first, each operation rounded to
  half (exp(-y) overflows to inf for y < -11.09, and SiLU is -0 there). A float32 operation on halves rounded to half is the half operation (24 bits >= 2 * 11 +
  2 make the double rounding innocuous), which is how the simulation computes it;
- "fp32": float32 throughout, rounded once to fp16 at the store (the device may fuse multiply-adds
  and uses rsqrt: not a bit-exact mirror).
The SiLU's half exp is the device's library function there and sdsim.sim.half.exp16 here (float's
exp rounded to half, or a device's own inside sdsim.sim.half.library).
"""

from __future__ import annotations

from math import ceil

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels import norm as kn
from sdsim.precision import ARITHS, stored
from sdsim.sim.half import exp16

F32 = np.float32


def _h(a) -> np.ndarray:
    """`a` rounded to half, held as float32."""
    return np.asarray(a, F32).astype(np.float16).astype(F32)


def lane_sum(t, wg) -> np.ndarray:
    """Sum of the last axis as a `wg`-lane work-group adds it: lane l walks elements l, l + wg,
    ... in order from 0, then the lanes add as a tree; float32, shape t.shape[:-1]."""
    m = t.shape[-1]
    steps = ceil(m / wg)
    # past the end a lane adds nothing; +0 keeps its sum, which starts at +0 and so is never -0
    pad = np.zeros(t.shape[:-1] + (steps * wg,), F32)
    pad[..., :m] = t
    lanes = np.zeros(t.shape[:-1] + (wg,), F32)
    for k in range(steps):
        lanes = lanes + pad[..., k * wg:(k + 1) * wg]
    o = wg // 2
    while o:
        lanes = lanes[..., :o] + lanes[..., o:2 * o]
        o //= 2
    return lanes[..., 0]


def partial_sums(xs, wg, chunk) -> np.ndarray:
    """What gn_partial writes for the rows of `xs` (slices, n): (slices, chunks, 2) float32, the
    shifted sum and sum of squares of each `chunk` elements of a row."""
    t = xs - xs[:, :1]
    tt = t * t
    return np.stack([np.stack([lane_sum(t[:, b:b + chunk], wg), lane_sum(tt[:, b:b + chunk], wg)],
                              -1) for b in range(0, xs.shape[1], chunk)], 1)


def naive_stats(xs, wg):
    """What gn_mean and gn_var write for the rows of `xs` (slices, n): float32 mean and variance."""
    n = F32(xs.shape[1])
    k = xs[:, :1]
    mean = k[:, 0] + lane_sum(xs - k, wg) / n
    d = xs - mean[:, None]
    return mean, lane_sum(d * d, wg) / n


def _shifted_stats(xs, wg, chunk=None):
    """(K, dm, var) of each row of `xs` (slices, n) as the one-pass kernels compute them; with
    `chunk`, through per-chunk partial sums (gn_partial, then gn_apply's reduction)."""
    n = xs.shape[-1]
    if chunk is None:
        t = xs - xs[:, :1]
        s1, s2 = lane_sum(t, wg), lane_sum(t * t, wg)
    else:
        parts = partial_sums(xs, wg, chunk)
        s1, s2 = lane_sum(parts[..., 0], wg), lane_sum(parts[..., 1], wg)
    nf = F32(n)
    dm = s1 / nf
    var = np.fmax(s2 / nf - dm * dm, F32(0))
    return xs[:, 0], dm, var


def _normalize(t_of, r, gamma, beta, act, arith):
    """y = t * r * gamma + beta [then SiLU], r per row, as stored; t_of(rnd) is the centred x,
    with `rnd` applied to each of its operations (rounding to half, or none for float)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if arith == "fp32":
            y = t_of(lambda a: a) * r[:, None] * gamma + beta
            if act == "silu":
                y = y / (F32(1) + np.exp(-y))
            return y.astype(np.float16)
        y = _h(_h(_h(t_of(_h) * _h(r)[:, None]) * gamma) + beta)
        if act == "silu":
            y = _h(y / _h(F32(1) + exp16(-y).astype(F32)))
        return y.astype(np.float16)


def _check(arith, act):
    if arith not in ARITHS:
        raise SdsimError(f"norm sim: unknown arithmetic '{arith}'; expected one of "
                         f"{', '.join(ARITHS)}")
    if act not in (None, "silu"):
        raise SdsimError(f"norm sim: unknown activation {act!r}; expected None or 'silu'")


def group_norm(x, gamma, beta, groups, eps=1e-5, *, act=None, variant="fused", arith="fp16",
               chunk=None) -> np.ndarray:
    """GroupNorm of `x` (B, C, *spatial) as the fp16-storage kernels compute it: `variant`
    "naive" (gn_mean, gn_var, gn_normalize) or "fused" (gn_fused, or gn_partial and gn_apply for
    slices longer than `chunk`, default sdsim.kernels.norm.CHUNK). Returned as float16."""
    _check(arith, act)
    if variant not in ("naive", "fused"):
        raise SdsimError(f"norm sim: unknown variant '{variant}'; expected naive or fused")
    x = stored(x, "fp16", F32)
    b, c = x.shape[:2]
    if c % groups:
        raise SdsimError(f"norm sim: {c} channels do not split into {groups} groups")
    xs = x.reshape(b * groups, -1)
    n = xs.shape[1]
    hw = n // (c // groups)
    g, bt = (np.broadcast_to(np.repeat(stored(p, "fp16", F32), hw).reshape(1, groups, n),
                             (b, groups, n)).reshape(b * groups, n) for p in (gamma, beta))
    eps = F32(eps)
    if variant == "naive":
        mean, var = naive_stats(xs, kn.WG)
        y = _normalize(lambda rnd: rnd(xs - rnd(mean)[:, None]), F32(1) / np.sqrt(var + eps),
                       g, bt, act, arith)
    else:
        chunk = chunk or kn.CHUNK
        k, dm, var = _shifted_stats(xs, kn.WG, chunk if n > chunk else None)
        y = _normalize(lambda rnd: rnd(rnd(xs - k[:, None]) - rnd(dm)[:, None]),
                       F32(1) / np.sqrt(var + eps), g, bt, act, arith)
    return y.reshape(x.shape)


def layer_norm(x, gamma, beta, eps=1e-5, *, arith="fp16") -> np.ndarray:
    """LayerNorm over the last dim of `x` as the fp16-storage ln_rowwise computes it (one
    LN_WG-lane work-group per row). Returned as float16."""
    _check(arith, None)
    x = stored(x, "fp16", F32)
    xs = x.reshape(-1, x.shape[-1])
    k, dm, var = _shifted_stats(xs, kn.LN_WG)
    y = _normalize(lambda rnd: rnd(rnd(xs - k[:, None]) - rnd(dm)[:, None]),
                   F32(1) / np.sqrt(var + F32(eps)), stored(gamma, "fp16", F32),
                   stored(beta, "fp16", F32), None, arith)
    return y.reshape(x.shape)
