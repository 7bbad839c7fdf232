"""Run a whole calibration: device microbenchmarks, then the synthetic sweep of every kernel
variant (sdsim/calibration/sweep.py), then the fit of each kernel body's timing coefficients
(sdsim/calibration/fit.py) with 20% of the points held out, then the launch-overlap probe
(sdsim/calibration/overlap.py) and the write-back probe (sdsim/calibration/writeback.py)."""

from __future__ import annotations

import platform as _platform
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from sdsim import provenance
from sdsim.kernels import tuning
from sdsim.calibration import classes, fit, microbench, overlap, sweep, writeback
from sdsim.cl import dryrun
from sdsim.cost.profile import kernels_hash

#: share of the sweep's cases held out of the fit
HELDOUT = 0.2
#: per-case time budget at 5% of the roofline, by device kind (GPUs run the whole sweep)
BUDGET_S = {"CPU": 2.0, "GPU": 5.0}
#: a case with a dispatch the first fit misses by more than this share is measured again
#: after the sweep (`_recheck`)
RECHECK = 0.2


@dataclass
class Calibration:
    name: str
    device: str            # "platform / device"
    driver: str
    precision: str         # storage precision of the class mix
    mix: str               # "quick" | "full"
    date: str
    command: str
    device_info: dict
    micro: dict
    points: list = field(default_factory=list)         # fit.Point per measured dispatch
    classes: dict = field(default_factory=dict)
    coefficients: dict = field(default_factory=dict)   # model key -> Coefficients
    sweep: dict = field(default_factory=dict)           # counts, load, time
    kernels_hash: str = ""
    tuning: object = None   # sdsim.kernels.tuning.Tuning the sweep ran under
    refit: str = ""         # set when these measurements were fitted again (store.load)
    merged: list = field(default_factory=list)   # other calibrations whose points joined (store.merge)
    cache_costs: dict = field(default_factory=dict)   # cache size -> training cost (fit_all)

    @property
    def launch_s(self) -> float:
        return self.micro["launch"]["event_s"]


def device_info(rt) -> dict:
    import pyopencl as cl

    d = rt.device
    simd = rt.kernel("calibrate", "empty").get_work_group_info(
        cl.kernel_work_group_info.PREFERRED_WORK_GROUP_SIZE_MULTIPLE, d)
    return {"type": cl.device_type.to_string(d.type), "compute_units": int(d.max_compute_units),
            "clock_mhz": int(d.max_clock_frequency), "simd": int(simd),
            "global_mem": int(d.global_mem_size), "local_mem": int(d.local_mem_size),
            "cache": int(d.global_mem_cache_size), "max_alloc": int(d.max_mem_alloc_size),
            "fp16": rt.has_fp16, "opencl": d.version.strip(), "host": _platform.node(),
            "l1_ways": l1_ways() if d.type & cl.device_type.CPU else 0}


def l1_ways(sysfs: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The L1 data cache's associativity of the host's first core (0 where the OS does not say):
    a CPU OpenCL device is the host, and OpenCL has no query for it (the alias term of
    sdsim/cost/waves.py)."""
    from pathlib import Path

    for index in sorted(Path(sysfs).glob("index*")):
        try:
            if (index / "level").read_text().strip() == "1" \
                    and (index / "type").read_text().strip() == "Data":
                return int((index / "ways_of_associativity").read_text())
        except (OSError, ValueError):
            return 0
    return 0


def calibrate(rt, name: str, quick: bool = False, precision: str = "fp16", repeat: int = 5,
              command: str = "", seed: int = 0, gated: bool = True,
              lead: int = sweep.LEAD, statistic: str = "median") -> Calibration:
    """Measure `rt`'s device; `quick` uses small buffers and the small sweep (tests); `gated`:
    each case's timed runs go behind a gate (sdsim.cl.bench.time_events), `lead` small
    dispatches ahead of each (sweep.LEAD); `statistic` reduces a case's timed runs
    (sdsim/repeats.py)."""
    from tqdm import tqdm

    size = "quick" if quick else "full"
    todo, rejected = sweep.cases(size)
    info = device_info(rt)
    micro = microbench.measure(rt, quick, lambda what: None)
    peak, bw = micro["rates"][precision], micro["bandwidth"]
    budget = BUDGET_S["CPU" if "CPU" in info["type"] else "GPU"]
    def affordable(r, s):
        return sweep.affordable(r, s, precision, peak, bw, budget)

    run = [(r, s) for r, s in todo if affordable(r, s)]
    over = len(todo) - len(run)
    topped = [] if quick else sweep.top_up(run, precision, affordable, seed)
    run += topped
    deepened = [] if quick else sweep.deepen(run, precision, affordable, seed)
    run += deepened
    random.Random(seed).shuffle(run)
    cal = Calibration(
        name=name, device=rt.name, driver=rt.device.driver_version.strip(), precision=precision,
        mix=size, date=provenance.now(),
        command=command, device_info=info, micro=micro, kernels_hash=kernels_hash(),
        tuning=tuning.current())
    heldout = set(random.Random(seed + 1).sample(range(len(run)), int(HELDOUT * len(run))))
    # the load and the commit as the sweep starts (the tree may move on during a long one)
    load0, commit, t0, again = provenance.load(), provenance.commit(), time.perf_counter(), 0
    clock = Counter()
    needs = dryrun.case_programs(rt, run, precision)
    programs = set().union(*(n for n in needs if n is not None))
    print(f"building {len(programs)} kernel programs while the sweep measures the cases whose "
          "programs are built", file=sys.stderr)
    by_case, done = [None] * len(run), 0
    with rt.building(programs) as builds:
        bar = tqdm(total=len(run), desc=f"calibrate {rt.device.name.strip()}", unit="case",
                   file=sys.stderr, disable=None)
        for i in _as_built(needs, builds, clock):
            record, shape = run[i]
            bar.set_postfix_str(record.key)
            points, remeasured = sweep.measure(rt, record, shape, precision, repeat, clock=clock,
                                               gated=gated, lead=lead, statistic=statistic)
            again += remeasured
            for p in points:
                p.heldout = i in heldout
            by_case[i] = points
            bar.update()
            done += 1
            if done == sweep.EARLY_CASES and (noise := sweep.early_noise(
                    [p for ps in by_case if ps for p in ps], done)):
                tqdm.write(f"warning: {noise}", file=sys.stderr)
        bar.close()
    cal.points = [p for points in by_case for p in points]   # in the sweep's (random) order
    t, memo = time.perf_counter(), {}
    first = fitted(cal, memo)
    clock["first fit"] = time.perf_counter() - t
    t = time.perf_counter()
    rechecked = _recheck(rt, first, run, by_case, repeat, seed, gated, lead, statistic)
    clock["recheck"] = time.perf_counter() - t
    queried = [] if quick else _query(rt, cal, run, by_case, affordable, repeat, gated, lead,
                                      clock, statistic)
    t = time.perf_counter()
    fitted(cal, memo)   # again, the bodies the recheck changed or the query added points to
    clock["final fit"] = time.perf_counter() - t
    if gated:   # the probe times its dispatches behind the gate, as the sweep's
        t = time.perf_counter()
        print("launch-overlap probe", file=sys.stderr)
        cal.micro["overlap"] = overlap.measure(rt, precision, lead, quick)
        clock["overlap probe"] = time.perf_counter() - t
        t = time.perf_counter()
        print("write-back probe", file=sys.stderr)
        cal.micro["writeback"] = writeback.measure(rt, precision, lead, cal.micro["bandwidth"],
                                                   cal.micro["overlap"], quick)
        clock["write-back probe"] = time.perf_counter() - t
    cal.sweep = {"cases": len(run), "rejected_sd_layers": rejected,
                 "over_budget": over, "budget_s": budget,
                 "topped_up": len(topped), "deepened": len(deepened),
                 "heldout_cases": len(heldout), "remeasured": again, "repeat": repeat,
                 "statistic": statistic,
                 "feed": "gated" if gated else "host", "lead": lead,
                 "rechecked": len(rechecked), "queried": len(queried),
                 "rechecked_heldout": sum(by_case[i][0].heldout for i in rechecked),
                 "rechecked_faster": sum(by_case[i][0].passes[1] < by_case[i][0].passes[0]
                                         for i in rechecked),
                 "load_before": load0, "load_after": provenance.load(), "commit": commit,
                 "programs": len(programs), "seconds": time.perf_counter() - t0,
                 "long_s": sweep.LONG_S, "long_repeat": sweep.LONG_REPEAT,
                 "host_s": {k: round(v, 1) for k, v in clock.items()}}
    return cal


def _as_built(needs: list, builds, clock: Counter):
    """The indices of the sweep's cases, each in the sweep's order among those whose programs
    (`needs`, sdsim/cl/dryrun.py; None: unknown, built when launched) are built when it comes
    up, waiting for a compile where none is; clock["waiting for builds"] adds up the waits."""
    left = list(range(len(needs)))
    while left:
        i = next((i for i in left if needs[i] is None or builds.ready(needs[i])), None)
        if i is None:
            t = time.perf_counter()
            builds.wait_any()
            clock["waiting for builds"] += time.perf_counter() - t
            continue
        left.remove(i)
        yield i


def _recheck(rt, cal: Calibration, run: list, by_case: list, repeat: int, seed: int,
             gated: bool, lead: int, statistic: str) -> list:
    """Measure again, after the whole sweep and in random order, every case (training or held
    out alike) with a dispatch the first fit misses by more than RECHECK; each such case keeps
    the faster of its two passes (both stay in the measurements as `passes`). Other work on the
    machine only adds time, and comes and goes over seconds: PoCL's 2-core sweep once measured
    a 2500x24x100 GEMM at 1.6 ms in one case and at 5.6 ms in another, each with a small spread
    of its own. A case whose first pass was right measures the same again and keeps it. Returns
    the indices of the cases measured again."""
    from tqdm import tqdm

    todo = [i for i, points in enumerate(by_case) if any(abs(p.error) > RECHECK for p in points)]
    random.Random(seed + 2).shuffle(todo)
    for i in tqdm(todo, desc="recheck the cases the first fit misses", unit="case",
                  file=sys.stderr, disable=None):
        record, shape = run[i]
        again, _ = sweep.measure(rt, record, shape, cal.precision, repeat, gated=gated,
                                 lead=lead, statistic=statistic)
        first = sum(p.measured_s for p in by_case[i])
        faster = sum(q.measured_s for q in again) < first
        for p, q in zip(by_case[i], again):
            p.passes = (p.measured_s, q.measured_s)
            if faster:
                p.measured_s, p.cv = q.measured_s, q.cv
    return sorted(todo)


def _query(rt, cal: Calibration, run: list, by_case: list, affordable, repeat: int,
           gated: bool, lead: int, clock: Counter, statistic: str) -> list:
    """Measure the pool cases where the fits each body's points hardly tell apart disagree
    (sweep.query), as training points; they join `run` and `by_case`. The committees are fitted
    to the points after the recheck, each at the cache size of the first fit. Returns the
    cases."""
    from tqdm import tqdm

    t = time.perf_counter()
    cu = cal.device_info["compute_units"]
    members = fit.committees(cal.points, cu, cal.coefficients, cal.device_info.get("l1_ways", 0))
    todo = sweep.query(run, members, cal.precision, affordable, cu)
    clock["query"] = time.perf_counter() - t
    for record, shape in tqdm(todo, desc="measure where near-tied fits disagree", unit="case",
                              file=sys.stderr, disable=None):
        points, _ = sweep.measure(rt, record, shape, cal.precision, repeat, clock=clock,
                                  gated=gated, lead=lead, statistic=statistic)
        run.append((record, shape))
        by_case.append(points)
        cal.points += points
    return todo


def measured_cache(cal: Calibration) -> float | None:
    """The device cache size (bytes) the calibration's copy microbenchmark measured; None where
    it has none (measured before it existed, or its footprints bracket no cache): then the fit
    chooses the size."""
    size = cal.micro.get("cache", {}).get("bytes")
    return size or None


def fitted(cal: Calibration, memo: dict | None = None) -> Calibration:
    """`cal` with each kernel body's timing coefficients and the class efficiencies fitted to
    its points (a fresh sweep, or stored measurements fitted again); `memo` as fit.fit_all's."""
    cal.cache_costs = {}
    if "cache_curve" in cal.micro:   # reduced here, so that a refit takes today's reduction
        cal.micro["cache"] = microbench.cache_size(cal.micro["cache_curve"])
    cal.coefficients = fit.fit_all(cal.points, cal.device_info["compute_units"],
                                   cal.device_info.get("l1_ways", 0), memo, cal.cache_costs,
                                   measured_cache(cal))
    cal.classes = classes.efficiencies(cal.points, cal.micro["rates"][cal.precision],
                                       cal.micro["bandwidth"], cal.launch_s)
    return cal
