"""A Calibration as a device profile (YAML, schema 2 of device_profiles/README.md) and as the
Markdown report every number of that profile cites."""

from __future__ import annotations

from pathlib import Path

import yaml

import statistics

from sdsim import atomic, provenance, repeats
from sdsim.calibration import fit, store, writeback
from sdsim.cl.bench import describe
from sdsim.cl.runtime import FLUSH_BYTES
from sdsim.cost import waves
from sdsim.cost.profile import SCHEMA_VERSION, SWEPT, elsewhere, measured_on, parse_profile
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES
from sdsim.output import dumps, render_rows


def _q(value, unit, source):
    return {"value": float(f"{value:.6g}"), "unit": unit, "source": source}


def profile_dict(cal, report_rel: str) -> dict:
    """The profile of a calibration; sources name the report and the section of each figure."""
    m, info = cal.micro, cal.device_info
    src = lambda what: f"sdsim calibrate, {report_rel} ({what}); measured {cal.date}"
    eff = {}
    for cls in KERNEL_CLASSES:
        c = cal.classes.get(cls)
        if c is None:
            raise SdsimError(f"calibration of {cal.device} measured no kernel of class '{cls}'; "
                             "cannot write efficiency." + cls)
        eff[cls] = _q(c["efficiency"], "fraction", src(
            f"kernel classes: time-weighted roofline/measured over {c['samples']} dispatches on "
            f"synthetic shapes, {cal.precision} storage"
            + (f"; measured ratio {c['ratio']:.3g} capped at 1" if c["ratio"] > 1 else "")))
    gemm = cal.coefficients.get(f"gemm.{cal.tuning.gemm['large'].name}")
    residency = gemm.residency if gemm else int(statistics.median(
        c.residency for c in cal.coefficients.values()))
    # a body whose sweep never leaves the device partly idle has no latency (fit.py)
    gemm_latency = bool(gemm and gemm.latency > 0)
    latency = gemm.latency if gemm_latency else statistics.median(
        c.latency for c in cal.coefficients.values() if c.latency > 0)
    return {
        "schema": SCHEMA_VERSION,
        "name": cal.name,
        "soc": f"OpenCL {info['type']} device, {info['compute_units']} compute units "
               f"(host {info['host']})",
        **measured_on(cal.device, info["opencl"], cal.driver),
        "notes": (f"Calibrated by `{cal.command}` on {cal.date}"
                  + (f", {cal.refit}" if cal.refit else "")
                  + f"; every figure is a measurement in {report_rel}. Peak rates and bandwidth "
                  "are what microbenchmarks reach through this OpenCL implementation, not "
                  "spec-sheet numbers."),
        "peak_fp32": _q(m["rates"]["fp32"] / 1e9, "GFLOP/s", src(
            "arithmetic rate: independent multiply-add chains, fp32")),
        "peak_fp16": _q(m["rates"]["fp16"] / 1e9, "GFLOP/s", src(
            "arithmetic rate: the same chains in the fp16 build, "
            + ("native half arithmetic (cl_khr_fp16)" if info["fp16"] else
               "float arithmetic since the device lacks cl_khr_fp16, as fp16-storage kernels do"))),
        "native_half": {"value": bool(info["fp16"]), "source": (
            f"cl_khr_fp16: {'yes' if info['fp16'] else 'no'}, queried by sdsim calibrate "
            f"({report_rel})")},
        "dram_bandwidth": _q(m["bandwidth"] / 1e9, "GB/s", src(
            f"streaming float4 copy of {m['bandwidth_bytes'] / 2**20:.0f} MiB, read+write")),
        "local_memory": _q(info["local_mem"], "B", "CL_DEVICE_LOCAL_MEM_SIZE queried by sdsim "
                           f"calibrate ({report_rel})"),
        "cache": _q(max(info["cache"], 1), "B", "CL_DEVICE_GLOBAL_MEM_CACHE_SIZE queried by sdsim "
                    f"calibrate ({report_rel})"),
        "max_allocation": _q(info["max_alloc"], "B", "CL_DEVICE_MAX_MEM_ALLOC_SIZE queried by "
                             f"sdsim calibrate ({report_rel})"),
        "launch_overhead": _q(cal.launch_s * 1e6, "us", src(
            "launch overhead: median OpenCL event duration of an empty dispatch, the per-dispatch "
            "cost that event-timed kernels show")),
        "step_latency": _q(latency * 1e6, "us", src(
            "timing coefficients: the fitted latency of one GEMM k-step"
            if gemm_latency else "timing coefficients: median fitted step latency")),
        "geometry": {
            "compute_units": _q(info["compute_units"], "count", "CL_DEVICE_MAX_COMPUTE_UNITS "
                                f"queried by sdsim calibrate ({report_rel})"),
            "lanes": _q(info["simd"], "count", "CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE "
                        f"queried by sdsim calibrate ({report_rel})"),
            "residency": _q(residency, "count", src(
                "timing coefficients: the GEMM's fitted work-groups resident per compute unit"
                if gemm else "timing coefficients: median fitted residency")),
            "clock": _q(max(info["clock_mhz"], 1), "MHz", "CL_DEVICE_MAX_CLOCK_FREQUENCY queried "
                        f"by sdsim calibrate ({report_rel})"),
        },
        "efficiency": eff,
        "device_type": cal.tuning.device_type,
        **({"tuning": cal.tuning.to_yaml(cal.tuning.source)}
           if not cal.tuning.source.startswith("defaults") else {}),
        "coefficients": {
            "report": report_rel, "kernels_hash": cal.kernels_hash, "precision": cal.precision,
            "statistic": cal.sweep.get("statistic", "median"), "cache_bytes": _cache(cal),
            "launches": cal.tuning.launches,
            **({"l1_ways": _ways(cal)} if _ways(cal) else {}),
            **({"overlap": overlap_section(m["overlap"])}
               if overlap_applied(m.get("overlap")) else {}),
            **({"writeback": section} if (section := _writeback(m.get("writeback"))) else {}),
            "kernels": {key: _coefficients(cal, key, c)
                        for key, c in sorted(cal.coefficients.items())},
        },
    }


def overlap_section(probe: dict) -> dict:
    """The profile's `overlap` section of a launch-overlap probe (sdsim/cost/overlap.py)."""
    return {"hidden_us": _g(probe["hidden_us"]), "over_us": _g(probe["over_us"]),
            "lead_us": _g(probe["lead_dispatch_us"])}


def _writeback(probe: dict | None) -> dict | None:
    """The profile's `writeback` section of a write-back probe (sdsim/cost/writeback.py); None
    where the probe gives no term or was not measured by its copy protocol (`_copied`)."""
    if not _copied(probe):
        return None
    dirty, per_byte = writeback.term(probe)
    return {"dirty_mb": _g(dirty / 1e6), "us_per_mb": _g(per_byte * 1e12)} if dirty else None


def _copied(probe: dict | None) -> bool:
    """Whether a stored write-back probe wrote its inputs by a copy (the probe's protocol):
    the first one, of 2026-12-07 19:52 UTC (sdsim commit a7cf0bd), rewrote them in place, read
    then written, which leaves them cached as no pipeline's dispatch does, and is not applied."""
    return bool(probe) and all("written_bytes" in p for p in probe["probes"])


def _writeback_lines(probe: dict | None) -> list:
    """The report's section on the write-back probe."""
    head = ["## Write-back (sdsim/calibration/writeback.py)", ""]
    if not probe:
        return head + ["Not measured (host-fed sweep, or measurements from before the probe): "
                       "no write-back term.", ""]
    if not _copied(probe):
        return head + ["Measured with the inputs rewritten in place (read, then written: cached "
                       "as no pipeline's dispatch leaves them) rather than written by a copy: "
                       "not applied, no write-back term.", ""]
    dirty, per_byte = writeback.term(probe)
    fit = (f"dirty {dirty / 1e6:.3g} MB, {per_byte * 1e12:.3g} us per MB; the predictor "
           "charges it to each op's first dispatch by what the dispatch before it wrote "
           "(sdsim/cost/writeback.py)" if dirty else writeback.NO_TERM)
    rows = [{"probe": p["variant"], "shape": describe(p["shape"]),
             "written MB": p["written_bytes"] / 1e6, "copy us": p["copy_us"],
             "clean us": p["clean_us"], "after copy us": p["after_us"],
             "overlap us": p["hidden_us"], "delta us": writeback.delta(p),
             "memory share": writeback.share(p, probe["bandwidth"])} for p in probe["probes"]]
    return head + [
        f"Each probe's dispatch timed behind the flush, its input read and the lead of "
        f"{probe['lead']} small dispatches (clean: as the sweep times every case), then with "
        f"each input written by a copy kernel from a duplicate (same values, written as a "
        f"pipeline's dispatch writes its output) between the lead and the dispatch; median of "
        f"{probe['repeat']} interleaved runs. delta = after the copy - clean + what the launch "
        f"overlap hides behind the copy (overlap us, the term of the section above). Fit of "
        f"min(written, dirty) x per byte to each delta over the dispatch's memory share (its "
        f"bytes at {probe['bandwidth'] / 1e9:.4g} GB/s over its clean time): {fit}.", "",
        render_rows(rows, "markdown", floatfmt=".3g"), ""]


def overlap_applied(probe: dict | None) -> bool:
    """Whether a stored probe makes the profile's sequence term: only one behind synthetic
    GEMMs. Probes measured before (behind a compute-only dispatch) overstate what a pipeline's
    predecessors hide: on an H100 they measured 1.0-1.5 us where SD's small dispatches after
    long ones gained 0.2-1.1 us over those after short ones, and the term they made cost two
    validation runs the bar (reports/overlap-effect-nvidia-h100-opencl.md at faf995a)."""
    return bool(probe) and "predecessor" in probe


def _overlap_lines(probe: dict | None) -> list:
    """The report's section on the launch-overlap probe."""
    if not probe:
        return ["## Launch overlap (sdsim/calibration/overlap.py)", "",
                "Not measured (host-fed sweep, or measurements from before the probe): no "
                "sequence term.", ""]
    lengths = probe["lengths_us"]
    fit = (f"hidden {probe['hidden_us']:.3g} us, over {probe['over_us']:.3g} us"
           if probe["hidden_us"] else "no term (not every probe measures a positive delta "
                                     "after the two longest predecessors)")
    use = ("; the predictor applies it to each dispatch by the one before it "
           "(sdsim/cost/overlap.py)." if overlap_applied(probe) else
           ". Not applied: a compute-only predecessor overstates what a pipeline's dispatches "
           "hide (sdsim/calibration/write.py `overlap_applied`).")
    rows = [{"probe": p["variant"], "shape": describe(p["shape"]), "after lead us": p["lead_us"],
             **{f"delta after {n:.3g} us": p["lead_us"] - a
                for n, a in zip(lengths, p["after_us"])}} for p in probe["probes"]]
    return ["## Launch overlap (sdsim/calibration/overlap.py)", "",
            f"Each probe's first dispatch timed behind the flush, its input read and the lead of "
            f"{probe['lead']} small dispatches ({probe['lead_dispatch_us']:.3g} us each), then "
            f"with one {_predecessor(probe)} (its time heads each column) between the "
            f"lead and the probe; median of {probe['repeat']} interleaved runs. delta = after "
            f"the lead - after it, in us. Fit of hidden x (min(1, length / over) "
            f"- min(1, lead / over)) to the median deltas: {fit}{use}", "",
            render_rows(rows, "markdown", floatfmt=".3g"), ""]


def _predecessor(probe: dict) -> str:
    """What the probe put before its dispatches: a synthetic GEMM of each size, or (probes
    measured before the GEMM) a compute-only dispatch of each length."""
    if "predecessor" not in probe:
        return "compute-only dispatch (calibrate.cl fma_rate) of each length"
    return (f"synthetic GEMM ({probe['predecessor']}, m = n = k = "
            f"{', '.join(map(str, probe['sizes']))})")


def _coefficients(cal, key, c) -> dict:
    train, held = fit.key_errors(cal.points, key)
    out = {"t0_us": _g(c.t0 * 1e6), "latency_us": _g(c.latency * 1e6),
           "step_us": _g(c.step * 1e6), "group_us": _g(c.group * 1e6),
           "wave_latency_us": _g(c.wave_latency * 1e6), "tail": _g(c.tail),
           "residency": c.residency, "padding": _g(c.padding),
           "points": train["points"] + held["points"],
           "fit_error_pct": _g(train.get("median_abs_error_pct", 0.0))}
    if held["points"]:
        out["heldout_error_pct"] = _g(held["median_abs_error_pct"])
    if c.spill:
        out["spill"] = _g(c.spill)
    if c.alias:
        out["alias"] = _g(c.alias)
    if c.later < 1.0:
        out["later"] = _g(c.later)
    if c.edge:
        out["edge"] = _g(c.edge)
    swept = _swept(cal, key)
    if swept:
        out["swept"] = swept
    return out


def _swept(cal, key) -> dict:
    """[low, high] of the geometry the body's training points measured (its `swept` ranges:
    predictions past them say they extrapolate, sdsim/cost/waves.py `beyond`)."""
    pts = [p for p in cal.points if p.key == key and not p.heldout]
    if not pts:
        return {}
    values = {"work_groups": [p.launch.work_groups for p in pts],
              "steps": [p.launch.steps for p in pts],
              "active": [p.launch.active for p in pts],
              "footprint_mib": [waves.footprint(p.launch, p.dram_bytes) for p in pts]}
    return {k: [_g(min(v) / SWEPT[k]), _g(max(v) / SWEPT[k])] for k, v in values.items()}


def _ways(cal) -> int:
    """The L1 associativity the alias term used (0: none used it)."""
    return max((c.ways for c in cal.coefficients.values()), default=0)


def _cache(cal) -> float:
    """The device cache size (bytes) the fit chose, one for every kernel body (0: none)."""
    return max((c.cache for c in cal.coefficients.values()), default=0.0)


#: sizes whose training error is within this share of the least are named beside the choice
CACHE_CLOSE = 0.02


def _cache_spread(cal) -> str:
    """How sharply the points pick the cache size, as a clause: the training error without a
    cache term and the sizes within CACHE_CLOSE of the least. An H100's fp32 sweep cost 6.14 at
    1 MiB, 6.18 at 2.8 and 6.50 with none, non-monotonically in between: a size the points do
    not determine, which then prices every large stream as spilling."""
    c = cal.cache_costs
    best = min(c.values(), default=0.0)
    if len(c) < 2 or best <= 0:
        return ""
    close = [k for k in sorted(c) if k and c[k] <= best * (1 + CACHE_CLOSE)]
    return (f"; without a cache term it is {c.get(0.0, best) / best:.2f}x the least, and "
            f"{', '.join(f'{k / 2**20:.3g}' for k in close) or 'no size'} MiB come within "
            f"{CACHE_CLOSE:.0%} of it")


def _cache_choice(cal) -> str:
    """How the device cache size was set: measured by the cache curve, with how far the
    sweep's training error at it lies from the least; or chosen by that error."""
    from sdsim.calibration import run

    if run.measured_cache(cal) is not None:
        c = cal.cache_costs
        least = min(c, key=c.get) if c else 0.0
        return ("measured by the cache curve above" + (
            f"; the sweep's training error at it is {c[_cache(cal)] / c[least]:.2f}x the least "
            f"of the sizes tried ({least / 2**20:.3g} MiB)" if c and _cache(cal) in c else ""))
    return (f"of {', '.join(f'{c / 2**20:.3g}' for c in fit.CACHES)} MiB, the one whose fits of "
            f"all kernel bodies together leave the least training error{_cache_spread(cal)}")


def _curve_rows(m: dict) -> list[str]:
    """The microbenchmark table's rows of the cache curve, where the calibration measured it."""
    if "cache" not in m:
        return []
    c, curve = m["cache"], m["cache_curve"]
    return [
        f"| cache (copy curve) | "
        + (f"{c['bytes'] / 2**20:.3g} MiB" if c["bytes"] else "none bracketed")
        + f" | float4 copy of {curve[0][0] / 2**20:.0f} MiB to {curve[-1][0] / 2**20:.0f} MiB "
        f"(read + write) re-reading what the copy before it left, best of 5 at each; fitted as "
        f"fixed + bytes x (1/{c['hit_Bps'] / 1e9:.4g} GB/s + extra x miss share), past the cache "
        f"{c['miss_Bps'] / 1e9:.4g} GB/s; rms error {c['error_pct']:.1f}% "
        f"({c['flat_error_pct']:.1f}% without a cache) |"]


def _curve_section(m: dict) -> list[str]:
    """The cache curve, footprint by footprint, where the calibration measured it."""
    if "cache_curve" not in m:
        return []
    return ["## Cache curve (copy of what the previous copy left cached)", "",
            "| footprint MiB | time us | GB/s |", "|---|---|---|",
            *(f"| {s / 2**20:.3g} | {t * 1e6:.4g} | {s / t / 1e9:.4g} |"
              for s, t in m["cache_curve"]), ""]


def _merged_lines(cal) -> list[str]:
    """The report's lines on the other calibrations whose measurements were fitted with these."""
    return [f"- Also fitted: the {m['points']} dispatches ({m['cases']} cases) that `{m['command']}` "
            f"measured on {m['date']} (sdsim commit {m['commit']}): same device, storage "
            "precision, kernel sources and builds; the held-out points are each sweep's own"
            for m in cal.merged]


def _topped(w: dict) -> str:
    """The sweep's top-up from the pools, where the calibration made one (older ones did not)."""
    from sdsim.calibration import sweep

    if "topped_up" not in w:
        return ""
    return (f"; {w['topped_up']} drawn from the variants' pools so that every kernel body has "
            f"at least {sweep.MIN_CASES} cases"
            + (f", {w['deepened']} so that each reaches {sweep.DEEP_SHARE:.0%} of the serial "
               "steps its pool does" if w.get("deepened") is not None else ""))


def _feed(w: dict) -> str:
    """How the timed runs were fed to the device (`sdsim calibrate --feed`)."""
    lead = (f", {w['lead']} small dispatches between the fill and the case's (a pipeline's "
            "dispatch sits deep in a stream)" if w.get("lead") else "")
    if w.get("feed", "host") == "gated":
        return ("the fill and the case's dispatches enqueued behind a gate and run back to back"
                + lead)
    return "each dispatch started as the host enqueued it" + lead


def _rechecked(w: dict) -> str:
    """The report's words on the cases measured again after the sweep (calibrations before the
    recheck existed have none)."""
    if "rechecked" not in w:
        return ""
    from sdsim.calibration.run import RECHECK

    return (f"{w['rechecked']} cases ({w['rechecked_heldout']} of them held out) with a "
            f"dispatch more than {RECHECK:.0%} off the first fit measured again after the sweep, "
            f"each keeping the faster pass ({w['rechecked_faster']} were faster the second "
            "time); ")


def _queried(w: dict) -> str:
    """The report's words on the pool cases measured where near-tied fits disagreed
    (calibrations before the query existed have none)."""
    if not w.get("queried"):
        return ""
    from sdsim.calibration import sweep

    return (f"{w['queried']} of the cases drawn from the pools after the fit, where a body's "
            f"fits that its points hardly told apart priced a dispatch more than "
            f"{sweep.QUERY_SPREAD:.0%} apart (training points, measured and fitted again); ")


def _long(w: dict) -> str:
    """The fewer repeats of long cases, where the calibration made them (older ones did not)."""
    if "long_repeat" not in w or w["long_repeat"] >= w["repeat"]:
        return ""
    return f" ({w['long_repeat']} for a case whose warm-up took {w['long_s']:g} s or more)"


def _split(w: dict) -> str:
    """Where the sweep's seconds went, where the calibration timed its phases (older ones did
    not)."""
    if "host_s" not in w:
        return ""
    return " (" + ", ".join(f"{k} {v:.0f} s" for k, v in w["host_s"].items()) + ")"


def _g(v: float) -> float:
    return float(f"{v:.4g}")


def report_markdown(cal, profile_rel: str, report_path, commit: str | None = None) -> str:
    """The calibration report; `commit` is the sdsim commit a refit ran at (taken before its
    profile was written: after, the profile it just wrote makes every checkout look modified)."""
    from sdsim.calibration import run, sweep

    m, info, w = cal.micro, cal.device_info, cal.sweep
    lines = [
        f"# Calibration of {cal.device}",
        "",
        f"- Command: `{cal.command}`",
        f"- Date: {cal.date}",
        f"- Device: {cal.device}, driver {cal.driver}, {info['opencl']}; {info['compute_units']} "
        f"compute units at {info['clock_mhz']} MHz, preferred work-group multiple {info['simd']}, {info['global_mem'] / 2**30:.1f} GiB global "
        f"memory, {info['local_mem'] / 1024:.0f} KiB local memory, "
        f"cl_khr_fp16: {'yes' if info['fp16'] else 'no'}; host {info['host']}",
        f"- Profile written: `{profile_rel}`",
        f"- Sweep: `{cal.mix}`, {cal.precision} storage; {w['cases']} cases in random order "
        f"({w['rejected_sd_layers']} rejected as SD1.4 layer shapes, {w['over_budget']} over the "
        f"{w['budget_s']:g} s per-case budget{_topped(w)}), warm-up then "
        f"{repeats.WORDS[w.get('statistic', 'median')]} of "
        f"{w['repeat']} runs{_long(w)}, each "
        f"after a {FLUSH_BYTES >> 20} MiB fill that evicts the device caches and a read of the "
        f"activation inputs (weights cold, activations cached, as in a pipeline), "
        f"{_feed(w)}, {w['remeasured']} re-measured for a spread over {sweep.MAX_CV:.0%}; "
        f"{_rechecked(w)}{_queried(w)}"
        f"{w['seconds']:.0f} s{_split(w)}; machine load (1-min average) {w['load_before']} before, "
        f"{w['load_after']} after; sdsim commit {w.get('commit')}",
        *([f"- **Noisy timings**: {noise}"] if (noise := sweep.noisy(cal.points)) else []),
        f"- Kernel sources hash (opencl/*.cl): `{cal.kernels_hash}`",
        (f"- Kernel builds and launches: {cal.tuning.source}; GEMM "
         + ", ".join(f"{c} `{g.name}`" for c, g in cal.tuning.gemm.items()) + "; "
         + ", ".join(f"{k} {v}" for k, v in cal.tuning.launches.items())),
        *([f"- Timing coefficients: the measurements above, {cal.refit} (sdsim commit "
           f"{commit or provenance.commit()})"] if cal.refit else []),
        *_merged_lines(cal),
        f"- Measurements: `{store.json_path(report_path).name}` (every dispatch with its launch "
        "geometry; `sdsim calibrate --refit` fits them again without the device)",
        "",
        "## Device microbenchmarks (opencl/calibrate.cl)",
        "",
        "| figure | value | how |",
        "|---|---|---|",
        f"| streaming bandwidth | {m['bandwidth'] / 1e9:.4g} GB/s | float4 copy of "
        f"{m['bandwidth_bytes'] / 2**20:.0f} MiB, 2 x bytes / time, best of 5 |",
        f"| arithmetic rate fp32 | {m['rates']['fp32'] / 1e9:.4g} GFLOP/s | 16 independent "
        f"multiply-add chains x {m['rate_iters']} iterations x {m['rate_work_items']} work-items, "
        "best of 3 |",
        f"| arithmetic rate fp16 build | {m['rates']['fp16'] / 1e9:.4g} GFLOP/s | same, "
        + ("native half" if info["fp16"] else "float arithmetic (no cl_khr_fp16)") + " |",
        f"| launch overhead (event) | {m['launch']['event_s'] * 1e6:.3g} us | median event "
        "duration of an empty 1-work-item dispatch (used as `launch_overhead`) |",
        f"| dispatch spacing | {m['launch']['spacing_s'] * 1e6:.3g} us | back-to-back empty "
        "dispatches, first start to last end / count (informational) |",
        *_curve_rows(m),
        "",
        *_curve_section(m),
        "## Timing coefficients per kernel body (sdsim/cost/waves.py)",
        "",
        f"{waves.FORMULA}; "
        f"fitted on log times of the training points ({100 - int(run.HELDOUT * 100)}% of the "
        f"cases); the held-out points ({int(run.HELDOUT * 100)}% of the cases) were never seen "
        "by the fit. Errors are (predicted - measured) / measured. Device cache size: "
        + (f"{_cache(cal) / 2**20:.3g} MiB" if _cache(cal) else "none")
        + f" ({_cache_choice(cal)}). "
        "L1 associativity: "
        + (f"{cal.device_info['l1_ways']} ways (the host's, from sysfs)"
           if cal.device_info.get("l1_ways") else "not known (no alias term)") + ".",
        "",
    ]
    rows = []
    for key, c in sorted(cal.coefficients.items()):
        tr, ho = fit.key_errors(cal.points, key)
        rows.append({"kernel body": key, "t0 us": c.t0 * 1e6, "latency us": c.latency * 1e6,
                     "wave latency us": c.wave_latency * 1e6, "later": c.later, "tail": c.tail,
                     "step us": c.step * 1e6, "group us": c.group * 1e6,
                     "padding": c.padding, "residency": c.residency, "spill": c.spill,
                     "alias": c.alias, "edge": c.edge,
                     "train points": tr["points"],
                     "train median err %": tr.get("median_abs_error_pct"),
                     "held-out points": ho["points"],
                     "held-out median err %": ho.get("median_abs_error_pct"),
                     "held-out within 10% (time) %": ho.get("within10_time_pct")})
    lines += [render_rows(rows, "markdown", floatfmt=".3g"), ""]
    held = [p for p in cal.points if p.heldout]
    allh = fit.errors(held)
    lines += ["## Held-out error per variant (synthetic shapes the fit did not see)", "",
              f"All variants: {allh['points']} held-out dispatches, median |error| "
              f"{allh.get('median_abs_error_pct', float('nan')):.3g}%, "
              f"{allh.get('within10_time_pct', float('nan')):.3g}% of their measured time within "
              "+-10%.", ""]
    rows = []
    for v in sorted({p.variant for p in held}):
        e = fit.errors([p for p in held if p.variant == v])
        rows.append({"variant": v, "dispatches": e["points"],
                     "median err %": e["median_abs_error_pct"],
                     "within 10% (points) %": e["within10_points_pct"],
                     "within 10% (time) %": e["within10_time_pct"]})
    lines += [render_rows(rows, "markdown", floatfmt=".3g"), ""]
    lines += _overlap_lines(m.get("overlap"))
    lines += _writeback_lines(m.get("writeback"))
    lines += [
        "## Kernel-class efficiency",
        "",
        "efficiency = sum of roofline times / sum of (measured - launch overhead) over the class's "
        "dispatches; roofline time = max(FLOPs / rate, DRAM bytes / bandwidth) with the rate and "
        "bandwidth above. Capped at 1. Used only for kernels without fitted coefficients.",
        "",
    ]
    rows = []
    for cls in KERNEL_CLASSES:
        c = cal.classes.get(cls)
        if c:
            rows.append({"class": cls, "efficiency": c["efficiency"], "measured ratio": c["ratio"],
                         "dispatches": c["samples"], "measured ms": c["measured_s"] * 1e3})
    lines += [render_rows(rows, "markdown", floatfmt=".4g"), ""]
    lines += ["## Every measured dispatch (synthetic shapes, not SD1.4's layers)", ""]
    rows = [{"family/variant": p.variant,
             "shape": describe(p.shape),
             "kernel": p.kernel, "work-groups": p.launch.work_groups, "steps": p.launch.steps,
             "measured ms": p.measured_s * 1e3, "predicted ms": p.predicted_s * 1e3,
             "error %": p.error * 100, "cv %": p.cv * 100, "held out": p.heldout}
            for p in cal.points]
    lines += [render_rows(rows, "markdown", floatfmt=".4g"), ""]
    return "\n".join(lines)


def write(cal, profile_path, report_path) -> dict:
    """Write the profile (validated against the schema before it lands), the report and the
    measurements beside it (sdsim/calibration/store.py)."""
    profile_path, report_path = Path(profile_path), Path(report_path)
    commit = provenance.commit()   # before the profile below changes the checkout
    rel = lambda p: _relative(p)
    data = profile_dict(cal, rel(report_path))
    kept = _other_precision(profile_path, cal, data)
    for key in kept:   # "every figure" above is this run's: say whose the kept set is
        data["notes"] += (f" `{key}` comes from another calibration: its `report` and "
                          "`kernels_hash` name the measurements and kernels it came from.")
    data.update(kept)
    parse_profile(data, str(profile_path))   # never write a profile that would not load
    header = (f"# {cal.name}: calibrated by sdsim calibrate on {cal.date}. Schema: "
              "device_profiles/README.md; sources: the calibration report.\n")
    atomic.write_text(profile_path, header + yaml.safe_dump(data, sort_keys=False, width=200))
    atomic.write_text(report_path, report_markdown(cal, rel(profile_path), report_path, commit))
    atomic.write_text(store.json_path(report_path), dumps(store.dump(cal)) + "\n")
    return data


def _profile_yaml(path: Path) -> dict:
    """An existing profile's YAML as a dict ({} where there is none or it holds no mapping)."""
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def calibrated_elsewhere(profile_path, here: dict) -> str | None:
    """Why the profile at `profile_path` was measured on another device than `here` (a
    `measured_on` dict), or None where it was not (or there is no profile): its coefficients and
    tuning then describe that other device, and a calibration written there must not keep them
    (two PoCL builds on one host, PyPI's and Debian's, share their platform name)."""
    old = _profile_yaml(Path(profile_path))
    if not _elsewhere(old, here):
        return None
    return (f"{profile_path} was calibrated on {old.get('gpu')} ({old.get('api')}), not on "
            f"{here['gpu']} ({here['api']})")


def _elsewhere(old: dict, here: dict) -> bool:
    """Whether the profile `old` (its YAML) holds coefficients of another device than `here`."""
    return bool(old.get("coefficients")) and elsewhere(old.get("gpu"), old.get("api"), here)


def _other_precision(profile_path: Path, cal, data: dict) -> dict:
    """The coefficients an existing profile holds for the other storage precision (a profile
    can carry one set per precision), kept even when measured on other kernel sources: each set
    names its own `kernels_hash`, and predict warns for a stale one, which still prices its
    precision better than the other precision's set would. None are kept from a profile of
    another device (`calibrated_elsewhere`): they would price this one's calls by that one's."""
    old = _profile_yaml(profile_path)
    if _elsewhere(old, data):
        return {}
    sections = [old.get("coefficients")] + [old.get(f"coefficients_{p}") for p in ("fp16", "fp32")]
    return {f"coefficients_{s['precision']}": s for s in sections
            if isinstance(s, dict) and s.get("precision") not in (None, cal.precision)}


def _relative(p: Path) -> str:
    from sdsim.paths import ROOT

    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)
