"""Device microbenchmarks of `sdsim calibrate` (kernels in opencl/calibrate.cl): streaming
bandwidth, the cache size that re-read streams see, arithmetic rate per storage precision, and
per-dispatch overhead, each timed by OpenCL events and reported as the best (bandwidth, cache
curve, rate) or median (overhead) of repeats."""

from __future__ import annotations

import numpy as np

from sdsim.cl.runtime import event_ms
from sdsim.cost.waves import miss

CHAINS = 16
#: the cache curve's footprints (read + write bytes of one copy): 1 MiB up, in steps of sqrt(2)
CURVE_FROM = 1 << 20
#: the largest footprint of the cache curve, full and `--quick`: past every device cache known
#: to sdsim (an H100's or H200's L2 is 50 MB, a Zen 4 or 5 CCD's L3 32 MB)
CURVE_TO = 1 << 30
CURVE_TO_QUICK = 256 << 20
#: cache sizes the curve's fit tries: 1/8 of the smallest footprint to 8x the largest, in steps
#: of 2^(1/8) (`_FIT_STEPS` per octave)
_FIT_STEPS = 8
#: a cache size must cut the curve's rms error this-fold against none to count as one (the
#: H100 calibrations of 2026-12-07: 4.9 and 5.6% against 13.2 and 14.4%, their small copies'
#: error all launch-time noise; a flat curve's sizes fit as well as none)
CACHE_GAIN = 1.5


def bandwidth(rt, nbytes: int, repeat: int = 5) -> float:
    """Bytes/s of a float4 copy of `nbytes` (read + write counted), best of `repeat`."""
    nbytes = min(nbytes, rt.max_alloc) // 16 * 16
    n4 = nbytes // 16
    src = rt.alloc(nbytes // 4, "fp32", "bandwidth source")
    dst = rt.alloc(nbytes // 4, "fp32", "bandwidth destination")
    kern = rt.kernel("calibrate", "copy4")
    ls = rt.local_size(kern, (256,))
    rt.launch(kern, (n4,), ls, src, dst, np.int32(n4)).wait()  # warm-up, first touch
    best = min(event_ms(rt.launch(kern, (n4,), ls, src, dst, np.int32(n4)))
               for _ in range(repeat))
    return 2.0 * n4 * 16 / (best * 1e-3)


def cache_curve(rt, largest: int, repeat: int = 5) -> list[tuple[int, float]]:
    """[(footprint bytes, seconds)] of a float4 copy whose source and destination (half the
    footprint each) the copy before it left in the device caches: back to back, as a pipeline's
    layer reads what the one before wrote. Its time per byte rises where the footprint passes
    the cache: the same miss share the cost model's cache term prices (sdsim/cost/waves.py
    `miss`). Best of `repeat` at each footprint, from CURVE_FROM to `largest` (capped by the
    device's largest allocation) in steps of sqrt(2)."""
    top = min(largest, 2 * rt.max_alloc)
    sizes = [int(CURVE_FROM * 2 ** (i / 2)) // 32 * 32
             for i in range(int(2 * np.log2(top / CURVE_FROM)) + 1)]
    src = rt.alloc(sizes[-1] // 8, "fp32", "cache-curve source")
    dst = rt.alloc(sizes[-1] // 8, "fp32", "cache-curve destination")
    kern = rt.kernel("calibrate", "copy4")
    ls = rt.local_size(kern, (256,))
    out = []
    for size in sizes:
        n4 = size // 32     # float4 elements in each half
        rt.launch(kern, (n4,), ls, src, dst, np.int32(n4)).wait()   # leaves both halves cached
        out.append((size, min(event_ms(rt.launch(kern, (n4,), ls, src, dst, np.int32(n4)))
                              for _ in range(repeat)) * 1e-3))
    return out


def cache_size(curve) -> dict:
    """The cache size the curve shows, fitted with the cost model's own miss share: seconds =
    fixed + bytes x (hit + extra x miss(bytes, size)), fixed, hit and extra >= 0 by least
    squares on relative error, at each size tried (`_FIT_STEPS` per octave); the best size's
    {bytes, hit_Bps and miss_Bps (copy bandwidth within and past the cache; 0 where the fit
    puts no time on bytes), fixed_s, error_pct (rms relative error), flat_error_pct (the same
    without a cache)}. `bytes` is 0 where fewer than two footprints lie on either side of the
    best size (they do not bracket a cache) or it cuts the error less than CACHE_GAIN-fold."""
    from scipy.optimize import nnls

    size = np.array([s for s, _ in curve], float)
    t = np.array([t for _, t in curve], float)
    tries = CURVE_FROM / 8 * 2.0 ** (np.arange(int(_FIT_STEPS * np.log2(8 * size[-1] / CURVE_FROM))
                                               + 1) / _FIT_STEPS)

    def fit(cache):
        a = np.column_stack([np.ones_like(size), size, size * miss(size, cache)]) / t[:, None]
        x, rnorm = nnls(a, np.ones_like(t))
        return x, float(rnorm / np.sqrt(len(t)))

    flat = fit(0.0)[1]
    fits = [fit(c) for c in tries]
    i = int(np.argmin([e for _, e in fits]))
    (fixed, hit, extra), err = fits[i]
    # two footprints at least on each side of it: one slow copy (the other core busy) is no cache
    bracketed = size[1] <= tries[i] < size[-2] and extra > 0 and err * CACHE_GAIN <= flat
    return {"bytes": float(tries[i]) if bracketed else 0.0,
            "hit_Bps": float(1.0 / hit) if hit > 0 else 0.0,
            "miss_Bps": float(1.0 / (hit + extra)) if hit + extra > 0 else 0.0,
            "fixed_s": float(fixed), "error_pct": err * 100, "flat_error_pct": flat * 100}


def fma_dispatch(rt, precision: str, work_items: int, local: int = 128):
    """A callable enqueuing calibrate.cl's `fma_rate` (CHAINS independent multiply-add chains per
    work-item, one store each: compute only) for `iters` iterations; returns its event."""
    kern = rt.kernel("calibrate", "fma_rate", precision, {"CHAINS": CHAINS})
    out = rt.alloc(work_items, precision, "rate output")
    ls = rt.local_size(kern, (local,))
    return lambda iters: rt.launch(kern, (work_items,), ls, out, np.float32(0.999),
                                   np.float32(1e-4), np.int32(iters), np.int32(work_items))


def arithmetic_rate(rt, precision: str, work_items: int, iters: int, repeat: int = 3) -> float:
    """FLOP/s of independent multiply-add chains (2 FLOP each), best of `repeat`."""
    run = fma_dispatch(rt, precision, work_items)
    run(iters).wait()
    best = min(event_ms(run(iters)) for _ in range(repeat))
    return 2.0 * CHAINS * iters * work_items / (best * 1e-3)


def launch_overhead(rt, n: int = 200) -> dict:
    """Per-dispatch cost of an empty one-work-item kernel: the median event duration (what the
    validation's event timing charges each dispatch) and the device-side spacing of back-to-back
    dispatches (first start to last end over n), both in seconds."""
    kern = rt.kernel("calibrate", "empty")
    buf = rt.alloc(1, "fp32", "empty-kernel argument")
    rt.launch(kern, (1,), (1,), buf).wait()
    evs = [rt.launch(kern, (1,), (1,), buf) for _ in range(n)]
    rt.finish()
    durs = np.array([(e.profile.end - e.profile.start) * 1e-9 for e in evs])
    span = (evs[-1].profile.end - evs[0].profile.start) * 1e-9
    return {"event_s": float(np.median(durs)), "spacing_s": span / n}


def measure(rt, quick: bool, progress=None) -> dict:
    """All device-level figures: bandwidth (B/s), rates per precision (FLOP/s), launch (s)."""
    step = progress or (lambda what: None)
    big = (64 << 20) if quick else (1 << 30)
    step("streaming bandwidth")
    bw = bandwidth(rt, big)
    cu = int(rt.device.max_compute_units)
    items = cu * (2048 if quick else 16384)
    iters = 256 if quick else 2048
    rates = {}
    for prec in ("fp32", "fp16"):
        step(f"{prec} arithmetic rate")
        rates[prec] = arithmetic_rate(rt, prec, items, iters)
    step("cache curve")
    curve = cache_curve(rt, CURVE_TO_QUICK if quick else CURVE_TO)
    step("launch overhead")
    launch = launch_overhead(rt)
    return {"bandwidth": bw, "bandwidth_bytes": big, "rates": rates, "rate_work_items": items,
            "rate_iters": iters, "launch": launch, "cache_curve": curve}
