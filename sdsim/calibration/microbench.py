"""Device microbenchmarks of `sdsim calibrate` (kernels in opencl/calibrate.cl): streaming
bandwidth, arithmetic rate per storage precision, and per-dispatch overhead, each timed by
OpenCL events and reported as the best (bandwidth, rate) or median (overhead) of repeats."""

from __future__ import annotations

import numpy as np

from sdsim.cl.runtime import event_ms

CHAINS = 16


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
    step("launch overhead")
    launch = launch_overhead(rt)
    return {"bandwidth": bw, "bandwidth_bytes": big, "rates": rates, "rate_work_items": items,
            "rate_iters": iters, "launch": launch}
