"""The calibration sweep: every variant record's synthetic shapes, SD1.4's own layers rejected,
measured in random order with warm-up, repeats and a spread check.

SD's layer shapes (text encoder, UNet and VAE decoder at every resolution from 256 to 768 in
steps of 64, batch 1 and 2) are what `sdsim validate` tests the model on, so a sweep point equal
to one of them (same op, same cost-formula arguments) is rejected, explicitly, before anything
runs. A point whose time at 5% of the measured roofline would exceed the per-point budget is left
out on slow devices (so a CPU calibration stays within minutes).

Every timed run starts from the cache state of a pipeline (`Runtime.flush_caches`): its weights
evicted, as a layer's weights were last read a whole network earlier, and its activation inputs
cached, as the previous layer just wrote them. Back-to-back repeats of one case find their
weights cached too (on an H200 a 512x1280x1280 GEMM takes 239 us so and 329 us with the weights
evicted), a state the pipeline never runs in.
"""

from __future__ import annotations

import functools
import random
import time
from collections import Counter

import numpy as np

from sdsim import kernels, repeats
from sdsim.calibration.fit import Point
from sdsim.cost.roofline import roofline
from sdsim.kernels import accepted_args, shape_key

#: the op kind each record family runs
FAMILY_OPS = {"conv2d": ("conv2d",), "linear": ("linear",), "attention": ("attention",),
              "group_norm": ("group_norm",), "layer_norm": ("layer_norm",), "gelu": ("geglu",)}
#: coefficient of variation above which a point is measured again with more repeats
MAX_CV = 0.1
#: a case whose warm-up run takes LONG_S or more is timed LONG_REPEAT times (at most): at that
#: length a run's noise is a small part of it (PoCL's sweeps: a median spread of 1.5% for cases
#: over 0.1 s, against 3% under 10 ms), and its five runs were 40% of a 2-core sweep's time;
#: the spread check still measures a noisy one again with twice the repeats
LONG_S = 0.1
LONG_REPEAT = 3
#: the fewest cases the sweep gives each kernel body (`top_up`): a tuned build runs only on
#: its shape class (the H200's 128x128 tile on GEMMs of 1,024 or more 64x64 blocks), and a
#: variant's random draw left it a handful: 4 points for the 8 coefficients of the H200's
#: 128x128 P.V, which then predicted SD's largest P.V 31% short and a smaller one 13x long
MIN_CASES = 12
#: `deepen` adds up to DEEP_PER_BODY pool cases to a kernel body whose cases all walk fewer
#: than DEEP_SHARE of the serial steps (k-steps, taps) its deepest affordable pool case walks: a
#: call past a body's deepest point extrapolates its fitted step time, and the H100's and
#: H200's 128x128 im2col GEMM got 13 points of at most 90 k-steps from a pool reaching 504
DEEP_SHARE = 0.5
DEEP_PER_BODY = 3
#: `query`: a pool case is measured after the first fit where a body's committee prices one of
#: its dispatches more than QUERY_SPREAD apart (the share the validation bar allows), at most
#: QUERY_PER_BODY cases per body and QUERY_SHARE of the sweep's cases in all
QUERY_SPREAD = 0.1
QUERY_PER_BODY = 4
QUERY_SHARE = 0.1
#: the median spread (coefficient of variation) of a sweep's repeats above which its timings are
#: called noisy (`noisy`): a quiet device's sweep measures 1-2% (H100: 1.4-1.8%, PoCL on a
#: 2-core AMD EPYC VM: 0.9%), PoCL on a 2-core Intel Xeon VM measured 7.4%, re-measured 294
#: cases for their spread and 326 after the first fit, took 28 min and held 23% of held-out
#: time within 10%
NOISY_CV = 0.04
#: cases after which the sweep says whether its timings are noisy so far (`early_noise`), so a
#: user on a busy machine can stop a calibration that would take long and be unsure (2026-12-08,
#: a 2-core AMD EPYC VM whose shared cores ran a NumPy GEMM between 33 and 48 ms from second to
#: second: Debian's PoCL fp16 sweep there spread 5.5%, took 25 min and put 43.6% of held-out
#: time within 10%)
EARLY_CASES = 40
#: small dispatches run ahead of each timed case, after its cache flush (`Runtime.lead`): in a
#: pipeline every dispatch sits deep in a stream, where an H100's small kernels measure 1.2-2 us
#: longer than at its head (in 20 dispatches part of that, after 100 all of it, and 400 no more)
LEAD = 100


def _args(record, shape) -> tuple:
    """The cost-formula arguments of a shape: what makes two shapes the same work."""
    a = accepted_args(record.cost, dict(shape, precision=None))
    a.pop("precision", None)
    return shape_key(a)


@functools.lru_cache(maxsize=1)
def sd_layers() -> frozenset:
    """(op kind, shape) of every op of SD1.4's text encoder, UNet and VAE decoder at 256-768 px,
    batch 1 and 2, as `op_shape` gives it."""
    from sdsim.backends.trace import trace_pipeline
    from sdsim.lower.plan import op_shape
    from sdsim.model.presets import load_model_config

    cfg = load_model_config("sd14")
    out = set()
    for res in range(256, 769, 64):
        for batch in (1, 2):
            for g in trace_pipeline(cfg, resolution=res, batch=batch, precision="fp16").values():
                for op in g.ops:
                    out.add((op.kind, shape_key(op_shape(op))))
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _sd_args(family: str, name: str) -> frozenset:
    record = kernels.get(family, name)
    kinds = FAMILY_OPS.get(family, (name,))
    return frozenset(_args(record, dict(s)) for kind, s in sd_layers() if kind in kinds)


def is_sd_layer(record, shape) -> bool:
    """Whether `shape` of `record` is the work of one of SD1.4's layers (see sd_layers)."""
    return _args(record, shape) in _sd_args(record.family, record.name)


def cases(size: str) -> tuple[list, int]:
    """((record, shape) of the sweep in the records' order, how many SD layer shapes were
    rejected); `sdsim calibrate` runs them in random order (run.calibrate)."""
    out, rejected = [], 0
    for r in kernels.records():
        for s in r.calibrate.get(size, ()):
            if is_sd_layer(r, s):
                rejected += 1
            else:
                out.append((r, dict(s)))
    return out, rejected


def top_up(run: list, precision: str, keep, seed: int = 0) -> list:
    """Cases drawn from the records' pools (`calibrate["pool"]`, more synthetic shapes of the
    same kinds) for every kernel body `run` gives fewer than MIN_CASES cases, under the kernel
    builds active now; a pool case counts if it adds a dispatch of such a body, is not one of
    SD's layers, is not in `run` already and passes `keep` (the per-case time budget). Returns
    the cases added, in the pools' shuffled order."""
    def keys(record, shape):
        return {k.model_key for k in record.costs(precision, **shape)}

    count = Counter(k for r, s in run for k in keys(r, s))
    pool = _pool()
    random.Random(seed + 3).shuffle(pool)
    out = []
    for r, s in _fresh(pool, run, keep):
        ks = keys(r, s)
        if any(count[k] < MIN_CASES for k in ks):
            count.update(ks)
            out.append((r, s))
    return out


def deepen(run: list, precision: str, keep, seed: int = 0) -> list:
    """Pool cases for each kernel body whose deepest case in `run` walks fewer than DEEP_SHARE
    of the serial steps its deepest pool case passing `keep` does: up to DEEP_PER_BODY of the
    pool's cases past that share, one per work-group count (so they span waves), none of SD's
    layers nor in `run` already, in the pools' shuffled order."""
    pool = _pool()
    random.Random(seed + 4).shuffle(pool)

    def dispatches(record, shape):
        return [(k.model_key, k.launch.steps, k.launch.work_groups)
                for k in record.costs(precision, **shape)]

    have = Counter()
    for r, s in run:
        for key, steps, _ in dispatches(r, s):
            have[key] = max(have[key], steps)
    fresh = [(r, s, dispatches(r, s)) for r, s in _fresh(pool, run, keep)]
    reach = Counter()
    for _, _, ds in fresh:
        for key, steps, _ in ds:
            reach[key] = max(reach[key], steps)
    short = {k for k in reach if k in have and have[k] < DEEP_SHARE * reach[k]}
    added, groups, out = Counter(), set(), []
    for r, s, ds in fresh:
        if any(k in short and added[k] < DEEP_PER_BODY and steps >= DEEP_SHARE * reach[k]
               and (k, wg) not in groups for k, steps, wg in ds):
            for k, steps, wg in ds:
                if k in short and steps >= DEEP_SHARE * reach[k]:
                    added[k] += 1
                    groups.add((k, wg))
            out.append((r, s))
    return out


def _pool() -> list:
    """(record, shape) of every shape of the records' pools (`calibrate["pool"]`), in the
    records' order."""
    return [(r, dict(s)) for r in kernels.records() for s in r.calibrate.get("pool", ())]


def _fresh(cases, run: list, keep):
    """The `cases` a sweep may add to `run`: not in it already, each once, none of SD's layers,
    each passing `keep` (the per-case time budget); in the order given."""
    seen = {(r.key, shape_key(s)) for r, s in run}
    for r, s in cases:
        if (r.key, shape_key(s)) not in seen and not is_sd_layer(r, s) and keep(r, s):
            seen.add((r.key, shape_key(s)))
            yield r, s


def query(run: list, committees: dict, precision: str, keep, compute_units: int) -> list:
    """Pool cases (`calibrate["pool"]`) where a kernel body's `committee` (its fits that the
    sweep's points hardly tell apart, sdsim/calibration/fit.py) disagree most: the query by
    committee of active learning, as nn-Meter samples more where its predictor errs. A case
    counts if one of its dispatches is priced more than QUERY_SPREAD apart by its body's
    members, it is not one of SD's layers, not in `run` already and passes `keep` (the per-case
    budget); per body the QUERY_PER_BODY widest, one per work-group count (neighbouring shapes
    of one count settle the same question), and QUERY_SHARE of the sweep's cases at most, the
    widest first. Returns the cases, under the kernel builds active now."""
    from sdsim.cost.waves import geometry_time

    scored = []
    for r, s in _fresh(_pool(), run, keep):
        best = None
        for k in r.costs(precision, **s):
            members = committees.get(k.model_key, ())
            if len(members) < 2:
                continue
            t = [geometry_time(c, k.launch, compute_units, k.dram_bytes)[0] for c in members]
            spread = max(t) / min(t) - 1
            if best is None or spread > best[0]:
                best = (spread, k.model_key, k.launch.work_groups)
        if best and best[0] > QUERY_SPREAD:
            scored.append((best, r, s))
    scored.sort(key=lambda x: -x[0][0])
    taken, counts, out = Counter(), set(), []
    for (_, key, work_groups), r, s in scored:
        if len(out) >= QUERY_SHARE * len(run):
            break
        if taken[key] < QUERY_PER_BODY and (key, work_groups) not in counts:
            taken[key] += 1
            counts.add((key, work_groups))
            out.append((r, s))
    return out


def median_cv(points) -> float:
    """The median spread (coefficient of variation) of the points' repeats; 0 for none."""
    return float(np.median([p.cv for p in points])) if points else 0.0


def early_noise(points, cases: int) -> str:
    """A sentence for the user while the sweep runs, where the spread of its first `cases`
    cases' repeats (`points`) already exceeds NOISY_CV; '' otherwise."""
    cv = median_cv(points)
    if cv <= NOISY_CV:
        return ""
    return (f"the first {cases} cases' timings spread {cv:.1%} between repeats (a quiet "
            f"device's: 1-2%): this machine is busy or shares its cores, so the sweep will "
            f"measure many cases again and the profile will be that much less sure; Ctrl-C "
            f"stops it and leaves the old profile as it was")


def noisy(points) -> str:
    """A sentence saying how noisy the sweep's timings were, where their median spread between
    repeats exceeds NOISY_CV; '' otherwise (and for no points)."""
    cv = median_cv(points)
    if cv <= NOISY_CV:
        return ""
    return (f"the sweep's timings were noisy: a median spread of {cv:.1%} between repeats (a "
            f"quiet device's sweep measures 1-2%); other work on this machine, or a shared "
            f"virtual machine's neighbours, adds time to some runs, so this profile's "
            f"coefficients are that much less sure (the held-out error says how far): calibrate "
            f"again on a quiet machine")


def pessimistic_s(record, shape, precision, peak, bw) -> float:
    """Seconds the case would take at 5% of the roofline (plus 20 us per dispatch)."""
    return sum(max(roofline(k, peak, bw)) / 0.05 + 20e-6
               for k in record.costs(precision, **shape))


def affordable(record, shape, precision, peak, bw, budget_s) -> bool:
    """Whether the case would run within `budget_s` at 5% of the roofline: cheap points are
    always measured, huge ones only on fast devices."""
    return pessimistic_s(record, shape, precision, peak, bw) <= budget_s


@functools.lru_cache(maxsize=4)
def _blocks(seed: int) -> tuple[dict, np.ndarray]:
    """TilingRng's draws of one seed (normals in float64 and float32, uniforms), drawn once per
    process: drawing them for every case took half of the sweep's input time."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal(TilingRng.BLOCK)
    blocks = (normal, normal.astype(np.float32), rng.random(TilingRng.BLOCK))
    for b in blocks:
        b.flags.writeable = False   # shared by every TilingRng of the seed
    return {b.dtype: b for b in blocks[:2]}, blocks[2]


class TilingRng:
    """numpy's Generator for timing runs: normal and uniform draws tile one block of BLOCK draws
    (a kernel's time does not depend on the values, drawing them does: the sweep's 40 GB of
    inputs took 86 s of a 2-core host's normals), integers are drawn (indices stay in range)."""

    BLOCK = 1 << 20

    def __init__(self, seed: int = 0):
        self.normal, self.unit = _blocks(seed)
        self.rng = np.random.default_rng(seed + 1)

    @staticmethod
    def _tile(block, size):
        size = () if size is None else size
        out = np.empty(size, block.dtype).reshape(-1)
        whole = out.size - out.size % block.size
        out[:whole].reshape(-1, block.size)[:] = block
        out[whole:] = block[:out.size - whole]
        return out.reshape(size)

    def standard_normal(self, size=None, dtype=np.float64):
        return self._tile(self.normal[np.dtype(dtype)], size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return low + (high - low) * self._tile(self.unit, size)

    def integers(self, *args, **kwargs):
        return self.rng.integers(*args, **kwargs)


def _time(rt, record, shape, buffers, precision, repeat, gated, lead, statistic="median"):
    """(seconds per dispatch by `statistic` of the runs, coefficient of variation per
    dispatch)."""
    from sdsim.cl.bench import time_launches

    a = time_launches(rt, record, shape, buffers, precision, repeat, cold=True, gated=gated,
                      lead=lead)
    return repeats.reduce(a, statistic), a.std(axis=0) / np.maximum(a.mean(axis=0), 1e-12)


def measure(rt, record, shape, precision, repeat=5, seed=0,
            clock: Counter | None = None, gated: bool = True,
            lead: int = 0, statistic: str = "median") -> tuple[list[Point], bool]:
    """Points (one per dispatch) of one case: the `statistic` (sdsim/repeats.py) of `repeat`
    timed runs after a warm-up (LONG_REPEAT for a long case, LONG_S); a case whose spread
    exceeds MAX_CV is measured again with twice the repeats. Returns (points, whether it was
    re-measured). `clock` adds up the host's seconds per phase (inputs, upload, warm-up with the
    program builds, timed runs). `gated`: each timed run's dispatches run back to back behind a
    gate (sdsim.cl.bench.time_events), as validate times them, `lead` small dispatches ahead of
    them (LEAD)."""
    from sdsim.cl.bench import upload

    clock = Counter() if clock is None else clock
    t = time.perf_counter()

    def lap(phase):
        nonlocal t
        now = time.perf_counter()
        clock[phase] += now - t
        t = now

    inputs = record.make_inputs(shape, TilingRng(seed))
    lap("inputs")
    buffers = upload(rt, record, shape, inputs, precision)
    rt.finish()
    lap("upload")
    costs = record.costs(precision, **shape)
    # warm-up (and program build)
    warm, _ = _time(rt, record, shape, buffers, precision, 1, gated, lead)
    lap("warm-up")
    if warm.sum() >= LONG_S:
        repeat = min(repeat, LONG_REPEAT)
    med, cv = _time(rt, record, shape, buffers, precision, repeat, gated, lead, statistic)
    again = bool(cv.max() > MAX_CV)
    if again:
        med, cv = _time(rt, record, shape, buffers, precision, 2 * repeat, gated, lead,
                        statistic)
    lap("timed")
    if len(med) != len(costs):
        raise RuntimeError(f"{record.key}: {len(med)} dispatches ran, the cost formula lists "
                           f"{len(costs)}")
    return [Point(k.model_key, record.key, shape, k.kernel, k.launch, float(t), float(c),
                  k.kernel_class, k.flops, k.dram_bytes)
            for k, t, c in zip(costs, med, cv)], again
