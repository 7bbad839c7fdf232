"""Device profiles: load a YAML file, validate it against the schema, convert every number to SI.

A profile is data, not code (see device_profiles/README.md for the schema). Every number is a
`{value, unit, source}` triple so that each figure says where it came from. Validation is done
with jsonschema; the first problem found is raised as an SdsimError naming the file, the field
and the expected form.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES
from sdsim.paths import PROFILES_DIR

#: accepted units per quantity kind, with the factor to the SI unit the model uses
UNITS = {
    "rate": {"GFLOP/s": 1e9, "TFLOP/s": 1e12},
    "bandwidth": {"GB/s": 1e9, "MB/s": 1e6},
    "bytes": {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "fraction": {"fraction": 1.0},
}

#: the largest plausible value per kind, in SI units; anything above is a typo (e.g. a unit slip)
LIMITS = {"rate": 1e15, "bandwidth": 1e13, "bytes": 2**40, "time": 1.0, "fraction": 1.0}

#: top-level numeric fields and their kind
QUANTITIES = {
    "peak_fp32": "rate",
    "peak_fp16": "rate",
    "dram_bandwidth": "bandwidth",
    "local_memory": "bytes",
    "cache": "bytes",
    "max_allocation": "bytes",
    "launch_overhead": "time",
}
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
            "unit": {"enum": list(UNITS[kind])},
            "source": {"type": "string", "minLength": 3},
        },
    }


SCHEMA = {
    "type": "object",
    "required": [*TEXT_FIELDS, *QUANTITIES, "efficiency"],
    "additionalProperties": False,
    "properties": {
        **{f: {"type": "string", "minLength": 1} for f in TEXT_FIELDS},
        "notes": {"type": "string"},
        **{f: _quantity_schema(k) for f, k in QUANTITIES.items()},
        "efficiency": {
            "type": "object",
            "required": list(KERNEL_CLASSES),
            "additionalProperties": False,
            "properties": {c: _quantity_schema("fraction") for c in KERNEL_CLASSES},
        },
    },
}

_EXPECTED = {
    "rate": "{value: <number > 0>, unit: GFLOP/s|TFLOP/s, source: <text>}",
    "bandwidth": "{value: <number > 0>, unit: GB/s|MB/s, source: <text>}",
    "bytes": "{value: <number > 0>, unit: B|KiB|MiB|GiB, source: <text>}",
    "time": "{value: <number > 0>, unit: s|ms|us|ns, source: <text>}",
    "fraction": "{value: <number in (0, 1]>, unit: fraction, source: <text>}",
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


def _kind_of(path: tuple) -> str | None:
    if path and path[0] == "efficiency" and len(path) >= 2:
        return "fraction"
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
    if path and path[-1] in ("value", "unit", "source"):
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
    if errors:
        raise _schema_error(file, errors[0])
    si = {f: _si(file, f, data[f], k) for f, k in QUANTITIES.items()}
    eff = {c: _si(file, f"efficiency.{c}", data["efficiency"][c], "fraction")
           for c in KERNEL_CLASSES}
    sources = {f: data[f]["source"] for f in QUANTITIES}
    sources.update({f"efficiency.{c}": data["efficiency"][c]["source"] for c in KERNEL_CLASSES})
    return Profile(
        name=data["name"], soc=data["soc"], gpu=data["gpu"], api=data["api"],
        peak_flops={"fp32": si["peak_fp32"], "fp16": si["peak_fp16"]},
        dram_bandwidth=si["dram_bandwidth"], local_memory=int(si["local_memory"]),
        cache=int(si["cache"]), max_allocation=int(si["max_allocation"]),
        launch_overhead=si["launch_overhead"], efficiency=eff, path=file, sources=sources)


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


def known_profiles() -> list[str]:
    """Names of the profiles shipped in device_profiles/."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (device_profiles/<name>.yaml) or by path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in str(name_or_path):
        return read_profile(p)
    candidate = PROFILES_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return read_profile(candidate)
    known = known_profiles()
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise SdsimError(f"unknown device '{name_or_path}'; known: {', '.join(known)}.{hint} "
                     "A path to a YAML profile also works.")
