"""Fit the geometry model of sdsim/cost/waves.py to measured dispatches, one kernel body at a time.

For each model key (one OpenCL kernel body: "gemm", "conv_direct", "attn_flash_d40", ...) the
measured synthetic points (launch geometry, seconds) give

    t = t0 + waves x group + steps x max(latency, waves x step x (padding + (1 - padding) x active))
    waves = ceil(work_groups / (compute_units x residency))

(`sdsim.cost.waves.model_time`, with its cache term) with t0, group, latency, step, spill >= 0
and padding in (0, 1) fitted by least squares on log times (every point weighs by its relative
error, small dispatches as much as large ones) for each residency in RESIDENCIES, the best
residency kept; the device's cache size is the one of CACHES whose fits of all kernel bodies
together leave the least error. Points are split once into a training set (80%) and a held-out set (20%,
never seen by the fit): the held-out error is what the model does on shapes it did not see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from sdsim.cost.waves import Coefficients, geometry_time, miss, model_time

#: residencies (work-groups resident per compute unit) tried by the fit
RESIDENCIES = (1, 2, 4, 8, 16, 32)
#: the most a step may cost past the cache, as a multiple of its cost within: DRAM against
#: last-level-cache bandwidth is a few times (4x bounds what the sweeps show: the H200's fused
#: GroupNorm step costs 0.07 us at 10 MB and 0.23 us at 300 MB); unbounded, a body with a few
#: points just past the cache fits a step function there
SPILL_MAX = 4.0
#: device cache sizes (bytes) tried by the fit: none, then 1 MiB to 256 MiB
CACHES = (0.0, *(float(2 ** i << 20) for i in range(9)))


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

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s


def _fit_residency(points, cu, r, cache):
    steps = np.array([p.launch.steps for p in points], float)
    waves = np.array([math.ceil(p.launch.work_groups / (cu * r)) for p in points], float)
    active = np.array([p.launch.active for p in points], float)
    t = np.array([p.measured_s for p in points])
    missed = miss([p.dram_bytes for p in points], cache)
    spills = _spills(points, cache)

    def coefficients(x):
        t0, lat, step, group = np.exp(x[:4])
        return (t0, lat, step, group, 1.0 / (1.0 + np.exp(-x[4])),   # padding in (0, 1)
                SPILL_MAX / (1.0 + np.exp(-x[5])) if spills else 0.0)   # spill in (0, max)

    def resid(x):
        t0, lat, step, group, pad, spill = coefficients(x)
        return np.log(model_time(t0, group, lat, step, pad, steps, waves, active, spill,
                                 missed)) - np.log(t)

    per = t / steps
    x0 = np.array([np.log(max(t.min() * 0.3, 1e-9)), np.log(max(per.min() * 0.5, 1e-10)),
                   np.log(max(np.median(per / waves), 1e-10)),
                   np.log(max(np.median(t / waves) * 0.1, 1e-10)), 0.0, -2.0])
    x0 = x0 if spills else x0[:5]
    best = None
    for scale in (1.0, 0.1, 10.0):          # a few starts: max() makes the surface kinked
        for pad in (3.0, -3.0):
            x = x0.copy()
            x[1:5] += (np.log(scale), -np.log(scale), 0.0, pad)
            res = least_squares(resid, x, method="trf")
            if best is None or res.cost < best.cost:
                best = res
    t0, lat, step, group, pad, spill = coefficients(best.x)
    return (Coefficients(float(t0), float(lat), float(step), r, "calibrated", float(pad),
                         float(group), spill, float(cache)), float(best.cost))


def _spills(points, cache) -> bool:
    """Whether the cache term applies to a body's points: it sweeps its data more than once
    (what the term models) and some point's bytes pass the cache."""
    return bool(cache) and all(p.launch.sweeps > 1 for p in points) \
        and max(p.dram_bytes for p in points) > cache


def fit_key(points: list[Point], compute_units: int) -> Coefficients:
    """The coefficients of one model key from its training points (needs at least 1), without
    a cache term."""
    return _fit_key(points, compute_units, 0.0)[0]


def _fit_key(points, compute_units, cache) -> tuple[Coefficients, float]:
    fits = [_fit_residency(points, compute_units, r, cache) for r in RESIDENCIES]
    return min(fits, key=lambda f: f[1])


def fit_all(points: list[Point], compute_units: int) -> dict[str, Coefficients]:
    """{model key: Coefficients} fitted on the training points, under the device cache size of
    CACHES that fits all of them best (one size per device: it is the device's, not a kernel's);
    every point's `predicted_s` (training and held-out) is filled in."""
    keys = sorted({p.key for p in points})
    train = {k: [p for p in points if p.key == k and not p.heldout]
             or [p for p in points if p.key == k] for k in keys}
    plain = {k: _fit_key(train[k], compute_units, 0.0) for k in keys}
    best = None
    for cache in CACHES:
        # a body none of whose points passes this cache fits as without one
        fits = {k: _fit_key(train[k], compute_units, cache) if _spills(train[k], cache)
                else (replace(plain[k][0], cache=cache), plain[k][1]) for k in keys}
        cost = sum(c for _, c in fits.values())
        if best is None or cost < best[0] * (1 - 1e-9):   # ties keep the smaller cache
            best = (cost, {k: f for k, (f, _) in fits.items()})
    out = best[1]
    for p in points:
        p.predicted_s = geometry_time(out[p.key], p.launch, compute_units, p.dram_bytes)[0]
    return out


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
