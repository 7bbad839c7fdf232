"""Per-dispatch time from launch geometry: waves of work-groups over the compute units, each
work-group walking its serial steps.

    slots = compute_units x residency          (work-groups in flight at once)
    waves = ceil(work_groups / slots)
    lanes = padding + (1 - padding) x active   (the cost of a step with `active` useful lanes)
    miss  = max(0, 1 - cache / bytes) x lines  (the share of the dispatch's bytes past the cache,
                                                in lines fetched per line of useful data)
    thrash = 1 if conflict > ways else 0       (a work-item's rows evict each other from L1)
    edged = the share of work-groups on a slower path (Launch.edge)
    last  = work-groups of the last wave / slots   (how full it is, (0, 1])
    s     = step x lanes x (1 + spill x miss) x (1 + alias x thrash)   (one full wave's step)
    per   = (waves - 1) x max(wave_latency, later x s)
            + max(wave_latency, (1 - tail x (1 - last)) x s)
    t     = t0 + waves x group + steps x max(latency, per) x (1 + edge x edged)

`step` is the time one wave of resident work-groups takes for one serial step with every lane
doing useful work (a k-tile of the GEMM, a key tile of FlashAttention, an input-channel tap of
the direct conv); `padding` is the share of that cost idle lanes still pay (1 on a GPU whose
lanes run in lockstep, near 0 on a CPU whose work-item loops skip them); `latency` is the
shortest a step can be however few work-groups run (a partly filled device is latency-bound, not
throughput-bound); `wave_latency` is the shortest one wave's step can be, paid by every wave
(waves run one after another): a kernel latency-bound at full occupancy pays a whole wave for a
few work-groups past it (the H200's 16x64 direct conv steps in 0.13 us up to 792 work-groups, 6
per compute unit, and in 0.23 us at 864), where `latency` alone would let later waves overlap
it; `later` is what each wave after the first costs per step, as a share of one wave alone: a
wave's work-groups start as the wave before them finishes, staggered, their first loads hidden
behind its last steps, where one wave's all start at once (the H100's fp16 64x64 GEMM steps in
2.2 us for one full wave of 264 work-groups and in 3.85, 5.55 and 7.2 us for two, three and four:
each later wave 0.75 of the first; at 1, the waves do not overlap); `tail` is the share of its
empty slots a partly filled last wave saves (the H200's d40 FlashAttention walks 157 key tiles in
1,245 us with 120 work-groups and in 1,529 us with 240, in one wave of 264 slots); `group` is
what a wave costs outside its steps (a work-group's prologue and epilogue: the GEMM writing its
output tile); `t0` is the fixed cost of the dispatch; `spill` is
how much dearer a step gets when the dispatch's data no longer fits the device's last-level
cache (`cache`, one size per device, fitted by calibration), for kernels that sweep their data
more than once (`Launch.sweeps`): a fused GroupNorm sweeping each group twice reads its second
sweep from the cache at 10 MB and from DRAM at 300 MB (on the H200 its step costs 0.07 and
0.23 us). A GEMM's every row of tiles walks B again (`Launch.reread`, its bytes the footprint in
place of the dispatch's): on this 2-core PoCL CPU a GEGLU projection whose 52 MB B outgrows the
32 MiB L3 runs 2.6x its in-cache step, and one whose B rows lie at a pitch off the 64-byte
line (3,500 floats) fetches the lines its work-items' rows straddle twice (`Launch.lines`): a
150 x 2900 x 3500 GEMM steps at 1.9x the time of a 130 x 2900 x 5200 one. A dispatch of one
streaming step (elementwise ops, Winograd transforms) weighs all its bytes: on PoCL the F(4x4)
input transform's wave costs 1.3x past 32 MB. `alias` is how much dearer a step gets when more
of a work-item's row streams share one L1 set (`Launch.conflict`) than the cache has ways (`ways`,
the device's L1 associativity, recorded by calibration on CPUs): PoCL's 12 x 8 micro-kernel
walks 12 rows of A; at K = 1024, 2048 or 3072 (fp32) they lie a multiple of 4 KiB apart, all in
one 8-way set, and its step costs 1.4x what it costs at K = 1000 or 2560. `edge` is how much
dearer a step gets on a slower path (`Launch.edge`, the share of work-groups that take
it), whatever bounds the step (its lanes, the wave latency or the latency): the CPU micro-kernel
loads the last, partial column block of B one element at a time, and on PoCL a Winograd GEMM
over 4 tiles (one partial block of 8) steps at twice the time of one over 8 tiles (one full
block); a GPU Winograd GEMM whose work-groups are the only ones to read their panel of the
transformed input (one tile of output channels) finds none of it in the cache another
work-group left, and on an H100 runs 9-12% (fp16) longer than one of two or four tiles
(reports/winograd-cout-tiles-*.md), and every work-group of a GPU linear GEMM whose rows of A or
B start off the 128-byte line takes a slower path too (its fp16 128x128 build: 7%); with a
factor on `s` alone, a refit of the H100's measurements dropped that body's step under its
wave latency (0.18 us against 3.7), where the factor has no effect. So a 40-work-group GEMM of
80 k-steps costs 80 x latency whatever its FLOPs, and a GEMM of 3 waves costs 3 x 80 x step.

The coefficients (t0, group, latency, wave_latency, later, tail, step, padding, residency, and the
spill, alias and edge terms where the body's points show them) of each
kernel body (`KernelCost.model_key`) come from `sdsim calibrate` (fitted on synthetic sweeps);
a kernel without them gets coefficients transferred from the profile's specifications: `step` is
the roofline time of one full wave-step's FLOPs and bytes at the class efficiency, padding 1 (GPU
lanes in lockstep), `latency` the profile's `step_latency`, `t0` its launch overhead,
`residency` its geometry's, `group`, `wave_latency` and `tail` 0 and `later` 1 (no
specification gives them). With many waves that is the roofline over the efficiency,
wave-quantized; with few it is latency-bound. Each predicted time explains itself in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the formula above in one line, for help texts and reports (this module owns it)
FORMULA = ("t = t0 + waves x group + steps x max(latency, (waves - 1) x max(wave_latency, "
           "later x s) + "
           "max(wave_latency, (1 - tail x (1 - last)) x s)) x (1 + edge x edged), "
           "s = step x lanes x (1 + spill x miss) x (1 + alias x thrash), "
           "lanes = padding + (1 - padding) "
           "x active lanes, last = the last wave's work-groups / slots, "
           "waves = ceil(work-groups / (compute units x residency)), "
           "miss = max(0, 1 - cache / the bytes the dispatch reads again, or all its bytes for one "
           "streaming step) x the cache lines a work-item's row of B touches over the fewest, "
           "thrash = 1 where "
           "more of a work-item's rows share one L1 set than it has ways, edged = the share of "
           "work-groups on a slower path")


@dataclass(frozen=True)
class Coefficients:
    t0: float          # s, fixed cost per dispatch
    latency: float     # s, shortest serial step
    step: float        # s, one wave's serial step at full occupancy, every lane active
    residency: int     # work-groups resident per compute unit
    source: str        # "calibrated" or "spec"
    padding: float = 1.0   # share of a step's cost idle (padding) lanes still pay
    group: float = 0.0     # s, one wave's cost outside its serial steps (prologue, epilogue)
    spill: float = 0.0     # extra step cost per share of the bytes past the cache
    cache: float = 0.0     # bytes, the device's cache size the fit found (0: no cache term)
    wave_latency: float = 0.0   # s, shortest step of each wave
    tail: float = 0.0      # share of a partly filled last wave's empty slots it saves (0: none)
    alias: float = 0.0     # extra step cost when a work-item's rows thrash one L1 set
    ways: int = 0          # the device's L1 associativity the fit used (0: no alias term)
    # what the body's calibration sweep measured, ((lo, hi) work-groups, steps, active lanes,
    # cache footprint in bytes); () for coefficients no sweep measured (spec, older profiles)
    swept: tuple = ()
    edge: float = 0.0      # extra step cost of a work-group on the slower path (Launch.edge)
    later: float = 1.0     # a later wave's step as a share of the first's (1: no overlap)


@dataclass(frozen=True)
class KernelTime:
    compute_s: float   # flops at peak (the roofline's compute term)
    memory_s: float    # DRAM bytes at peak bandwidth (the roofline's memory term)
    total_s: float     # the predicted time
    bound: str         # "compute" | "memory" (which roofline term is larger)
    why: str = ""      # one line: waves x steps x step + t0


def waves(work_groups: int, compute_units: int, residency: int) -> int:
    return max(1, math.ceil(work_groups / (compute_units * max(1, residency))))


def miss(dram_bytes, cache):
    """The share of a dispatch's bytes past a cache of `cache` bytes (0 without a cache term);
    numbers or NumPy arrays alike."""
    import numpy as np

    size = np.asarray(dram_bytes, float)
    if not cache:
        return np.zeros_like(size)
    return np.where(size > 0, np.maximum(0.0, 1.0 - cache / np.maximum(size, 1.0)), 0.0)


def missed_share(launch, dram_bytes: float, cache: float) -> float:
    """`miss` of the module doc for one dispatch: the share of its footprint past the cache, in
    the cache lines its work-items fetch per line of useful data (`Launch.lines`: a CPU
    micro-kernel's rows of B straddling two lines fetch a B past the cache up to twice over)."""
    return float(miss(footprint(launch, dram_bytes), cache)) * launch.lines


def model_time(t0, group, latency, step, padding, steps, waves, active, spill=0.0, missed=0.0,
               wave_latency=0.0, tail=0.0, last=1.0, alias=0.0, thrash=0.0, edge=0.0,
               edged=0.0, later=1.0):
    """The model's formula (module doc), for numbers or NumPy arrays alike: the predictor and
    the calibration fit both evaluate this one."""
    import numpy as np

    s = step_time(step, padding, active, spill, missed, alias, thrash)
    per = (waves - 1) * np.maximum(wave_latency, later * s) \
        + np.maximum(wave_latency, (1.0 - tail * (1.0 - last)) * s)
    return t0 + waves * group + steps * np.maximum(latency, per) * (1.0 + edge * edged)


def step_time(step, padding, active, spill=0.0, missed=0.0, alias=0.0, thrash=0.0):
    """s of the module doc: one wave's step, its idle lanes, cache misses and L1 thrash
    priced."""
    return step * (padding + (1.0 - padding) * active) * (1.0 + spill * missed) \
        * (1.0 + alias * thrash)


def last_wave(work_groups, compute_units: int, residency: int):
    """How full the last wave is, in (0, 1]: its work-groups over the slots; numbers or NumPy
    arrays alike."""
    import numpy as np

    slots = compute_units * max(1, residency)
    wg = np.maximum(np.asarray(work_groups, float), 1.0)
    return (wg - (np.ceil(wg / slots) - 1) * slots) / slots


def footprint(launch, dram_bytes: float) -> float:
    """The bytes whose cache residency the cache term weighs: what later work-groups read again
    (`Launch.reread`) where the launch says, else the dispatch's DRAM bytes if its work-groups
    sweep their data more than once or if it is one streaming step (an elementwise op, a
    Winograd transform: its time is its bytes, which come from the cache where the pipeline left
    them and from DRAM past it: PoCL's F(4x4) input transform costs 1.3x a wave past 32 MB), else
    none (a kernel of many steps that reads its data once is bound by its steps)."""
    return launch.reread or (dram_bytes if launch.sweeps > 1 or launch.steps == 1 else 0.0)


def thrashes(launch, ways: int) -> bool:
    """Whether more of a work-item's row streams share one L1 set than it has `ways`."""
    return bool(ways) and launch.conflict > ways


#: how far past its body's swept range a call's geometry may lie before its prediction is said
#: to extrapolate: sweeps draw shapes at random, so a call just past their last point is not
SWEPT_MARGIN = 1.25
#: the phrase a prediction's explanation carries when it extrapolates (`beyond`)
BEYOND = "beyond the sweep"


def beyond(c: Coefficients, launch, size: float) -> str:
    """What of a call's geometry lies past the range its body's calibration measured (work-groups,
    serial steps, active lanes, and the cache footprint where the body has a cache term), as a
    clause of its explanation; '' where none does or no sweep is known. A model fitted on 4 MiB
    attention P.V sweeps priced the VAE's 8 MiB one at 2.5x what it took: such a prediction is an
    extrapolation, and says so."""
    if not c.swept:
        return ""
    (wlo, whi), (slo, shi), (alo, _), (_, fhi) = c.swept
    out = []
    for name, v, lo, hi in (("work-groups", launch.work_groups, wlo, whi),
                            ("steps", launch.steps, slo, shi)):
        if v > hi * SWEPT_MARGIN:
            out.append(f"{v} {name}, swept to {hi}")
        elif v < lo / SWEPT_MARGIN:
            out.append(f"{v} {name}, swept from {lo}")
    if launch.active < alo / SWEPT_MARGIN:
        out.append(f"{launch.active:.0%} lanes active, swept from {alo:.0%}")
    if c.spill and size > max(fhi, c.cache) * SWEPT_MARGIN:
        out.append(f"{size / 2**20:.1f} MiB of data read again, swept to {fhi / 2**20:.1f} MiB")
    return f", {BEYOND} ({'; '.join(out)})" if out else ""


def geometry_time(c: Coefficients, launch, compute_units: int,
                  dram_bytes: float = 0.0) -> tuple[float, str]:
    """(seconds, one-line explanation) of a dispatch of `launch` geometry moving `dram_bytes`
    under `c`."""
    w = waves(launch.work_groups, compute_units, c.residency)
    last = float(last_wave(launch.work_groups, compute_units, c.residency))
    size = footprint(launch, dram_bytes)
    m = missed_share(launch, dram_bytes, c.cache) if c.spill else 0.0
    th = float(thrashes(launch, c.ways)) if c.alias else 0.0
    edged = launch.edge
    step = step_time(c.step, c.padding, launch.active, c.spill, m, c.alias, th)
    t = float(model_time(c.t0, c.group, c.latency, c.step, c.padding, launch.steps, w,
                         launch.active, c.spill, m, c.wave_latency, c.tail, last, c.alias, th,
                         c.edge, edged, c.later))
    full = max(step, c.wave_latency)
    shrink = max(c.wave_latency, (1.0 - c.tail * (1.0 - last)) * step) / full if full else 1.0
    later = max(c.wave_latency, c.later * step) / full if full else 1.0
    lanes = f", {launch.active:.0%} lanes active" if launch.active < 0.95 else ""
    if c.spill * m >= 0.02:
        split = (f", its rows of B straddling {launch.lines:.3g} cache lines each"
                 if launch.lines > 1 else "")
        lanes += (f", {m / launch.lines:.0%} of {size / 2**20:.0f} MiB past the "
                  f"{c.cache / 2**20:.3g} MiB cache{split} (x{1 + c.spill * m:.2f})")
    if c.alias * th >= 0.02:
        lanes += (f", {launch.conflict} rows in one {c.ways}-way L1 set "
                  f"(x{1 + c.alias:.2f})")
    if c.edge * edged >= 0.02:
        lanes += (f", {edged:.0%} of work-groups {launch.path or 'on a slower path'} "
                  f"(x{1 + c.edge * edged:.2f})")
    if w > 1 and later <= 0.98:
        lanes += f", waves after the first overlapped (their steps x{later:.2f})"
    if shrink <= 0.98:
        lanes += f", last wave {last:.0%} full (its steps x{shrink:.2f})"
    if ((w - 1) * later + shrink) * full >= c.latency:
        bound = " wave-latency-bound" if c.wave_latency > step else ""
        why = (f"{w} wave{'s' if w > 1 else ''} x {launch.steps} steps x "
               f"{_us(max(step, c.wave_latency))}{bound} + {_group(w, c)}{_us(c.t0)}")
    else:
        why = (f"{launch.steps} steps x {_us(c.latency)} latency-bound "
               f"({launch.work_groups} work-groups, {compute_units * c.residency} slots) "
               f"+ {_group(w, c)}{_us(c.t0)}")
    return t, f"{why}{lanes}{beyond(c, launch, size)} [{c.source}]"


def spec_coefficients(k, profile, precision: str) -> Coefficients:
    """Coefficients transferred from the profile's specifications (see module doc)."""
    g, launch = profile.geometry, k.launch
    slots = g["compute_units"] * g["residency"]
    # one full wave-step: the useful work of min(slots, work-groups) groups per step, scaled up
    # to every lane (padding lanes run in lockstep at the same cost)
    per = min(slots, launch.work_groups) / max(1, launch.work_groups * launch.steps)
    per /= max(launch.active, 1e-6)
    eff = profile.efficiency[k.kernel_class]
    compute = k.flops * per / profile.rate(k, precision)
    memory = k.dram_bytes * per / profile.dram_bandwidth
    return Coefficients(profile.launch_overhead, profile.step_latency,
                        max(compute, memory) / eff, g["residency"], "spec", 1.0)


def _group(w: int, c: Coefficients) -> str:
    return f"{w} x {_us(c.group)} + " if c.group * w >= 0.01 * c.t0 and c.group > 0 else ""


def _us(s: float) -> str:
    return f"{s * 1e6:.3g} us"
