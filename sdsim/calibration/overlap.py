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
sweep's flush, input read and lead, then again with one synthetic GEMM (linear/tiled, m = n = k
from PREDECESSORS, each as long as it takes) between the lead and the case, the contexts
interleaved. The predecessor is a GEMM because SD's long dispatches are GEMMs and convolutions
that write their outputs: behind a compute-only dispatch of 20-114 us (calibrate.cl fma_rate,
one store per work-item), an H100's probes gained 1.0-1.5 us, more than SD's small dispatches
after long ones gained over those after short ones (0.2-1.1 us). Each delta (after the lead -
after the GEMM) is what the sequence term predicts,

    hidden(P) - hidden(lead),   hidden(prev) = hidden_us x min(1, prev / over_us),

P the GEMM's time and `lead` that of one lead dispatch; `fit` finds hidden_us and over_us. A
device where not every probe measures a positive delta after the two longest predecessors gets
hidden_us = 0 (no term).
"""

from __future__ import annotations

import numpy as np

#: sizes (m = n = k) of the synthetic GEMMs put before the probes, smallest first; a size whose
#: GEMM takes over MAX_PREDECESSOR_US is not run, nor any larger
PREDECESSORS = (32, 64, 128, 256, 384, 512, 768, 1024, 1536)
MAX_PREDECESSOR_US = 400.0
#: the predecessors' variant (family/variant)
PREDECESSOR = "linear/tiled"
#: (family/variant, shape) of the probed dispatches: small synthetic ones, none an SD layer
PROBES = (
    ("elementwise/add", {"in_shapes": [(2, 40, 700)] * 2, "out_shape": (2, 40, 700)}),
    ("elementwise/silu", {"in_shapes": [(2, 96, 30, 30)], "out_shape": (2, 96, 30, 30)}),
    ("layer_norm/rowwise", {"rows": 200, "dim": 600, "eps": 1e-5}),
    ("linear/tiled", {"m": 100, "k": 200, "n": 300, "bias": True}),
)
#: timed runs per probe and context (after one warm-up round)
REPEAT = {"full": 9, "quick": 3}
#: fits whose squared error is within this share of the best are near-ties; of those the fit
#: keeps the longest over_us (the least extrapolation below the shortest length measured)
TIE = 0.05


def measure(rt, precision: str, lead: int, quick: bool = False) -> dict:
    """The probe on `rt`'s device: per probe, the median microseconds of its first dispatch
    after the lead and after the lead plus each predecessor GEMM, and the fit (module doc)."""
    from sdsim import kernels
    from sdsim.cl.bench import time_events

    repeat = REPEAT["quick" if quick else "full"]
    gemm = kernels.get(*PREDECESSOR.split("/"))
    befores, lengths = [], []
    for n in PREDECESSORS:
        shape = {"m": n, "k": n, "n": n, "bias": True}
        before = launcher(rt, gemm, shape, precision)
        us = float(np.median(time_events(rt, before, repeat + 1)[:, -1])) * 1e6
        if us > MAX_PREDECESSOR_US:
            break
        befores.append(before)
        lengths.append(us)
    contexts = {"lead": lambda: rt.lead(lead)}
    contexts.update({i: (lambda b=b: (rt.lead(lead), b())) for i, b in enumerate(befores)})
    lead_us = float(np.median(time_events(rt, lambda: rt.lead(1), 5)[:, 0])) * 1e6
    probes = []
    for key, shape in PROBES:
        record = kernels.get(*key.split("/"))
        med = time_after(rt, record, shape, precision, contexts, repeat)
        probes.append({"variant": record.key, "shape": shape, "lead_us": med["lead"],
                       "after_us": [med[i] for i in range(len(befores))]})
    hidden, over = fit(lengths, [[p["lead_us"] - a for a in p["after_us"]] for p in probes],
                       lead_us)
    return {"predecessor": PREDECESSOR, "sizes": list(PREDECESSORS[:len(lengths)]),
            "lengths_us": lengths, "lead_dispatch_us": lead_us, "lead": lead, "repeat": repeat,
            "probes": probes, "hidden_us": hidden, "over_us": over}


def time_after(rt, record, shape, precision, contexts: dict, repeat: int,
               launched=None) -> dict:
    """{context: median microseconds of the first dispatch of `record` at `shape`} behind the
    sweep's flush and input read, each context's dispatches (a callable that enqueues them)
    between those and the case; the contexts interleaved, one warm-up round first. `launched`:
    the (launch, inputs) of `launcher` to time, for contexts that work on those inputs."""
    from sdsim.cl.bench import time_events

    launch, ins = launched or launcher(rt, record, shape, precision, inputs=True)
    times = {name: [] for name in contexts}
    for i in range(repeat + 1):
        for name, before in contexts.items():
            t = time_events(rt, launch, 1, ins, before=before)
            if i:
                times[name].append(float(t[0, 0]) * 1e6)
    return {name: float(np.median(v)) for name, v in times.items()}


def launcher(rt, record, shape, precision, inputs=False):
    """A callable that enqueues `record` at `shape` on uploaded inputs (and those inputs)."""
    from sdsim.calibration.sweep import TilingRng
    from sdsim.cl.bench import upload

    ins, params, out = upload(rt, record, shape, record.make_inputs(shape, TilingRng(0)),
                              precision)
    rt.finish()
    launch = lambda: record.launch(rt, shape, ins, params, out, precision)  # noqa: E731
    return (launch, ins) if inputs else launch


def fit(lengths: list, deltas: list, lead_us: float) -> tuple[float, float]:
    """(hidden_us, over_us) of the module doc's model fitted by least squares to the median
    delta at each predecessor length over the probes (`deltas`: one list per probe, a delta per
    length); (0, 0) unless every probe's delta after each of the two longest predecessors is
    positive (a device with no such effect passes that by chance once in 2^(2 x probes))."""
    d = np.median(np.asarray(deltas, float), axis=0)
    p = np.asarray(lengths, float)
    longest = np.argsort(p)[-2:]
    if not len(deltas) or min(row[i] for row in deltas for i in longest) <= 0:
        return 0.0, 0.0
    return knee_fit(np.geomspace(max(lead_us, 0.1), 4 * p.max(), 200),
                    lambda over: np.minimum(1.0, p / over) - min(1.0, lead_us / over), d,
                    longest=True)


def knee_fit(knees, basis, y, longest: bool) -> tuple[float, float]:
    """(scale, knee) of `y` ~ scale x basis(knee): at each knee of `knees` the least-squares
    positive scale, then of the fits within TIE of the best squared error the one with the
    longest knee (`longest`) or the shortest; (0, 0) where no knee gives a positive scale. A
    saturating term's knee is where its points cannot tell knees apart; the tie rule picks the
    one that extrapolates least past them."""
    fits = []
    for knee in knees:
        x = basis(knee)
        if not (x > 0).any():
            continue
        scale = float(x @ y / (x @ x))
        if scale > 0:
            fits.append((float(((y - scale * x) ** 2).sum()), float(knee), scale))
    if not fits:
        return 0.0, 0.0
    best = min(f[0] for f in fits)
    near = [f for f in fits if f[0] <= best * (1 + TIE) + 1e-30]
    _, knee, scale = (max if longest else min)(near, key=lambda f: f[1])
    return scale, knee
