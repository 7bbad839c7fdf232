"""A calibration's measurements as JSON (written beside its report), and read back for a refit.

Measuring a device takes minutes on a GPU and a quarter of an hour on a 2-core CPU, and a phone
may be measured once; the timing model evolves more often than the kernels. So every
calibration stores what it measured (device figures and every dispatch of the sweep with its
launch geometry) and `sdsim calibrate --refit FILE.json` fits the current model to those
measurements again without touching a device. `--refit A.json B.json ...` fits the measurements
of several calibrations of one device, precision, kernel sources and builds together (`merge`):
a sweep draws its shapes at random, and its rare long cases decide the share of held-out time a
fit gets right. Two H100 sweeps of the same kernels, fitted alone, put 64-66% of their held-out
time within 10%; fitted together, 94% (fp16) and 96% (fp32).

A refit re-derives each dispatch from the current kernel records (same variant, same shape): the
timing model's key follows today's records (a kernel body split into per-blocking keys takes
effect), and a dispatch whose launch geometry the records now give differently was measured on
other kernels, so the refit refuses it rather than fit the new kernels to old times.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sdsim import kernels, provenance
from sdsim.calibration.fit import Point
from sdsim.errors import SdsimError
from sdsim.kernels import tuning

#: version of the JSON layout below
FORMAT = 1


def dump(cal) -> dict:
    """The JSON-able record of a calibration's measurements."""
    return {
        "format": FORMAT, "name": cal.name, "device": cal.device, "driver": cal.driver,
        "precision": cal.precision, "mix": cal.mix, "date": cal.date, "command": cal.command,
        "device_info": cal.device_info, "micro": cal.micro, "sweep": cal.sweep,
        "kernels_hash": cal.kernels_hash, "refit": cal.refit, "merged": cal.merged,
        "tuning": cal.tuning.to_yaml(cal.tuning.source), "bias_less_builds": True,
        "points": [{"variant": p.variant, "shape": p.shape, "kernel": p.kernel,
                    "launch": asdict(p.launch), "measured_s": p.measured_s,
                    "cv": p.cv, "heldout": p.heldout,
                    **({"passes": list(p.passes)} if p.passes else {})} for p in cal.points],
    }


def load(path, command: str):
    """The Calibration stored in `path`, its points re-derived from today's kernel records (see
    the module doc), ready to be fitted again; `command` is the refit's command line."""
    from sdsim.calibration.run import Calibration
    from sdsim.cost.profile import kernels_hash

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SdsimError(f"{path}: cannot read calibration measurements: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SdsimError(f"{path}: not a calibration measurements file of format {FORMAT} "
                         "(written beside a calibration report as calibration-NAME.json)")
    try:
        if data["kernels_hash"] != kernels_hash():
            raise SdsimError(f"{path}: measured on kernel sources {data['kernels_hash']}, but "
                             f"opencl/*.cl now hash to {kernels_hash()}; the kernels changed, so "
                             "calibrate again")
        tune = tuning.parse(data["tuning"], str(path))
        with tuning.use(tune):
            points = [_point(_as_run(d, data.get("bias_less_builds", False)),
                             data["precision"], f"{path}: points[{i}]")
                      for i, d in enumerate(data["points"])]
        cal = Calibration(
            name=data["name"], device=data["device"], driver=data["driver"],
            precision=data["precision"], mix=data["mix"], date=data["date"],
            command=data["command"], device_info=data["device_info"], micro=data["micro"],
            points=points, sweep=data["sweep"], kernels_hash=data["kernels_hash"], tuning=tune,
            refit=f"refit by `{command}` on {provenance.now()}", merged=data.get("merged", []))
    except KeyError as e:
        raise SdsimError(f"{path}: calibration measurements lack the field {e}") from None
    return cal


def identity(cal) -> dict:
    """What names one calibration's own measurements among others: when, at which sdsim commit,
    by which command, and how many cases and dispatches it measured (those merged into it not
    counted)."""
    return {"date": cal.date, "commit": cal.sweep.get("commit"), "command": cal.command,
            "cases": cal.sweep.get("cases"),
            "points": len(cal.points) - sum(m["points"] for m in cal.merged)}


def merge(cal, others: list) -> list[str]:
    """Add to `cal` the measured points of `others` [(path, Calibration)], calibrations of the
    same device, storage precision and kernel builds (their kernel sources are today's: `load`
    checked), each case timed the same way (behind as many lead dispatches, fed alike: small
    dispatches measure 1.2-1.7x longer behind the lead on an H100; its runs reduced by the same
    statistic, sdsim/repeats.py); the first calibration's
    device figures stay. A calibration whose measurements
    `cal` already holds all of (itself, or one merged into it before) is skipped, so that a
    refit of a merged file with its sources again counts no point twice. Returns what was
    skipped, one line each. Raises SdsimError naming the file and field that differ, or a file
    that holds some of `cal`'s measurements and some others."""
    def builds(c):
        return {k: v for k, v in c.tuning.to_yaml("").items() if k != "report"}

    def same(a, b):
        return a["date"] == b["date"] and a["commit"] == b["commit"]

    held = [identity(cal)] + list(cal.merged)
    skipped = []
    for path, other in others:
        for field, mine, theirs in (("device", cal.device, other.device),
                                    ("precision", cal.precision, other.precision),
                                    ("tuning", builds(cal), builds(other)),
                                    *((f"sweep.{k}", cal.sweep.get(k), other.sweep.get(k))
                                      for k in ("lead", "feed")),
                                    ("sweep.statistic", cal.sweep.get("statistic", "median"),
                                     other.sweep.get("statistic", "median"))):
            if mine != theirs:
                raise SdsimError(f"{path}: its {field} is {theirs}, the first file's {mine}: "
                                 "only measurements of one device, storage precision and kernel "
                                 "build, timed the same way, fit together")
        ids = [identity(other)] + list(other.merged)
        known = [m for m in ids if any(same(m, h) for h in held)]
        if len(known) == len(ids):
            skipped.append(f"{path}: measured {other.date}, already among the measurements")
            continue
        if known:
            raise SdsimError(f"{path}: holds the measurements of {', '.join(m['date'] for m in known)} "
                             "already among the others, and more: fit the original files "
                             "together instead")
        cal.points += other.points
        cal.merged += ids
        held += ids
    return skipped


def _as_run(d: dict, bias_less_builds: bool) -> dict:
    """A stored dispatch as the build it ran: in measurements without `bias_less_builds` (every
    calibration stored up to 2026-12-07), the linear GEMM's launcher passed its bias at every
    shape, so a point stored at `bias: false` timed the bias build (BIAS=1) and is read as one."""
    if bias_less_builds or not d["variant"].startswith("linear/") or \
            d["shape"].get("bias", True):
        return d
    kernel = {"gemm": "gemm_bias", "gemm_reduce": "gemm_bias_reduce"}.get(d["kernel"],
                                                                          d["kernel"])
    return dict(d, shape=dict(d["shape"], bias=True), kernel=kernel)


def _point(d: dict, precision: str, where: str) -> Point:
    """One stored dispatch as a fit Point, with today's record's model key and geometry."""
    family, name = d["variant"].split("/", 1)
    record = kernels.get(family, name)
    costs = [k for k in record.costs(precision, **d["shape"]) if k.kernel == d["kernel"]]
    launch = d["launch"]
    same = [k for k in costs if _launch_dict(k.launch) == _launch_dict(launch)]
    if not same:
        raise SdsimError(f"{where}: {d['variant']} {d['kernel']} at {d['shape']} was launched "
                         f"as {launch}, today's kernel record launches it as "
                         f"{[_launch_dict(k.launch) for k in costs]}; calibrate again")
    k = same[0]
    return Point(k.model_key, d["variant"], d["shape"], k.kernel, k.launch, float(d["measured_s"]),
                 float(d["cv"]), k.kernel_class, k.flops, k.dram_bytes, bool(d["heldout"]),
                 passes=tuple(float(s) for s in d.get("passes", ())))


def _launch_dict(launch) -> dict:
    d = asdict(launch) if not isinstance(launch, dict) else dict(launch)
    return {"global_size": list(d["global_size"]), "local_size": list(d["local_size"]),
            "steps": int(d["steps"]), "active": round(float(d["active"]), 9)}


def json_path(report_path) -> Path:
    """Where a report's measurements go: beside it, same stem."""
    return Path(report_path).with_suffix(".json")

