"""The write-back probe of `sdsim calibrate`: what a dispatch pays for finding its inputs as
the dispatch that wrote them left the caches, measured on synthetic dispatches and fitted to the
predictor's write-back term (sdsim/cost/writeback.py).

The sweep times each case after a cache flush and a read of its inputs (`Runtime.flush_caches`):
its inputs cached and clean. In a pipeline they were just written by the dispatch before: dirty
where still cached, and a dispatch that streams through the cache writes what it evicts back to
memory while it reads; how much of a written buffer a GPU's cache keeps is the cache's own
policy. On an H100 (fp32, reports/validation-nvidia-h100-opencl-vae_decoder-512-fp32.md) the VAE
decoder's GroupNorm statistics (`gn_partial`) over 8-268 MB ran 2-21 us (25-40%) longer than
sweep points of the same geometry, and its residual adds and Winograd input transforms 10-16%
longer.

The probe times streaming dispatches (PROBES, synthetic shapes, none of them an SD layer) over
inputs from a few MB to several times a GPU's L2, first as the sweep does (flush, input read,
lead), then with each input written by a copy kernel from a duplicate (`Runtime.copy_words`:
same values, written as a pipeline's dispatch writes its output) between the lead and the
dispatch; the two contexts interleaved. The copy is a long dispatch, behind which the launch
overlap (sdsim/cost/overlap.py, measured just before) hides part of the probe's start; the
predictor subtracts that for a pipeline's dispatch too, so each delta (after the copy - clean)
has it added back. Over the dispatch's memory share (its bytes at the device's bandwidth over its
clean time: the share of a dispatch the write-back cannot overlap), it is what the term predicts,

    extra(W) = min(W, dirty) x per_byte,    W the bytes written,

and `fit` finds dirty (the most written bytes a dispatch pays for) and per_byte. A device where
not every probed variant measures a positive delta at its two largest inputs gets no term.
"""

from __future__ import annotations

import numpy as np

from sdsim.calibration.overlap import knee_fit, launcher, time_after

#: (family/variant, shapes, smallest input first) of the probed dispatches: streaming kernels
#: over 96 channels (no SD layer has 96), fp32 inputs of 1.9 to 384 MB in all
PROBES = (
    ("elementwise/add", [{"in_shapes": [(1, 96, h, w)] * 2, "out_shape": (1, 96, h, w)}
                         for h, w in ((50, 100), (100, 200), (200, 400), (400, 500),
                                      (500, 1000))]),
    ("group_norm/fused", [{"batch": 1, "channels": 96, "hw": hw, "groups": 32, "eps": 1e-5,
                           "act": None}
                          for hw in (5000, 20000, 80000, 200000, 1000000)]),
)
#: shapes per probe in a quick calibration (the smallest)
QUICK_SHAPES = 3
#: timed runs per shape and context (after one warm-up round)
REPEAT = {"full": 9, "quick": 3}


def measure(rt, precision: str, lead: int, bandwidth: float, overlap: dict | None = None,
            quick: bool = False) -> dict:
    """The probe on `rt`'s device: per probe and shape, the bytes written, the dispatch's bytes,
    the copy's microseconds and the probe's median microseconds clean and after the copy; the
    fit is derived from them where it is used (`term`). `bandwidth`: the device's measured
    streaming bandwidth, bytes/s; `overlap`: the launch-overlap probe's result
    (sdsim/calibration/overlap.py), if measured."""
    from sdsim import kernels
    from sdsim.cl.bench import time_events

    repeat = REPEAT["quick" if quick else "full"]
    probes = []
    for key, shapes in PROBES:
        record = kernels.get(*key.split("/"))
        for shape in shapes[:QUICK_SHAPES] if quick else shapes:
            launch, ins = launcher(rt, record, shape, precision, inputs=True)
            pairs = [(rt.duplicate(b), b) for b in ins]
            copy = float(np.median(time_events(rt, lambda: rt.copy_words(pairs), repeat)
                                   .sum(axis=1))) * 1e6
            first = record.costs(precision, **shape)[0]
            med = time_after(rt, record, shape, precision, {
                "clean": lambda: rt.lead(lead),
                "written": lambda: (rt.lead(lead), rt.copy_words(pairs))}, repeat,
                launched=(launch, ins))
            probes.append({"variant": record.key, "shape": shape,
                           "written_bytes": int(sum(b.size for b in ins)),
                           "dispatch_bytes": float(first.bytes_read + first.bytes_written),
                           "copy_us": copy, "clean_us": med["clean"],
                           "after_us": med["written"],
                           "hidden_us": _hidden(overlap, copy) * 1e6})
    return {"lead": lead, "repeat": repeat, "bandwidth": bandwidth, "probes": probes}


def _hidden(overlap: dict | None, copy_us: float) -> float:
    """Seconds of the probe the launch overlap hides behind a copy of `copy_us` beyond what a
    lead dispatch hides (0 without a measured term)."""
    from sdsim.calibration.write import overlap_applied, overlap_section
    from sdsim.cost.overlap import Overlap

    term = (Overlap.from_section(overlap_section(overlap)) if overlap_applied(overlap)
            else None)
    return max(0.0, term.hidden_after(copy_us * 1e-6)) if term else 0.0


def delta(probe: dict) -> float:
    """Microseconds a probe's dispatch paid after the copy over clean, with what the launch
    overlap hid behind the copy added back."""
    return probe["after_us"] - probe["clean_us"] + probe["hidden_us"]


def share(probe: dict, bandwidth: float) -> float:
    """A probe dispatch's memory share: its bytes at `bandwidth` over its clean time, at most 1."""
    return min(1.0, probe["dispatch_bytes"] / bandwidth / (probe["clean_us"] * 1e-6))


#: why a probe gives no term (the two conditions of `fit`)
NO_TERM = ("no term: not every probed variant measures a positive delta at its two largest "
           "inputs, or the deltas do not rise with the bytes written (the fit's knee does not lie "
           "above the two smallest inputs probed)")


def fit(probes: list, bandwidth: float) -> tuple[float, float]:
    """(dirty bytes, seconds per byte) of the module doc's model fitted by least squares to the
    probes' deltas (`delta`) over their memory shares; (0, 0) unless every probed variant's
    delta at its two largest inputs is positive (a device with no such effect passes that by
    chance once in 2^(2 x variants)), and (0, 0) where the knee does not lie above the two
    smallest inputs probed: deltas that do not rise with the bytes written over two sizes at
    least fit a constant, which the probes cannot tell from noise or from what the launch
    overlap hides, not a write-back."""
    if not probes:
        return 0.0, 0.0
    by_variant = {}
    for p in probes:
        by_variant.setdefault(p["variant"], []).append(p)
    for rows in by_variant.values():
        if min(delta(p) for p in sorted(rows, key=lambda p: p["written_bytes"])[-2:]) <= 0:
            return 0.0, 0.0
    w = np.array([p["written_bytes"] for p in probes], float)
    y = np.array([delta(p) * 1e-6 / share(p, bandwidth) for p in probes])
    per_byte, dirty = knee_fit(np.geomspace(w.min() / 2, 4 * w.max(), 300),
                               lambda dirty: np.minimum(w, dirty), y, longest=False)
    return (dirty, per_byte) if dirty > np.unique(w)[:2].max() else (0.0, 0.0)


def term(probe: dict) -> tuple[float, float]:
    """(dirty bytes, seconds per byte) of a stored probe (`measure`'s result) by today's `fit`,
    so that a refit of stored measurements applies the rule as it stands."""
    return fit(probe["probes"], probe["bandwidth"])
