"""Efficiency of each kernel class, measured on synthetic shapes (not SD's own layer shapes).

Every case is one op variant at one shape, run through its record's launcher (the code the OpenCL
backend runs); each of its dispatches is timed by OpenCL events
(median of repeats) and set against its roofline time from the variant's cost formula and the
measured peak rate and bandwidth. A class's efficiency is the time-weighted ratio over all its
dispatches,

    efficiency[class] = sum(roofline_i) / sum(measured_i - launch)

i.e. the single factor that makes the cost model's total right for the calibration mix; it is
capped to (0, 1] as the profile schema requires. The shapes are each variant record's calibration shapes
(sdsim/kernels), deliberately off SD1.4's (other channel counts, spatial sizes, token counts) so a
validation on SD is not a fit to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdsim import kernels
from sdsim.cost.roofline import roofline
from sdsim.kernels import KERNEL_CLASSES


def mix(size: str) -> list[tuple]:
    """(record, shape) of the calibration mix: every record's `calibrate[size]` shapes. "quick"
    is sized for a CPU OpenCL device (seconds per case on PoCL), "full" for a desktop GPU (enough
    work-groups to fill it)."""
    return [(r, dict(s)) for r in kernels.records() for s in r.calibrate.get(size, ())]


@dataclass
class Sample:
    """One measured dispatch of the calibration mix."""

    family: str
    variant: str
    shape: dict
    kernel: str
    kernel_class: str
    measured_s: float
    roofline_s: float
    bound: str


def measure_case(rt, record, shape, precision, peak, bw, repeat=3, seed=0):
    """Samples (one per dispatch) of one case: median event time over `repeat` runs."""
    from sdsim.cl.bench import upload

    inputs = record.make_inputs(shape, np.random.default_rng(seed))
    ins, params, out = upload(rt, record, shape, inputs, precision)
    plan = record.costs(precision, **shape)
    record.launch(rt, shape, ins, params, out, precision)  # warm-up
    rt.finish()
    runs = []
    for _ in range(repeat):
        evs = record.launch(rt, shape, ins, params, out, precision)
        rt.finish()
        runs.append([(e.profile.end - e.profile.start) * 1e-9 for e in evs])
    if len(runs[0]) != len(plan):
        raise RuntimeError(f"{record.key}: {len(runs[0])} dispatches run, the cost formula "
                           f"lists {len(plan)}")
    med = np.median(np.array(runs), axis=0)
    out = []
    for k, t in zip(plan, med):
        compute_s, memory_s = roofline(k, peak, bw)
        out.append(Sample(record.family, record.name, shape, k.kernel, k.kernel_class, float(t),
                          max(compute_s, memory_s),
                          "compute" if compute_s >= memory_s else "memory"))
    return out


def efficiencies(samples: list[Sample], launch_s: float) -> dict:
    """Per class: efficiency (capped to (0, 1]), the uncapped ratio, and sample count."""
    res = {}
    for cls in KERNEL_CLASSES:
        ss = [s for s in samples if s.kernel_class == cls]
        if not ss:
            res[cls] = None
            continue
        roof = sum(s.roofline_s for s in ss)
        busy = sum(max(s.measured_s - launch_s, 1e-9) for s in ss)
        ratio = roof / busy
        res[cls] = {"efficiency": min(1.0, max(ratio, 1e-4)), "ratio": ratio, "samples": len(ss),
                    "measured_s": sum(s.measured_s for s in ss)}
    return res
