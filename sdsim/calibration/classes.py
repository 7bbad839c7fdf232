"""Efficiency of each kernel class on the calibration sweep: the fraction of the roofline its
dispatches reach, time-weighted,

    efficiency[class] = sum(roofline_i) / sum(measured_i - launch)

capped to (0, 1]. The profile keeps it for kernels that have no fitted timing coefficients (their
time is transferred from the specifications, sdsim/cost/waves.py) and as a summary of the device.
"""

from __future__ import annotations

from sdsim.cost.roofline import roofline
from sdsim.kernels import KERNEL_CLASSES


def efficiencies(points, peak: float, bw: float, launch_s: float) -> dict:
    """Per class: efficiency (capped to (0, 1]), the uncapped ratio, and dispatch count."""
    roof, busy, count, total = {}, {}, {}, {}
    for p in points:
        cls = p.kernel_class
        roof[cls] = roof.get(cls, 0.0) + max(roofline(p, peak, bw))
        busy[cls] = busy.get(cls, 0.0) + max(p.measured_s - launch_s, 1e-9)
        count[cls] = count.get(cls, 0) + 1
        total[cls] = total.get(cls, 0.0) + p.measured_s
    res = {}
    for cls in KERNEL_CLASSES:
        if cls not in roof:
            res[cls] = None
            continue
        ratio = roof[cls] / busy[cls]
        res[cls] = {"efficiency": min(1.0, max(ratio, 1e-4)), "ratio": ratio,
                    "samples": count[cls], "measured_s": total[cls]}
    return res
