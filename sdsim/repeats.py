"""How a dispatch's repeated timed runs reduce to its one time, in calibration and validation
alike: the median, or the fastest run. Other work on a shared machine only adds time, so the
fastest run is the steadier there: benchmarks/timing_statistic.py times calibration cases in
several passes and compares how far each statistic moves between them
(reports/timing-statistic-pocl-cpu.md, a 2-core VM). On a quiet device the two agree."""

from __future__ import annotations

import numpy as np

#: statistic name -> its reduction over repeated runs
STATISTICS = {"median": np.median, "min": np.min}

#: statistic name -> how a report says it ("the fastest of 5 runs")
WORDS = {"median": "median", "min": "the fastest"}

HELP = ("how each dispatch's timed runs reduce to its time: median, or min, the fastest run, "
        "steadier on a shared machine where other work only adds time; a profile records its "
        "calibration's, and validate times calls the same way unless told otherwise")


def reduce(times, statistic: str, axis: int = 0) -> np.ndarray:
    """`times` (runs along `axis`) reduced by `statistic` ("median" or "min")."""
    return STATISTICS[statistic](np.asarray(times, dtype=float), axis=axis)
