"""JSON Schemas (draft 2020-12) of every command's `--format json` output, shipped with the
package so scripts can check what they read: `load("predict")`, `validate("predict", obj)`.

Every object carries `schema_version`; it goes up when a key is renamed or removed or changes
meaning (adding a key is not a new version). Values are in SI units, named by their unit:
seconds `_s`, bytes `_bytes`, FLOPs `flops`, rates `_per_s`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

from sdsim.errors import SdsimError

SCHEMA_VERSION = 1
#: the commands that print JSON, one schema file each: sdsim/schemas/COMMAND.schema.json
COMMANDS = ("devices", "info", "predict", "ablate", "bench", "validate", "generate", "calibrate",
            "tune")
#: key endings of non-SI units (ms, us, MB, GiB, GFLOP/s, ...): no key may name a JSON value so
NOT_SI = re.compile(r"(_ms|_us|_[kMGT]i?B|MiB|GiB|[kMGT]FLOPs?|gflops|gbps|GBps)$", re.IGNORECASE)


def path(command: str):
    """The schema file of `command` (a Traversable inside the installed package)."""
    if command not in COMMANDS:
        raise SdsimError(f"no JSON schema for '{command}'; commands with JSON output: "
                         f"{', '.join(COMMANDS)}")
    return resources.files(__name__) / f"{command}.schema.json"


@cache
def load(command: str) -> dict:
    """The JSON Schema of `sdsim COMMAND --format json`."""
    return json.loads(path(command).read_text(encoding="utf-8"))


def validate(command: str, obj) -> None:
    """Raise SdsimError naming the schema file and the field at fault if `obj` is not what
    `sdsim COMMAND --format json` prints."""
    import jsonschema

    schema = load(command)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise SdsimError(f"{command}.schema.json: {where}: {error.message}")
    bad = sorted({k for k in keys(obj) if NOT_SI.search(k)})
    if bad:
        raise SdsimError(f"{command}.schema.json: keys {', '.join(bad)} name a non-SI unit "
                         "(seconds _s, bytes _bytes, rates _per_s)")


def keys(obj):
    """Every key of a JSON object, nested ones included."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from keys(v)
