"""The launch-overlap probe of `sdsim calibrate`: how much of a dispatch's time the dispatch
before it hides, measured on synthetic dispatches and fitted to the predictor's sequence term
(sdsim/cost/overlap.py).

Behind a gate, a GPU readies the next dispatch while the one before it runs. The sweep times each
case deep in a stream of small dispatches (`Runtime.lead`), where little of that can hide; in a
pipeline a small dispatch often follows a long one. On an H100 and an H200, SD's dispatches under
20 us that follow one of 50 us or more ran 1-3 us shorter than predicted from the sweep, and
those that follow small ones 0-0.6 us (the validation runs' residuals by predecessor); behind a
long compute-only dispatch, the calibration's own small dispatches take 1.3-2.7 us less than
behind the lead (reports/dispatch-context-*.md).

The probe times a few small synthetic dispatches (PROBES, none of them an SD layer) behind the
sweep's flush, input read and lead, then again with one compute-only dispatch of P microseconds
(calibrate.cl `fma_rate`, P from LENGTHS_US) between the lead and the case, the contexts
interleaved. Each delta (after the lead - after P) is what the sequence term predicts,

    hidden(P) - hidden(lead),   hidden(prev) = hidden_us x min(1, prev / over_us),

`lead` the time of one lead dispatch; `fit` finds hidden_us and over_us. A device where not
every probe measures a positive delta after the two longest dispatches gets hidden_us = 0 (no
term).
"""

from __future__ import annotations

import numpy as np

from sdsim.calibration.microbench import CHAINS

#: lengths (us) of the compute-only dispatch put before the probes
LENGTHS_US = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
#: (family, variant, shape) of the probed dispatches: small synthetic ones, none an SD layer
PROBES = (
    ("elementwise", "add", {"in_shapes": [(2, 40, 700)] * 2, "out_shape": (2, 40, 700)}),
    ("elementwise", "silu", {"in_shapes": [(2, 96, 30, 30)], "out_shape": (2, 96, 30, 30)}),
    ("layer_norm", "rowwise", {"rows": 200, "dim": 600, "eps": 1e-5}),
    ("linear", "tiled", {"m": 100, "k": 200, "n": 300, "bias": True}),
)
#: timed runs per probe and context (after one warm-up round)
REPEAT = {"full": 9, "quick": 3}
#: fits whose squared error is within this share of the best are near-ties; of those the fit
#: keeps the longest over_us (the least extrapolation below the shortest length measured)
TIE = 0.05


class Spin:
    """Compute-only dispatches of a chosen length: calibrate.cl's `fma_rate` (multiply-add
    chains, one store per work-item, so the caches stay as the flush and input read left them),
    its time at a few iteration counts measured once."""

    COUNTS = (1, 10, 100, 400, 1600, 6400)

    def __init__(self, rt):
        self.rt = rt
        self.kernel = rt.kernel("calibrate", "fma_rate", "fp32", {"CHAINS": CHAINS})
        self.items = int(rt.device.max_compute_units) * 256
        self.out = rt.alloc(self.items, "fp32", "spin output")
        self.local = rt.local_size(self.kernel, (256,))
        self.table = {n: self._time(n) for n in self.COUNTS}

    def run(self, n: int):
        """Enqueue one dispatch of `n` iterations; its event."""
        return self.rt.launch(self.kernel, (self.items,), self.local, self.out,
                              np.float32(0.999), np.float32(1e-4), np.int32(n),
                              np.int32(self.items))

    def _time(self, n: int) -> float:
        from sdsim.cl.runtime import event_ms

        self.run(n).wait()
        return float(np.median([event_ms(self.run(n)) * 1e3 for _ in range(5)]))

    def iterations(self, us: float) -> int:
        """Iterations for a dispatch of about `us` microseconds (interpolated)."""
        ns = sorted(self.table)
        return int(max(1, np.interp(us, [self.table[n] for n in ns], ns)))

    def us(self, n: int) -> float:
        """Microseconds of a dispatch of `n` iterations (interpolated)."""
        ns = sorted(self.table)
        return float(np.interp(n, ns, [self.table[k] for k in ns]))


def measure(rt, precision: str, lead: int, quick: bool = False) -> dict:
    """The probe on `rt`'s device: per probe, the median microseconds of its first dispatch
    after the lead and after the lead plus each spin length, and the fit (module doc)."""
    from sdsim import kernels
    from sdsim.calibration.sweep import TilingRng
    from sdsim.cl.bench import time_events, upload

    spin = Spin(rt)
    counts = sorted({spin.iterations(us) for us in LENGTHS_US})
    lengths = [spin.us(n) for n in counts]
    contexts = {"lead": lambda: rt.lead(lead)}
    contexts.update({n: (lambda n=n: (rt.lead(lead), spin.run(n))) for n in counts})
    lead_us = float(np.median(time_events(rt, lambda: rt.lead(1), 5)[:, 0])) * 1e6
    repeat = REPEAT["quick" if quick else "full"]
    probes = []
    for family, variant, shape in PROBES:
        record = kernels.get(family, variant)
        ins, params, out = upload(rt, record, shape, record.make_inputs(shape, TilingRng(0)),
                                  precision)
        rt.finish()
        times = {name: [] for name in contexts}
        for i in range(repeat + 1):     # the first round warms up
            for name, before in contexts.items():
                t = time_events(rt, lambda: record.launch(rt, shape, ins, params, out, precision),
                                1, ins, before=before)
                if i:
                    times[name].append(float(t[0, 0]) * 1e6)
        med = {name: float(np.median(v)) for name, v in times.items()}
        probes.append({"variant": record.key, "shape": shape, "lead_us": med["lead"],
                       "after_us": [med[n] for n in counts]})
    hidden, over = fit(lengths, [[p["lead_us"] - a for a in p["after_us"]] for p in probes],
                       lead_us)
    return {"lengths_us": lengths, "lead_dispatch_us": lead_us, "lead": lead, "repeat": repeat,
            "probes": probes, "hidden_us": hidden, "over_us": over}


def fit(lengths: list, deltas: list, lead_us: float) -> tuple[float, float]:
    """(hidden_us, over_us) of the module doc's model fitted by least squares to the median
    delta at each length over the probes (`deltas`: one list per probe, a delta per length);
    (0, 0) unless every probe's delta after each of the two longest dispatches is positive (a
    device with no such effect passes that by chance once in 2^(2 x probes))."""
    d = np.median(np.asarray(deltas, float), axis=0)
    p = np.asarray(lengths, float)
    longest = np.argsort(p)[-2:]
    if not len(deltas) or min(row[i] for row in deltas for i in longest) <= 0:
        return 0.0, 0.0
    fits = []
    for over in np.geomspace(max(lead_us, 0.1), 4 * p.max(), 200):
        x = np.minimum(1.0, p / over) - min(1.0, lead_us / over)
        if not (x > 0).any():
            continue
        h = float(x @ d / (x @ x))
        if h > 0:
            fits.append((float(((d - h * x) ** 2).sum()), float(over), h))
    if not fits:
        return 0.0, 0.0
    best = min(f[0] for f in fits)
    _, over, h = max((f for f in fits if f[0] <= best * (1 + TIE) + 1e-12), key=lambda f: f[1])
    return h, over
