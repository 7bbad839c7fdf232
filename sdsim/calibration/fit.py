"""Fit the geometry model of sdsim/cost/waves.py to measured dispatches, one kernel body at a time.

For each model key (one OpenCL kernel body: "gemm", "conv_direct", "attn_flash_d40", ...) the
measured synthetic points (launch geometry, seconds) give the coefficients of the model of
sdsim/cost/waves.py (`model_time`, its formula there): t0, group, latency, wave_latency, step,
spill >= 0 and padding in (0, 1) fitted by robust least squares on log times (every point weighs
by its relative error, a long dispatch more than a short one: WEIGHT_POWER; a point off by far
more than the rest, a dispatch the other core's work or a page-fault storm slowed, weighs less:
LOSS) for each residency in RESIDENCIES, the best residency kept, one for the sparsely swept
bodies of a GEMM tile configuration (`residency_group`) and its own for a body with FINE_POINTS
points (`fit_all`); then `tail` in (0, 1) at that residency and at its close rivals, a rival
winning only if its tail halves the error (`_fit_key`; fitted alongside every residency, the tail
blurs the wave steps that place it); last, `later` in [1 - LATER_CUT, 1] at the residency so
chosen, where some point runs in one wave and some in more, kept where it cuts the error.
Fitted with the residency or its rivals, `later` stands in for it: at 0.5 it mimics twice the
residency, and on the H100's fp32 sweeps of 07:35 and 09:26 UTC (2026-12-07) the narrow GEMM
builds, fitted so, moved from residency 4 to 1, and SD's Winograd GEMMs had 41% of their time
within 10% (97% before).
The max() makes the error surface kinked, with local minima a descent from one start falls into
differently on different SciPy builds; so each fit starts from the best few points of a fixed
grid (`_starts`), and refits of the same measurements on other machines land in the same
minimum, but for coefficients the points do not determine (the padding of a body whose sweep
always fills its lanes).
The fixed cost t0 is at most the body's fastest training time, since every dispatch pays it:
free, PoCL's fp32 GEMM fit put 0.49 ms there, and priced a 17 us GEMM at 0.5 ms.
The latency is fitted only where some training point runs in one wave at the residency tried:
no other point shows what it bounds, and a free latency stands in for the wave count of the
fewest-wave points (the H200's large-tile P.V, swept at 5 waves and more, priced SD's 4-wave call
at 5 waves' time, +30%).
The device's cache size is the one its copy microbenchmark measures (sdsim/calibration/microbench.py
`cache_size`) where the calibration has it, else the one of CACHES whose fits of all kernel bodies
together leave the least error: an H100's sweeps cost within 7% of each other from 1 MiB to no
cache at all, and the fp32 fit chose 1 MiB of its 50 MB L2, pricing every large stream as
spilling. Points are split once into a training set (80%) and a held-out set (20%, never seen
by the fit): the held-out error is what the model does on shapes it did not see.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit   # the logistic function, without exp's overflow warnings

from sdsim.cost.waves import (Coefficients, footprint, geometry_time, last_wave, missed_share,
                              model_time, thrashes)

#: residencies (work-groups resident per compute unit) tried by the fit: every count to 8 (a
#: kernel's registers or local memory can cap it at 6, as the H200's 16x64 direct conv shows),
#: sparser beyond
RESIDENCIES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)
#: the fewest training points with which a body picks among all RESIDENCIES (`_fit_key`)
FINE_POINTS = 20
#: a residency whose fit without the tail costs within TAIL_RIVAL of the best one's is a rival,
#: and takes the best one's place if its fit with the tail costs TAIL_GAIN-fold less (`_fit_key`)
TAIL_RIVAL = 2.0
TAIL_GAIN = 2.0
#: the most a step may cost past the cache, as a multiple of its cost within: DRAM against
#: last-level-cache bandwidth is a few times (4x bounds what the sweeps show: the H200's fused
#: GroupNorm step costs 0.07 us at 10 MB and 0.23 us at 300 MB); unbounded, a body with a few
#: points just past the cache fits a step function there
SPILL_MAX = 4.0
#: the most a step may cost when a work-item's rows thrash one L1 set, as a multiple of its cost
#: otherwise (PoCL's 12 x 8 micro-kernel: 1.4x at K = 3072, fp32)
ALIAS_MAX = 4.0
#: the most extra a work-group's step may cost on a slower path (Launch.edge), as a share of its
#: cost otherwise: PoCL's fp32 Winograd GEMM pays 1.1-1.2 (2.1-2.2x) on a partial column block
#: of 8; bounded at 4, its linear GEMM fits, where a partial block is one work-group in 40,
#: took 2-4 to absorb noise
EDGE_MAX = 2.0
#: the edge term's one start, a logit: EDGE_MAX / 2, a boundary work-group at twice the cost
EDGE_START = 0.0
#: the most of a later wave's step the wave before it may hide (`later` >= 1 - LATER_CUT): the
#: H100's fp16 64x64 GEMM hides a quarter; unbounded, a body swept at few multi-wave points could
#: price its later waves near free
LATER_CUT = 0.5
#: the later-wave term's starts, logits of its share of LATER_CUT: next to none, and half of it
_LATER_LOGITS = (-3.0, 0.0)
#: device cache sizes (bytes) tried by the fit: none, then 1 MiB to 256 MiB in steps of sqrt(2)
#: (with steps of 2, PoCL's fp32 fit chose 8 MiB, and priced the text encoder's GEMMs on 9 MiB of
#: weights as spilling, 15% long; their time shows no spill short of 18 MB). One size for all
#: bodies couples them: ten large Winograd cases added to the H100's fp16 sweep moved the size
#: from 16 to 22.6 MiB and every GEMM body's spill term with it. A size per residency group,
#: tried on the same H100 measurements, priced SD's own shapes worse (the UNet's paper plan 85%
#: of time within 10% against 92%), so the size stays the device's.
CACHES = (0.0, *(float(2 ** (i / 2) * 2**20) for i in range(17)))
#: the fit's starting grid, as multiples of scales read off the data (`_starts`): fixed cost
#: (shares of the body's fastest training time, its bound), latency and step, group, wave
#: latency (from none to the step's scale); padding and spill as logits
_T0_SCALES = (0.03, 0.3, 0.9)
_SCALES = (0.03, 0.1, 0.3, 1.0, 3.0)
_GROUP_SCALES = (0.01, 0.1, 1.0)
_WAVE_SCALES = (1e-4, 0.3, 1.0)
_LOGITS = (-4.0, 0.0, 4.0)
#: a body's `committee`: its fits costing at most this multiple of the least
COMMITTEE_COST = 1.5
#: the tile configuration of a GPU GEMM body (local memory: `l`) in its key (`residency_group`)
_TILES = re.compile(r"\.(l\d+x\d+x\d+-\d+x\d+-v\d+)(?:\.|$)")
#: starts of the grid polished by least squares
POLISH = 4
#: the relative step of least_squares' forward differences (`_jacobian`): SciPy's own
_REL_STEP = float(np.finfo(float).eps) ** 0.5
#: the fit's loss on log-time residuals: soft L1 (quadratic within F_SCALE, about 20% of the
#: time, linear beyond), so that one outlier does not drag a body's fit: PoCL's sweep holds a
#: 2500x24x100 GEMM measured at 1.6 ms in one case and at 5.6 ms in another, each with a small
#: spread of its own (the other core busy for a while). F_SCALE was chosen
#: among 0.1, 0.2 and 0.3 by the held-out error of both calibrated devices (the calibration
#: reports give it); plain squares, 0.2 cut the held-out median from 8.0% to 6.2% on PoCL and
#: from 5.6% to 5.0% on the H200
LOSS = "soft_l1"
F_SCALE = 0.2
#: a point's weight in a body's fit, (its time / the geometric mean of the body's times) to this
#: power: what the model is judged by is the share of time predicted within 10%, and with equal
#: weights a body's many short dispatches pulled its few long ones off (PoCL fp32: held-out
#: points of 0.1 s and more predicted 12% short, median). Chosen among 0, 0.15, 0.3 and 0.6 by
#: the held-out error of the four stored calibrations (PoCL and the H200, fp32 and fp16), refitted
#: with each: the share of held-out time within 10% averaged 76.7, 77.0, 78.8 and 79.4%
WEIGHT_POWER = 0.6


@dataclass
class Point:
    """One measured dispatch of the calibration sweep."""

    key: str             # model key
    variant: str         # family/variant of the case it belongs to
    shape: dict
    kernel: str
    launch: object       # sdsim.kernels.Launch
    measured_s: float
    cv: float            # coefficient of variation of the repeats
    kernel_class: str = ""
    flops: float = 0.0
    dram_bytes: float = 0.0
    heldout: bool = False
    predicted_s: float = 0.0
    passes: tuple = ()   # (first, second) medians of a case measured again (run._recheck)

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s


def _fit_residency(points, cu, r, cache, tails=False, ways=0, later=False):
    """(Coefficients, training cost) of one body at residency r, with the tail term where
    `tails`, the later-wave term where `later` and some point runs in one wave and some in more,
    the cache term where some point's footprint passes `cache`, the alias term where some points
    thrash an L1 of `ways` ways and others do not, and the edge term where the points' shares of
    boundary-path work-groups differ."""
    steps = np.array([p.launch.steps for p in points], float)
    waves = _waves(points, cu, r)
    active = np.array([p.launch.active for p in points], float)
    last = last_wave([p.launch.work_groups for p in points], cu, r)
    t = np.array([p.measured_s for p in points])
    scale = np.exp(0.5 * WEIGHT_POWER * (np.log(t) - np.log(t).mean()))   # sqrt of the weight
    missed = np.array([missed_share(p.launch, p.dram_bytes, cache) for p in points])
    spills = _spills(points, cache)
    thrash = np.array([thrashes(p.launch, ways) for p in points], float)
    aliases = bool(0 < thrash.sum() < len(points))
    edged = np.array([p.launch.edge for p in points], float)
    edges = bool(np.ptp(edged) > 0)
    # latency bounds the steps of a device left partly idle: without a point of one wave, none
    # shows it, and a free latency would stand in for the wave count of the fewest-wave points
    latent = bool(np.any(waves == 1))
    staggered = later and _staggers(waves)
    n = 6 + tails + spills + aliases + edges   # the later-wave term's place in x

    def coefficients(x):
        # x (one start, or rows of them): logit of t0 over the fastest time, log latency, log
        # step, log group, log wave latency, logit padding and, where they apply, logits of
        # the tail, spill, alias, edge and later-wave terms
        x = np.asarray(x)
        lat, step, group, wlat = (np.exp(np.clip(x[..., i], -60.0, 5.0)) for i in range(1, 5))
        t0 = t.min() * expit(x[..., 0])   # paid by every dispatch: within the fastest one
        pad = expit(x[..., 5])                                  # padding in (0, 1)
        lat = lat if latent else 0.0 * pad
        tail = expit(x[..., 6]) if tails else 0.0 * pad                          # (0, 1)
        spill = SPILL_MAX * expit(x[..., 6 + tails]) if spills else 0.0 * pad
        alias = (ALIAS_MAX * expit(x[..., 6 + tails + spills]) if aliases
                 else 0.0 * pad)
        edge = (EDGE_MAX * expit(x[..., 6 + tails + spills + aliases]) if edges
                else 0.0 * pad)
        later = 1.0 - LATER_CUT * expit(x[..., n]) if staggered else 1.0 + 0.0 * pad
        return t0, lat, step, group, wlat, pad, spill, tail, alias, edge, later

    def resid(x):
        t0, lat, step, group, wlat, pad, spill, tail, alias, edge, later = (
            np.asarray(v)[..., None] for v in coefficients(x))   # rows broadcast over points
        return (np.log(model_time(t0, group, lat, step, pad, steps, waves, active, spill,
                                 missed, wlat, tail, last, alias, thrash, edge, edged, later))
                - np.log(t)) * scale

    best = min((least_squares(resid, x, jac=lambda x: _jacobian(resid, x), method="trf",
                              loss=LOSS, f_scale=F_SCALE)
                for x in _starts(resid, t, steps, waves, tails, spills + aliases, latent,
                                 edges, staggered)),
               key=lambda res: res.cost)
    t0, lat, step, group, wlat, pad, spill, tail, alias, edge, later = (
        float(v) for v in coefficients(best.x))
    return (Coefficients(t0, lat, step, r, "calibrated", pad, group, spill, float(cache), wlat,
                         tail, alias, int(ways) if aliases else 0, edge=edge, later=later),
            float(best.cost))


def _jacobian(resid, x):
    """The forward-difference Jacobian of `resid` at `x` that least_squares' default ('2-point')
    takes, its steps as SciPy chooses them, but every column from one call: `resid` prices rows
    of coefficients at once, and one call per column was half of a calibration's fit time."""
    x = np.asarray(x, float)
    h = _REL_STEP * np.where(x >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(x))
    r = resid(np.vstack([x, x + np.diag(h)]))
    return ((r[1:] - r[0]) / ((x + h) - x)[:, None]).T   # over the steps rounding took


def _starts(resid, t, steps, waves, tails, extra, latent=True, edges=False, staggered=False):
    """The POLISH best starts of a fixed grid around the data's own scales, ranked by their cost
    before any descent (module doc); one latency where the fit has none (`latent`), one edge
    term where it applies (`edges`: EDGE_START), so that it adds no starts to the grid, and the
    later-wave term's _LATER_LOGITS where it applies (`staggered`)."""
    per = t / steps
    lat, step, group = np.log([max(per.min(), 1e-10), max(np.median(per / waves), 1e-10),
                               max(np.median(t / waves), 1e-10)])
    axes = [np.log(_T0_SCALES) - np.log1p(-np.asarray(_T0_SCALES)),   # logits
            lat + np.log(_SCALES if latent else _SCALES[:1]), step + np.log(_SCALES),
            group + np.log(_GROUP_SCALES), step + np.log(_WAVE_SCALES), _LOGITS]
    if tails:
        axes.append(_LOGITS)
    axes += [_LOGITS] * extra    # the cache and alias terms' logits, where they apply
    if edges:
        axes.append((EDGE_START,))
    if staggered:
        axes.append(_LATER_LOGITS)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    cost = np.square(resid(grid)).sum(axis=-1)
    return grid[np.argsort(cost, kind="stable")[:POLISH]]


def _spills(points, cache) -> bool:
    """Whether the cache term applies to a body's points: some point reads data again (what
    the term models, `footprint`) and more of it than the cache holds."""
    return bool(cache) and max(footprint(p.launch, p.dram_bytes) for p in points) > cache


def fit_key(points: list[Point], compute_units: int, ways: int = 0) -> Coefficients:
    """The coefficients of one model key from its training points (needs at least 1), without
    a cache term."""
    return _fit_key(points, compute_units, 0.0, ways)[0]


def _fit_key(points, compute_units, cache, ways=0) -> tuple[Coefficients, float]:
    """(coefficients, training cost) at the residency that fits the points best. A body with
    fewer than FINE_POINTS points cannot tell neighbouring residencies apart (each adds a wave
    step somewhere among a few points): it picks among the powers of two. The residency is
    chosen without the tail, which fitted alongside it blurs the wave steps that place it; then
    the tail is fitted at that residency and at its rivals (those fitting within TAIL_RIVAL of
    its cost), and a rival wins only if its tail cuts the cost TAIL_GAIN-fold: the H200's d40
    FlashAttention steps in waves of 264 work-groups (residency 2) whose half-full waves run
    faster, which residency 1 without a tail mimics at 7x the error."""
    fits, r, tailed = _candidates(points, compute_units, cache, ways)
    chosen = _chosen([fits], [tailed], r)[0]
    r = chosen[0].residency
    if not _staggers(_waves(points, compute_units, r)):
        return chosen
    return _later(chosen, _fit_residency(points, compute_units, r, cache, tails=True, ways=ways,
                                         later=True))


def _waves(points, cu, r) -> np.ndarray:
    """Each point's wave count at residency r on cu compute units."""
    return np.array([math.ceil(p.launch.work_groups / (cu * r)) for p in points], float)


def _staggers(waves) -> bool:
    """Whether the later-wave term applies to points of these wave counts: some run in one wave
    and some in more. What a later wave saves shows only beside a point of one wave, as the
    latency does: without one, the step and `later` trade against each other, and a call of
    fewer waves than every point is priced by a first wave no point measured."""
    return bool(np.any(waves == 1) and np.any(waves > 1))


def _later(chosen: tuple, staggered: tuple) -> tuple:
    """The better (Coefficients, cost) of a body's chosen fit and its fit with the later-wave
    term at the same residency (module doc)."""
    return staggered if staggered[1] < chosen[1] else chosen


def _candidates(points, compute_units, cache, ways=0):
    """(fits without the tail at each residency tried, the residency that fits best, fits with
    the tail at it and at its rivals): what `_fit_key` chooses from, {residency: (Coefficients,
    cost)}."""
    fits = _untailed(points, compute_units, cache, ways)
    r, rivals = _residency([fits])
    tailed = {q: _fit_residency(points, compute_units, q, cache, tails=True, ways=ways)
              for q in rivals}
    return fits, r, tailed


def _untailed(points, compute_units, cache, ways=0, fine=None) -> dict:
    """{residency: (Coefficients, cost)} of one body without the tail, at every residency of
    RESIDENCIES where `fine` (default: the body has FINE_POINTS points), else at its powers of
    two."""
    fine = len(points) >= FINE_POINTS if fine is None else fine
    return {r: _fit_residency(points, compute_units, r, cache, ways=ways)
            for r in RESIDENCIES if fine or r & (r - 1) == 0}


def _residency(members: list[dict]) -> tuple[int, list[int]]:
    """(the residency at which the members' fits without the tail cost least together, the
    smallest of those that tie; it and its rivals, those costing within TAIL_RIVAL of it)."""
    common = sorted(set.intersection(*(set(f) for f in members)))
    total = {r: sum(f[r][1] for f in members) for r in common}
    least = min(total.values())
    # residencies that fit equally well (points that cannot tell them apart): the smallest
    r = next(r for r, cost in total.items() if cost <= least * (1 + 1e-6) + 1e-12)
    return r, [q for q, cost in total.items() if q == r or cost <= least * TAIL_RIVAL]


def _chosen(members: list[dict], tailed: list[dict], r: int) -> list[tuple]:
    """Each member's (Coefficients, cost): the better of its fits with and without the tail at
    residency r, unless the members' fits with the tail at a rival residency cost TAIL_GAIN-fold
    less together (`_fit_key`); `tailed` holds each member's fits with the tail at r and at its
    rivals."""
    best = [min(f[r], t[r], key=lambda fc: fc[1]) for f, t in zip(members, tailed)]
    rivals = {q: sum(t[q][1] for t in tailed) for q in tailed[0]}
    q = min(rivals, key=rivals.get)
    if rivals[q] * TAIL_GAIN <= sum(cost for _, cost in best):
        return [t[q] for t in tailed]
    return best


def residency_group(key: str) -> str:
    """The bodies whose sparse sweeps borrow one residency: those of one GEMM tile
    configuration (`gemm.l64x64x16-16x16-v4`, its `.nobias` and `.gelu` epilogues, and
    `im2col_gemm.`, `wino_gemm.`, `attn_qk.`, `attn_pv.` and `attn_pv_softmax.` of the same
    tiles) share the kernel source, tiles and local memory; a body with a few points alone
    cannot place its wave steps (the H200's 128x128 GELU GEMM, one point, took residency 4 beside
    1 for the others). Their registers differ, though (each epilogue and addressing is compiled
    apart), and a body whose own points place its residency keeps it (`fit_all`): on the H100's
    fp32 sweeps the 32x64 Winograd GEMM steps in waves of 528 work-groups (residency 4) where
    the pooled choice was 2, and its held-out time within 10% went from 65% to 97%. Every
    other body is a group of its own, the CPU GEMM bodies (`r` tiles, no local memory) too:
    PoCL runs a compute unit's work-groups one after another on its thread, and what their
    fitted residencies stand for is not an occupancy."""
    m = _TILES.search(key)
    return m.group(1) if m else key


def committee(points: list[Point], compute_units: int, cache: float = 0.0,
              ways: int = 0) -> list[Coefficients]:
    """The fits of one body that its training points hardly tell apart: with and without the
    tail, at the residencies `_fit_key` weighs, those costing within COMMITTEE_COST of the
    least. Where they disagree on a shape, the sweep has not pinned the model there (the
    H200's fp16 64x64 GEMM fitted residency 1 with a tail as well as residency 2, and the two
    priced SD's 3-wave projections 15% apart); sdsim/calibration/sweep.py `query` measures
    such shapes."""
    fits, _, tailed = _candidates(points, compute_units, cache, ways)
    pool = [fits[q] for q in tailed] + list(tailed.values())
    # fits that meet every point to within 0.01% tie, whatever their costs' ratio
    least = min(cost for _, cost in pool) + 1e-8 * len(points)
    return [c for c, cost in pool if cost <= least * COMMITTEE_COST]


def _committee_args(args):
    return committee(*args)


def committees(points: list[Point], compute_units: int, coefficients: dict,
               ways: int = 0) -> dict[str, list[Coefficients]]:
    """{model key: its `committee`} over the training points, each at the cache size of its
    fitted coefficients, on every core."""
    keys = sorted(coefficients)
    train = {k: [p for p in points if p.key == k and not p.heldout] for k in keys}
    jobs = [(train[k], compute_units,
             coefficients[k].cache if _spills(train[k], coefficients[k].cache) else 0.0, ways)
            for k in keys if train[k]]
    return dict(zip([k for k in keys if train[k]], _in_parallel(jobs, _committee_args)))


def fit_all(points: list[Point], compute_units: int, ways: int = 0,
            memo: dict | None = None, costs: dict | None = None,
            cache: float | None = None) -> dict[str, Coefficients]:
    """{model key: Coefficients} fitted on the training points, under the device cache size
    `cache` (bytes, measured: 0 for none) where given, else the size of CACHES that fits all of
    them best (one size per device: it is the device's, not a kernel's)
    and the device's L1 associativity `ways` (0: unknown, no alias term), a body with
    FINE_POINTS training points at the residency its own points choose (as `_fit_key` does) and
    the other bodies of a `residency_group` at the one its members' summed costs choose;
    every point's `predicted_s` (training and held-out) is filled in. `memo` (a dict kept
    between calls) keeps each body's fits at each cache size with the training times it saw: a
    fit after the recheck (sdsim/calibration/run.py) fits again only the bodies whose points it
    changed (and the tails its groups' choices now need), and lands where a fresh fit would,
    since a fit is a function of its points. `costs` (a dict), where given, receives the summed
    training cost of all bodies (before the later-wave term) at each cache size of CACHES and at
    `cache`: how sharply the points pick the size, or how near the measured size comes to the
    one they pick (the calibration report says)."""
    keys = sorted({p.key for p in points})
    train = {k: [p for p in points if p.key == k and not p.heldout]
             or [p for p in points if p.key == k] for k in keys}
    groups: dict = {}
    for k in keys:
        groups.setdefault(residency_group(k), []).append(k)
    fine = {k: sum(len(train[m]) for m in groups[residency_group(k)]) >= FINE_POINTS
            for k in keys}
    # a body with FINE_POINTS points of its own places its residency alone; its group's pooled
    # choice binds the other members: {unit: (the bodies whose costs choose, the bodies bound)}
    alone = [k for ks in groups.values() if len(ks) > 1 for k in ks
             if len(train[k]) >= FINE_POINTS]
    units = {k: ([k], [k]) for k in alone}
    units.update({g: (ks, bound) for g, ks in groups.items()
                  if (bound := [k for k in ks if k not in alone])})
    # every body without a cache term, and those that sweep their data at each cache size
    sizes = tuple(sorted({*CACHES, float(cache or 0.0)}))
    spilled = {c: [k for k in keys if _spills(train[k], c)] for c in sizes[1:]}
    tasks = [(k, 0.0) for k in keys] + [(k, c) for c in sizes[1:] for k in spilled[c]]
    memo = {} if memo is None else memo

    def seen(k, c):
        return (k, c, compute_units, ways, fine[k],
                tuple((id(p), p.measured_s) for p in train[k]))

    def at(k, c):   # the cache size a body's fits at cache c were made at
        return c if c in spilled and k in spilled[c] else 0.0

    todo = [t for t in tasks if seen(*t) not in memo]
    memo.update(zip((seen(*t) for t in todo),
                    _in_parallel([(train[k], compute_units, c, ways, fine[k]) for k, c in todo],
                                 _untailed_args)))
    # each unit's residency and rivals at each cache size, then the tails they need
    choice = {(u, c): _residency([memo[seen(k, at(k, c))] for k in pooled])
              for u, (pooled, _) in units.items() for c in sizes}
    need = [(k, c, q) for k, c, q in sorted({(k, at(k, c), q)
                                             for (u, c), (_, rivals) in choice.items()
                                             for k in units[u][1] for q in rivals})
            if (seen(k, c), q) not in memo]
    memo.update(zip(((seen(k, c), q) for k, c, q in need),
                    _in_parallel([(train[k], compute_units, q, c, ways, False)
                                  for k, c, q in need], _tailed_args)))
    best, measured = None, None
    for size in sizes:
        fits = {}
        for u, (_, ks) in units.items():
            r, rivals = choice[(u, size)]
            chosen = _chosen([memo[seen(k, at(k, size))] for k in ks],
                             [{q: memo[(seen(k, at(k, size)), q)] for q in rivals} for k in ks],
                             r)
            # a body none of whose points passes this cache fits as without one
            fits.update({k: (replace(f, cache=size), cost) for k, (f, cost) in zip(ks, chosen)})
        cost = sum(c for _, c in fits.values())
        if costs is not None:
            costs[size] = cost
        if size == (cache or 0.0):
            measured = (size, fits)
        if best is None or cost < best[0] * (1 - 1e-9):   # ties keep the smaller cache
            best = (cost, (size, fits))
    size, fits = best[1] if cache is None else measured
    # last, the later-wave term at each body's residency, at the cache size chosen, where its
    # points' waves show it
    def later_key(k):
        return seen(k, at(k, size)), "later", fits[k][0].residency

    staggered = [k for k in keys
                 if _staggers(_waves(train[k], compute_units, fits[k][0].residency))]
    need = [k for k in staggered if later_key(k) not in memo]
    memo.update(zip(map(later_key, need),
                    _in_parallel([(train[k], compute_units, fits[k][0].residency,
                                   at(k, size), ways, True) for k in need], _tailed_args)))
    out = {k: replace((_later(fits[k], memo[later_key(k)]) if k in staggered else fits[k])[0],
                      cache=size)
           for k in keys}
    for p in points:
        p.predicted_s = geometry_time(out[p.key], p.launch, compute_units, p.dram_bytes)[0]
    return out


def _untailed_args(args):
    return _untailed(*args)


def _tailed_args(args):
    points, compute_units, r, cache, ways, later = args
    return _fit_residency(points, compute_units, r, cache, tails=True, ways=ways, later=later)


def _in_parallel(jobs: list, fn) -> list:
    """`fn(job)` (a module-level function: `_untailed_args`, `_tailed_args` or
    `_committee_args`) for each job, in order, on every core the machine has: the bodies fit
    independently, and a fit is pure Python and NumPy on small arrays (the H200's 808 cases take
    a minute on one core). Processes are spawned, not forked: a calibration holds an OpenCL
    runtime whose threads a fork would copy mid-flight."""
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing
    import warnings
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(fn, jobs))
    except BrokenProcessPool:
        # a script without an `if __name__ == "__main__":` guard cannot spawn (its workers
        # would run it again): same fits, one core
        warnings.warn("calibration fit: could not start worker processes (a script calling it "
                      "needs an `if __name__ == \"__main__\":` guard to use every core); "
                      "fitting on one core", stacklevel=2)
        return [fn(j) for j in jobs]


def key_errors(points: list[Point], key: str) -> tuple[dict, dict]:
    """(training, held-out) `errors` of one model key's points."""
    mine = [p for p in points if p.key == key]
    return (errors([p for p in mine if not p.heldout]), errors([p for p in mine if p.heldout]))


def errors(points: list[Point]) -> dict:
    """Summary of relative errors: count, median |error| %, share of points and of measured time
    within +-10%."""
    if not points:
        return {"points": 0}
    e = np.abs([p.error for p in points])
    t = np.array([p.measured_s for p in points])
    return {"points": len(points), "median_abs_error_pct": float(np.median(e) * 100),
            "within10_points_pct": float(np.mean(e <= 0.1) * 100),
            "within10_time_pct": float(t[e <= 0.1].sum() / t.sum() * 100)}
