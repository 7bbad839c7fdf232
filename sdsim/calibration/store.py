"""A calibration's measurements as JSON (written beside its report), and read back for a refit.

Measuring a device takes minutes on a GPU and a quarter of an hour on a 2-core CPU, and a phone
may be measured once; the timing model evolves more often than the kernels. So every
calibration stores what it measured (device figures and every dispatch of the sweep with its
launch geometry) and `sdsim calibrate --refit FILE.json` fits the current model to those
measurements again without touching a device.

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
        "kernels_hash": cal.kernels_hash, "refit": cal.refit,
        "tuning": cal.tuning.to_yaml(cal.tuning.source),
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
            points = [_point(d, data["precision"], f"{path}: points[{i}]")
                      for i, d in enumerate(data["points"])]
        cal = Calibration(
            name=data["name"], device=data["device"], driver=data["driver"],
            precision=data["precision"], mix=data["mix"], date=data["date"],
            command=data["command"], device_info=data["device_info"], micro=data["micro"],
            points=points, sweep=data["sweep"], kernels_hash=data["kernels_hash"], tuning=tune,
            refit=f"refit by `{command}` on {provenance.now()}")
    except KeyError as e:
        raise SdsimError(f"{path}: calibration measurements lack the field {e}") from None
    return cal


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

