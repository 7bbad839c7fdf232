"""How a dispatch's repeated timed runs reduce to its one time, in calibration and validation
alike: the median, or the fastest run. Other work on a shared machine only adds time, so the
fastest run is the steadier on one (benchmarks/timing_statistic.py: on a 2-core VM, 40 PoCL
calibration cases timed 9 times in each of 3 passes spread 4.7% between passes at the median,
0.9% at the fastest run, reports/timing-statistic-pocl-cpu.md); on a quiet device the two agree."""

from __future__ import annotations

import numpy as np

#: statistic name -> its reduction over repeated runs
STATISTICS = {"median": np.median, "min": np.min}

HELP = ("how each dispatch's timed runs reduce to its time: median, or min, the fastest run, "
        "steadier on a shared machine where other work only adds time (a profile's validation "
        "uses its calibration's by default)")


def reduce(times, statistic: str, axis: int = 0) -> np.ndarray:
    """`times` (runs along `axis`) reduced by `statistic` ("median" or "min")."""
    return STATISTICS[statistic](np.asarray(times, dtype=float), axis=axis)
