"""Device profiles: load a YAML file, validate it against the schema, convert every number to SI.

A profile is data, not code (see device_profiles/README.md for the schema, version 2). Every
number is a `{value, unit, source}` triple so that each figure says where it came from; where
sources disagree it also carries `low` and `high`, the band `predict` reports. A calibrated
profile holds per-kernel timing coefficients with the report that measured them and a hash of the
kernel sources they were measured with. Validation is done with jsonschema; the first problem
found is raised as an SdsimError naming the file, the field and the expected form.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from sdsim.cost.overlap import Overlap
from sdsim.cost.writeback import Writeback
from sdsim.cost.waves import Coefficients
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES, tuning
from sdsim.paths import OPENCL_DIR, profile_dirs

#: the profile schema this version reads
SCHEMA_VERSION = 2

#: accepted units per quantity kind, with the factor to the SI unit the model uses
UNITS = {
    "rate": {"GFLOP/s": 1e9, "TFLOP/s": 1e12},
    "bandwidth": {"GB/s": 1e9, "MB/s": 1e6},
    "bytes": {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "fraction": {"fraction": 1.0},
    "count": {"count": 1.0},
    "frequency": {"MHz": 1e6, "GHz": 1e9},
}

#: the largest plausible value per kind, in SI units; anything above is a typo (e.g. a unit slip)
LIMITS = {"rate": 1e15, "bandwidth": 1e13, "bytes": 2**40, "time": 1.0, "fraction": 1.0,
          "count": 1e6, "frequency": 1e10}

#: top-level numeric fields and their kind
QUANTITIES = {
    "peak_fp32": "rate",
    "peak_fp16": "rate",
    "dram_bandwidth": "bandwidth",
    "local_memory": "bytes",
    "cache": "bytes",
    "max_allocation": "bytes",
    "launch_overhead": "time",
    "step_latency": "time",
}
#: device geometry fields (under `geometry:`) and their kind
GEOMETRY = {"compute_units": "count", "lanes": "count", "residency": "count",
            "clock": "frequency"}
TEXT_FIELDS = ("name", "soc", "gpu", "api")


def _quantity_schema(kind: str) -> dict:
    value = {"type": "number", "exclusiveMinimum": 0}
    if kind == "fraction":
        value["maximum"] = 1
    return {
        "type": "object",
        "required": ["value", "unit", "source"],
        "additionalProperties": False,
        "properties": {
            "value": value,
            "low": value,
            "high": value,
            "unit": {"enum": list(UNITS[kind])},
            "source": {"type": "string", "minLength": 3},
        },
    }


_POSITIVE = {"type": "number", "minimum": 0}
_RANGE = {"type": "array", "items": _POSITIVE, "minItems": 2, "maxItems": 2}
#: a kernel body's `swept` ranges (what its calibration measured, [low, high]) in the order of
#: `Coefficients.swept`, and each one's unit in the profile
SWEPT = {"work_groups": 1, "steps": 1, "active": 1, "footprint_mib": 2 ** 20}
COEFFICIENTS_SCHEMA = {
    "type": "object",
    "required": ["report", "kernels_hash", "precision", "kernels"],
    "additionalProperties": False,
    "properties": {
        "report": {"type": "string", "minLength": 3},
        "kernels_hash": {"type": "string", "minLength": 6},
        "precision": {"enum": ["fp16", "fp32"]},
        "cache_bytes": _POSITIVE,
        "l1_ways": {"type": "integer", "minimum": 0},
        # how the sweep reduced each case's timed runs (sdsim/repeats.py); median where absent
        "statistic": {"enum": ["median", "min"]},
        # the tuned launch choices besides GEMM builds the coefficients were fitted under
        # (sdsim/kernels/tuning.py Tuning.launches)
        "launches": {"type": "object", "additionalProperties": False,
                     "properties": {"flash_rows": {"type": "integer"},
                                    "flash_unroll": {"type": "boolean"},
                                    "split_groups": {"type": "integer", "minimum": 0},
                                    "wino_group": {"type": "string"}}},
        # the launch-overlap probe's fit (sdsim/calibration/overlap.py, sdsim/cost/overlap.py)
        "overlap": {"type": "object", "required": ["hidden_us", "over_us", "lead_us"],
                    "additionalProperties": False,
                    "properties": {"hidden_us": _POSITIVE, "over_us": _POSITIVE,
                                   "lead_us": _POSITIVE}},
        # the write-back probe's fit (sdsim/calibration/writeback.py, sdsim/cost/writeback.py)
        "writeback": {"type": "object", "required": ["dirty_mb", "us_per_mb"],
                      "additionalProperties": False,
                      "properties": {"dirty_mb": _POSITIVE, "us_per_mb": _POSITIVE}},
        "kernels": {"type": "object", "additionalProperties": {
            "type": "object",
            "required": ["t0_us", "latency_us", "step_us", "residency"],
            "additionalProperties": False,
            "properties": {"t0_us": _POSITIVE, "latency_us": _POSITIVE, "step_us": _POSITIVE,
                           "residency": {"type": "integer", "minimum": 1},
                           "padding": {"type": "number", "minimum": 0, "maximum": 1},
                           "group_us": _POSITIVE, "spill": _POSITIVE,
                           "wave_latency_us": _POSITIVE,
                           "tail": {"type": "number", "minimum": 0, "maximum": 1},
                           "later": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                           "alias": _POSITIVE, "edge": _POSITIVE,
                           "points": {"type": "integer"}, "fit_error_pct": _POSITIVE,
                           "heldout_error_pct": _POSITIVE,
                           "swept": {"type": "object", "additionalProperties": False,
                                     "required": list(SWEPT),
                                     "properties": {k: _RANGE for k in SWEPT}}}}},
    },
}

#: `sdsim tune`'s choices: a GEMM config (sdsim/kernels/tuning.py GemmConfig.name) per shape class,
#: the FlashAttention build, the split-K work-group target and the Winograd transforms' work-group
TUNING_SCHEMA = {
    "type": "object",
    "required": ["report", "device_type", "gemm"],
    "additionalProperties": False,
    "properties": {
        "report": {"type": "string", "minLength": 3},
        "device_type": {"enum": ["gpu", "cpu"]},
        "gemm": {"type": "object", "additionalProperties": {"type": "string"}},
        "flash_rows": {"type": "integer"},
        "flash_unroll": {"type": "boolean"},
        "split_groups": {"type": "integer", "minimum": 0},
        "wino_group": {"type": "string", "pattern": "^[1-9][0-9]*x[1-9][0-9]*$"},
    },
}

SCHEMA = {
    "type": "object",
    "required": ["schema", *TEXT_FIELDS, *QUANTITIES, "geometry", "efficiency"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        **{f: {"type": "string", "minLength": 1} for f in TEXT_FIELDS},
        "notes": {"type": "string"},
        **{f: _quantity_schema(k) for f, k in QUANTITIES.items()},
        "geometry": {
            "type": "object",
            "required": list(GEOMETRY),
            "additionalProperties": False,
            "properties": {f: _quantity_schema(k) for f, k in GEOMETRY.items()},
        },
        "efficiency": {
            "type": "object",
            "required": list(KERNEL_CLASSES),
            "additionalProperties": False,
            "properties": {c: _quantity_schema("fraction") for c in KERNEL_CLASSES},
        },
        "coefficients": COEFFICIENTS_SCHEMA,
        # the other storage precision's coefficients (a second `sdsim calibrate --precision`)
        **{f"coefficients_{p}": COEFFICIENTS_SCHEMA for p in ("fp16", "fp32")},
        # end-to-end times published for this device: what a prediction can be set against
        "published": {"type": "array", "items": {
            "type": "object", "required": ["value", "unit", "workload", "source"],
            "additionalProperties": False,
            "properties": {"value": {"type": "number", "exclusiveMinimum": 0},
                           "unit": {"const": "s"},
                           "workload": {"type": "string", "minLength": 3},
                           "source": {"type": "string", "minLength": 3}}}},
        "native_half": {"type": "object", "required": ["value", "source"],
                        "additionalProperties": False,
                        "properties": {"value": {"type": "boolean"},
                                       "source": {"type": "string", "minLength": 3}}},
        "device_type": {"enum": ["gpu", "cpu"]},
        "tuning": TUNING_SCHEMA,
    },
}

_EXPECTED = {
    "rate": "{value: <number > 0>, unit: GFLOP/s|TFLOP/s, source: <text>}",
    "bandwidth": "{value: <number > 0>, unit: GB/s|MB/s, source: <text>}",
    "bytes": "{value: <number > 0>, unit: B|KiB|MiB|GiB, source: <text>}",
    "time": "{value: <number > 0>, unit: s|ms|us|ns, source: <text>}",
    "fraction": "{value: <number in (0, 1]>, unit: fraction, source: <text>}",
    "count": "{value: <number > 0>, unit: count, source: <text>}",
    "frequency": "{value: <number > 0>, unit: MHz|GHz, source: <text>}",
}


@dataclass(frozen=True)
class Profile:
    """A validated device profile in SI units (FLOP/s, B/s, bytes, seconds)."""

    name: str
    soc: str
    gpu: str
    api: str
    peak_flops: dict          # {"fp32": FLOP/s, "fp16": FLOP/s}
    dram_bandwidth: float     # B/s
    local_memory: int         # bytes
    cache: int                # bytes
    max_allocation: int       # bytes
    launch_overhead: float    # s
    efficiency: dict          # kernel class -> fraction of the roofline reached
    path: str
    sources: dict             # field -> source text
    geometry: dict = field(default_factory=dict)   # compute_units, lanes, residency, clock (Hz)
    step_latency: float = 1e-6                     # s, shortest serial step of a kernel
    coefficients: dict = field(default_factory=dict)   # model key -> Coefficients (calibrated)
    calibration: dict = field(default_factory=dict)    # report, kernels_hash, precision
    bands: dict = field(default_factory=dict)      # field -> (low, high) in SI units
    device_type: str = "gpu"                       # "gpu" | "cpu": the untuned kernel defaults
    tuning: dict = field(default_factory=dict)     # `sdsim tune`'s section, as written
    native_half: bool = False                      # the GPU executes half arithmetic natively
    published: list = field(default_factory=list)  # [{value, unit, workload, source}]
    # storage precision -> (coefficients, calibration meta); `coefficients` is one of them
    coefficient_sets: dict = field(default_factory=dict)

    def coefficients_for(self, precision: str) -> dict:
        """The timing coefficients measured at `precision` storage, else the primary set."""
        found = self.coefficient_sets.get(precision)
        return found[0] if found else self.coefficients

    def calibration_for(self, precision: str) -> dict:
        """The calibration record (report, kernels hash, statistic, sequence terms...) of the
        coefficients `coefficients_for` picks."""
        found = self.coefficient_sets.get(precision)
        return found[1] if found else self.calibration

    def overlap_for(self, precision: str):
        """The sequence term (sdsim/cost/overlap.py) of the coefficients `coefficients_for`
        picks; None where their calibration measured none."""
        return Overlap.from_section(self.calibration_for(precision).get("overlap"))

    def writeback_for(self, precision: str):
        """The write-back term (sdsim/cost/writeback.py) of the coefficients `coefficients_for`
        picks; None where their calibration measured none."""
        return Writeback.from_section(self.calibration_for(precision).get("writeback"))

    def rate(self, k, precision: str) -> float:
        """The arithmetic rate a dispatch runs at (FLOP/s): the fp16 rate only for an
        fp16-storage call of a kernel with a half-arithmetic build (KernelCost.half_arith) on a
        device with native half, as the runtime's default `--arith` runs it; float otherwise."""
        half = precision == "fp16" and self.native_half and getattr(k, "half_arith", False)
        return self.peak_flops["fp16" if half else "fp32"]

    def corner(self, fast: bool) -> "Profile":
        """The profile at one end of its bands: every disagreeing specification at its fastest
        (highest rate, bandwidth, clock, units; lowest time) or its slowest end."""
        def pick(f, v):
            lo, hi = self.bands.get(f, (v, v))
            slower_is_higher = QUANTITIES.get(f) == "time"
            return (lo if slower_is_higher else hi) if fast else (hi if slower_is_higher else lo)

        geo = {g: pick(f"geometry.{g}", v) for g, v in self.geometry.items()}
        geo["compute_units"] = int(round(geo["compute_units"]))
        geo["residency"] = int(round(geo["residency"]))
        return dataclasses.replace(
            self, peak_flops={p: pick(f"peak_{p}", v) for p, v in self.peak_flops.items()},
            dram_bandwidth=pick("dram_bandwidth", self.dram_bandwidth),
            launch_overhead=pick("launch_overhead", self.launch_overhead),
            step_latency=pick("step_latency", self.step_latency), geometry=geo,
            efficiency={c: pick(f"efficiency.{c}", v) for c, v in self.efficiency.items()})


def profile_warnings(profile: Profile, precision: str,
                     run: tuple[str, str] | None = None) -> list[str]:
    """What a user should know before trusting this profile's predictions at `precision`, and,
    given the OpenCL device a run measures as (its "platform / device" name, its `api` as
    `measured_by` gives it), of that device."""
    return [w for w in (stale_calibration(profile), precision_mismatch(profile, precision),
                        other_device(profile, *run) if run else None) if w]


def measured_on(device: str, opencl: str, driver: str) -> dict:
    """A profile's `gpu` and `api`: the OpenCL device ("platform / device"), its OpenCL version
    and driver, which name the device its coefficients describe."""
    parts = device.split(" / ", 1)
    platform, name = parts[0], parts[-1]
    return {"gpu": name, "api": f"{' '.join(opencl.split()[:2])} ({platform}, driver {driver})"}


def measured_by(rt) -> dict:
    """`measured_on` of a runtime's device: what a calibration on it would write."""
    d = rt.device
    return measured_on(rt.name, d.version.strip(), d.driver_version.strip())


def elsewhere(gpu, api, here: dict) -> bool:
    """Whether coefficients a profile says were measured on `gpu` through `api` describe another
    device, platform or driver than `here` (a `measured_on` dict): two PoCL builds on one host,
    PyPI's and Debian's, share their platform name and compile the same kernels differently."""
    return str(gpu or "").strip() != here["gpu"] or str(api or "").strip() != here["api"]


def other_device(profile: Profile, device: str, api: str) -> str | None:
    """A warning when a calibrated profile was measured on another OpenCL device, platform or
    driver (`elsewhere`) than the `device` ("platform / device") and `api` a run measures: its
    coefficients describe what they were measured on (the PoCL profile, from an AMD EPYC host,
    predicts an Intel Xeon host's GEMMs 2-4x short). Profiles from specifications say nothing:
    they are for devices sdsim never ran on."""
    platform, _, name = device.rpartition(" / ")
    here = {"gpu": name.strip(), "api": api}
    if not profile.coefficients or not elsewhere(profile.gpu, profile.api, here):
        return None
    where = f" --platform '{platform}'" if platform else ""
    measured = (here["gpu"] if profile.gpu.strip() != here["gpu"]
                else f"{here['gpu']} through {api} (another platform or driver)")
    return (f"{profile.path}: calibrated on {profile.gpu.strip()} ({profile.api.strip()}), but "
            f"this run measures {measured}; its coefficients describe what they were measured "
            f"on, so the predictions may be far off here: to predict this device, calibrate it "
            f"with `sdsim calibrate{where} --out NAME.yaml` (`sdsim devices --opencl` gives the "
            f"index of a platform whose name another shares)")


def precision_mismatch(profile: Profile, precision: str) -> str | None:
    """A warning when calls at `precision` storage are predicted with timing coefficients
    measured at the other one: kernels load, convert and store differently per storage type
    (fp16 storage on a device without cl_khr_fp16 converts every element), so the coefficients
    do not carry over."""
    measured = profile.calibration.get("precision")
    if not profile.coefficients or not measured or precision in profile.coefficient_sets:
        return None
    return (f"{profile.path}: its timing coefficients were measured at {measured} storage; "
            f"{precision}-storage calls are predicted with them and may be far off; for "
            f"{precision} predictions calibrate a profile with `sdsim calibrate --precision "
            f"{precision} --out NAME.yaml`")


#: the launches of a coefficient set that does not record them: calibrated before the Winograd
#: transforms' work-group was tuned, when it was always 8 x 8
UNRECORDED_LAUNCHES = {"wino_group": "8x8"}


def stale_calibration(profile: Profile) -> str | None:
    """A warning when the profile's coefficients were measured on other kernel sources, or under
    GEMM tile configurations or other launches (FlashAttention, split K, Winograd transform
    work-groups) than the ones it is now tuned for."""
    stale = {p: m["kernels_hash"] for p, (_, m) in sorted(profile.coefficient_sets.items())
             if m.get("kernels_hash") and m["kernels_hash"] != kernels_hash()}
    if stale:
        sets = ", ".join(f"{p} ones with kernel sources {h}" for p, h in stale.items())
        return (f"{profile.path}: its timing coefficients were measured on other kernels "
                f"({sets}); the kernels are now {kernels_hash()} (opencl/*.cl changed); "
                f"recalibrate with `sdsim calibrate --precision {'|'.join(stale)} --out "
                f"{profile.path}`")
    now = tuning.for_profile(profile).launches
    moved = {p: {k: v for k, v in m.get("launches", UNRECORDED_LAUNCHES).items()
                 if now.get(k) != v}
             for p, (_, m) in sorted(profile.coefficient_sets.items())}
    moved = {p: d for p, d in moved.items() if d}
    if moved:
        was = "; ".join(f"{p} ones under " + ", ".join(f"{k} {v}" for k, v in d.items())
                        for p, d in moved.items())
        return (f"{profile.path}: its timing coefficients were measured under other launches "
                f"({was}); it is now tuned for " + ", ".join(
                    f"{k} {now[k]}" for k in sorted({k for d in moved.values() for k in d}))
                + f" (tuned after the calibration); recalibrate with `sdsim calibrate "
                f"--precision {'|'.join(moved)} --out {profile.path}`")
    if profile.coefficients:
        used = {f"gemm.{c.name}" for c in tuning.for_profile(profile).gemm.values()}
        missing = sorted(used - set(profile.coefficients))
        if missing:
            return (f"{profile.path}: no timing coefficients for the tuned GEMM builds "
                    f"{', '.join(missing)} (tuned after the calibration); they are predicted "
                    f"from specifications until `sdsim calibrate --out {profile.path}`")
        from sdsim.kernels.gemm import CALLERS

        have = {k.split(".", 1)[0] for k in profile.coefficients}
        absent = [c for c in CALLERS if c not in have]
        if "gemm" in have and absent:
            return (f"{profile.path}: no timing coefficients for the GEMMs of "
                    f"{', '.join(absent)} (calibrated before each GEMM caller had its own "
                    f"model); they are predicted from specifications until "
                    f"`sdsim calibrate --out {profile.path}`")
    return None


def kernels_hash() -> str:
    """A short hash of the OpenCL kernel sources (opencl/*.cl): what calibrated coefficients were
    measured with."""
    h = hashlib.sha256()
    for path in sorted(Path(OPENCL_DIR).glob("*.cl")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def _kind_of(path: tuple) -> str | None:
    if path and path[0] == "efficiency" and len(path) >= 2:
        return "fraction"
    if path and path[0] == "geometry" and len(path) >= 2:
        return GEOMETRY.get(path[1])
    return QUANTITIES.get(path[0]) if path else None


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_error(file: str, err: jsonschema.ValidationError) -> SdsimError:
    path = tuple(err.absolute_path)
    if err.validator == "required":
        missing = err.message.split("'")[1]
        path = path + (missing,)
        what = "missing"
    elif err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        known = ", ".join(err.schema.get("properties", {}))
        return SdsimError(f"{file}: field '{_field(path + (extra[0],))}': unknown key; "
                          f"expected one of: {known}")
    elif err.validator == "enum":
        what = f"unit {err.instance!r} is not accepted"
    elif err.validator == "exclusiveMinimum":
        what = f"value {err.instance!r} must be > 0"
    elif err.validator == "maximum":
        what = f"value {err.instance!r} must be <= 1"
    else:
        what = err.message
    kind = _kind_of(path)
    if path and path[-1] in ("value", "low", "high", "unit", "source"):
        kind = _kind_of(path[:-1])
    expected = _EXPECTED[kind] if kind else ("a non-empty text" if path and path[0] in TEXT_FIELDS
                                              else "see device_profiles/README.md")
    return SdsimError(f"{file}: field '{_field(path)}': {what}; expected {expected}")


def _si(file: str, field: str, q: dict, kind: str) -> float:
    v = float(q["value"]) * UNITS[kind][q["unit"]]
    if not v > 0:  # NaN passes the schema's exclusiveMinimum
        raise SdsimError(f"{file}: field '{field}': value {q['value']!r} must be > 0; "
                         f"expected {_EXPECTED[kind]}")
    if v > LIMITS[kind]:
        raise SdsimError(f"{file}: field '{field}': {q['value']} {q['unit']} is implausibly large; "
                         f"expected {_EXPECTED[kind]}")
    return v


def parse_profile(data, file: str) -> Profile:
    """Validate a profile already read from YAML (`file` names it in error messages)."""
    if not isinstance(data, dict):
        raise SdsimError(f"{file}: top level must be a mapping of fields; "
                         "see device_profiles/README.md")
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if "schema" not in data or data.get("schema") != SCHEMA_VERSION and \
            isinstance(data.get("schema"), int) and data["schema"] < SCHEMA_VERSION:
        raise SdsimError(
            f"{file}: a schema-{data.get('schema', 1)} profile (per-class efficiencies only); "
            f"this sdsim reads schema {SCHEMA_VERSION}, which adds the device geometry and "
            "per-kernel timing coefficients. Recalibrate the device with `sdsim calibrate --out "
            f"{file}`, or add `schema: {SCHEMA_VERSION}`, `geometry` and `step_latency` as "
            "device_profiles/README.md describes")
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise _schema_error(file, errors[0])
    fields = {f: (data[f], k) for f, k in QUANTITIES.items()}
    fields.update({f"efficiency.{c}": (data["efficiency"][c], "fraction") for c in KERNEL_CLASSES})
    fields.update({f"geometry.{g}": (data["geometry"][g], k) for g, k in GEOMETRY.items()})
    si = {f: _si(file, f, q, k) for f, (q, k) in fields.items()}
    bands = {f: _band(file, f, q, k, si[f]) for f, (q, k) in fields.items()
             if "low" in q or "high" in q}
    sources = {f: q["source"] for f, (q, _) in fields.items()}
    if data.get("tuning"):
        tuning.parse(data["tuning"], file)   # refuses unknown classes or malformed configs
    cal = data.get("coefficients") or {}
    coefficients = _coefficient_set(cal)
    sets = {cal["precision"]: (coefficients, _meta(cal))} if cal else {}
    for p in ("fp16", "fp32"):
        extra = data.get(f"coefficients_{p}")
        if extra is None:
            continue
        if extra["precision"] != p or p in sets:
            raise SdsimError(f"{file}: field 'coefficients_{p}': holds {extra['precision']} "
                             f"coefficients; expected {p} ones, other than those under "
                             "'coefficients'")
        sets[p] = (_coefficient_set(extra), _meta(extra))
    return Profile(
        name=data["name"], soc=data["soc"], gpu=data["gpu"], api=data["api"],
        peak_flops={"fp32": si["peak_fp32"], "fp16": si["peak_fp16"]},
        dram_bandwidth=si["dram_bandwidth"], local_memory=int(si["local_memory"]),
        cache=int(si["cache"]), max_allocation=int(si["max_allocation"]),
        launch_overhead=si["launch_overhead"],
        efficiency={c: si[f"efficiency.{c}"] for c in KERNEL_CLASSES}, path=file,
        sources=sources,
        geometry={g: (int(si[f"geometry.{g}"]) if k == "count" else si[f"geometry.{g}"])
                  for g, k in GEOMETRY.items()},
        step_latency=si["step_latency"], coefficients=coefficients,
        calibration=_meta(cal), coefficient_sets=sets, bands=bands,
        published=data.get("published") or [],
        device_type=data.get("device_type", (data.get("tuning") or {}).get("device_type", "gpu")),
        native_half=(data["native_half"]["value"] if "native_half" in data
                     else si["peak_fp16"] > 1.2 * si["peak_fp32"]),
        tuning=data.get("tuning") or {})


def _coefficient_set(section: dict) -> dict:
    """model key -> Coefficients of one `coefficients` section."""
    cache, ways = float(section.get("cache_bytes", 0.0)), int(section.get("l1_ways", 0))
    return {key: Coefficients(c["t0_us"] * 1e-6, c["latency_us"] * 1e-6, c["step_us"] * 1e-6,
                              c["residency"], "calibrated", c.get("padding", 1.0),
                              c.get("group_us", 0.0) * 1e-6, c.get("spill", 0.0), cache,
                              c.get("wave_latency_us", 0.0) * 1e-6, c.get("tail", 0.0),
                              c.get("alias", 0.0), ways if c.get("alias") else 0,
                              _swept(c.get("swept")), c.get("edge", 0.0),
                              c.get("later", 1.0))
            for key, c in section.get("kernels", {}).items()}


def _swept(ranges: dict | None) -> tuple:
    """Coefficients.swept of a body's `swept` ranges (() where the profile has none)."""
    if not ranges:
        return ()
    return tuple((lo * SWEPT[k], hi * SWEPT[k]) for k, (lo, hi) in
                 ((k, ranges[k]) for k in SWEPT))


def _meta(section: dict) -> dict:
    return {k: v for k, v in section.items() if k != "kernels"}


def _band(file: str, f: str, q: dict, kind: str, value: float) -> tuple[float, float]:
    """(low, high) of a quantity in SI units; low <= value <= high is required."""
    scale = UNITS[kind][q["unit"]]
    low, high = q.get("low", q["value"]) * scale, q.get("high", q["value"]) * scale
    if not low <= value <= high:
        raise SdsimError(f"{file}: field '{f}': low {q.get('low')} <= value {q['value']} <= "
                         f"high {q.get('high')} does not hold; expected a band around the value")
    return low, high


def read_profile(path) -> Profile:
    """Read and validate one YAML profile file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SdsimError(f"{path}: cannot read device profile ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SdsimError(f"{path}: not a text file; expected a YAML device profile "
                         "(see device_profiles/README.md)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SdsimError(f"{path}: YAML syntax error{where}: "
                         f"{getattr(e, 'problem', None) or e}") from None
    return parse_profile(data, str(path))


def profile_files() -> dict[str, Path]:
    """Every profile found by name: name -> file, the first folder of `profile_dirs()` that has
    it winning (so a user's calibrated profile can shadow a bundled one of the same name)."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        for p in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
            found.setdefault(p.stem, p)
    return found


def known_profiles() -> list[str]:
    """Names of the profiles found: $SDSIM_PROFILE_PATH, the user profile folder, bundled."""
    return sorted(profile_files())


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (see `profile_dirs`) or by path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in str(name_or_path):
        return read_profile(p)
    candidate = profile_files().get(str(name_or_path))
    if candidate is not None:
        return read_profile(candidate)
    known = known_profiles()
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise SdsimError(f"unknown device '{name_or_path}'; known: {', '.join(known)}.{hint} "
                     "A path to a YAML profile also works.")
