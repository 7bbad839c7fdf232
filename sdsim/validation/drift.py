"""The device's speed now against its speed at calibration: a few of the calibration's own cases
measured again beside a validation, before and after its runs, the same way calibration measured
them (`sdsim.calibration.sweep.measure`), each as the ratio of its time now to its time then.

A validation's error is the model's only while the device runs as fast as it did when it was
calibrated. A shared machine drifts: on the 2-core PoCL VM the fp32 text encoder ran in 0.95 s
and, twenty minutes later, in 0.66 s, the same kernels, each run agreeing with itself within a
few percent. Without this check that drift reads as the model's error; with it, the report says
how much of the error the device's change of speed can explain. It is stated, never corrected
for: the predictions stay those of the profile.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

#: the most calibration cases measured again: one per kernel family (the GEMM, conv, attention,
#: norm, GELU and streaming kernels of SD time differently, and drift with them)
CASES = 8
#: the longest a reference case may have taken at calibration (seconds, all its dispatches)
MAX_CASE_S = 0.03
#: a median ratio further from 1 than this is reported as drift
TOLERANCE = 0.05


def reference_cases(measurements: dict) -> list[tuple[str, dict, float]]:
    """(variant, shape, calibrated seconds) of the longest case of each kernel family in a
    calibration's measurements (sdsim/calibration/store.py) that took at most MAX_CASE_S,
    training cases only; longest first, CASES at most."""
    cases: dict = {}
    for p in measurements["points"]:
        if p.get("heldout"):
            continue
        key = (p["variant"], json.dumps(p["shape"], sort_keys=True))
        cases[key] = cases.get(key, 0.0) + float(p["measured_s"])
    picked, families = [], set()
    for (variant, shape), t in sorted(cases.items(), key=lambda kv: (-kv[1], kv[0])):
        family = variant.split("/", 1)[0]
        if t <= MAX_CASE_S and family not in families:
            picked.append((variant, json.loads(shape), t))
            families.add(family)
        if len(picked) == CASES:
            break
    return picked


def load_measurements(report: str | None) -> dict | None:
    """The measurements stored beside a calibration report (None if unreadable or measured on
    other kernels than today's, whose times say nothing of the device now)."""
    from sdsim.calibration.store import json_path
    from sdsim.cost.profile import kernels_hash
    from sdsim.paths import ROOT

    if not report:
        return None
    path = Path(report) if Path(report).is_absolute() else ROOT / report
    try:
        data = json.loads(json_path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("kernels_hash") == kernels_hash() else None


def feed(measurements: dict) -> tuple[bool, int]:
    """How the calibration fed its timed cases: (behind a gate, `sdsim calibrate --feed`; the
    small dispatches ahead of each, `--lead`). Calibrations made before those options fed them
    from the host, with no lead."""
    w = measurements["sweep"]
    return w.get("feed", "host") == "gated", int(w.get("lead", 0))


def measure(rt, cases: list, precision: str, feed: tuple[bool, int] = (True, 0),
            statistic: str = "median") -> list[dict]:
    """Each reference case measured now, fed as the calibration fed it (`feed`) and its runs
    reduced by `statistic` (sdsim/repeats.py): variant, calibrated and current seconds, their
    ratio."""
    from sdsim import kernels
    from sdsim.calibration import sweep

    out = []
    for variant, shape, then in cases:
        record = kernels.get(*variant.split("/", 1))
        points, _ = sweep.measure(rt, record, shape, precision, gated=feed[0], lead=feed[1],
                                  statistic=statistic)
        now = sum(p.measured_s for p in points)
        out.append({"variant": variant, "shape": shape, "calibrated_s": then, "now_s": now,
                    "ratio": now / then})
    return out


def summary(before: list[dict], after: list[dict]) -> dict:
    """The drift record a validation stores: both passes and their median ratios."""
    return {"before": before, "after": after,
            "ratio_before": statistics.median(c["ratio"] for c in before),
            "ratio_after": statistics.median(c["ratio"] for c in after)}


def sentence(drift: dict | None) -> str:
    """The report's line on the device's speed against its calibration."""
    if not drift:
        return ("not checked (the calibration's measurements were not found beside its report, "
                "or were measured on other kernels)")
    rb, ra = drift["ratio_before"], drift["ratio_after"]
    names = ", ".join(c["variant"] for c in drift["before"])
    text = (f"{len(drift['before'])} calibration cases ({names}) measured again took "
            f"{rb:.2f}x their calibration time before the runs and {ra:.2f}x after (median)")
    off = _off(drift)
    if off > TOLERANCE:
        text += (f". **The device ran up to {off:.0%} "
                 f"{'slower' if max(rb, ra) > 1 else 'faster'} than when it was calibrated**: "
                 "errors of that size above are the device's drift, not the model's")
    return text


def _off(drift: dict) -> float:
    """How far from its calibration speed the device ran, at the worse of the two passes."""
    return max(abs(drift["ratio_before"] - 1.0), abs(drift["ratio_after"] - 1.0))


def warning(drift: dict | None) -> str | None:
    """A one-line warning for the terminal when the device drifted past TOLERANCE."""
    if not drift or _off(drift) <= TOLERANCE:
        return None
    return (f"the device ran at {drift['ratio_before']:.2f}x / {drift['ratio_after']:.2f}x its "
            "calibration time on reference cases (before / after the runs): the model's errors "
            "include that drift")
