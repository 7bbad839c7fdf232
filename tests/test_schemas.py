"""Every command's `--format json` output matches the JSON Schema shipped for it
(sdsim/schemas/COMMAND.schema.json), carries `schema_version`, and names its values in SI units.
The bench (--suite sd), validate and generate schemas are also checked in their own tests, on
the runs those tests make anyway."""

import json
import re

import jsonschema
import pytest

from sdsim import schemas
from sdsim.cli import build_parser, main
from sdsim.errors import SdsimError

#: key endings of non-SI units (ms, us, MB, GiB, GFLOP/s, ...): none may name a JSON value
NOT_SI = re.compile(r"(_ms|_us|_[kMGT]i?B|MiB|GiB|[kMGT]FLOPs?|gflops|gbps|GBps)$",
                    re.IGNORECASE)


def cli_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def keys(obj):
    """Every key of a JSON value, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from keys(v)


def check(command: str, obj: dict) -> None:
    """The object matches its command's schema, carries the current version, and every key is
    named in SI units."""
    schemas.validate(command, obj)
    assert obj["schema_version"] == schemas.SCHEMA_VERSION
    assert not [k for k in keys(obj) if NOT_SI.search(k)]


def test_a_schema_per_command_with_json_output():
    """The commands whose --format offers json are exactly those with a schema; each schema is
    a valid draft 2020-12 schema."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    with_json = {name for name, p in sub.choices.items()
                 if any(a.dest == "format" and "json" in (a.choices or ()) for a in p._actions)}
    assert with_json == set(schemas.COMMANDS)
    for command in schemas.COMMANDS:
        schema = schemas.load(command)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


def test_enums_are_the_codes_own_names():
    """Names the schemas enumerate are the ones the code defines (a new kernel class, scheduler,
    traffic mode or arithmetic must reach the schema too)."""
    from sdsim.cost.traffic import TRAFFIC
    from sdsim.kernels import KERNEL_CLASSES
    from sdsim.model.components import OPENCL
    from sdsim.model.schedulers import SCHEDULERS
    from sdsim.precision import ARITHS

    predict = schemas.load("predict")
    props = predict["properties"]
    assert set(props["time_by_kernel_class_s"]["propertyNames"]["enum"]) == set(KERNEL_CLASSES)
    assert set(predict["$defs"]["kernel_row"]["properties"]["class"]["enum"]) == \
        set(KERNEL_CLASSES)
    assert set(props["scheduler"]["enum"]) == set(SCHEDULERS)
    assert set(props["traffic"]["enum"]) == set(TRAFFIC)
    assert set(schemas.load("bench")["$defs"]["arith"]["enum"]) == set(ARITHS)
    assert set(schemas.load("validate")["properties"]["component"]["enum"]) == set(OPENCL)


def test_devices(capsys):
    from sdsim.cost.profile import known_profiles

    obj = cli_json(capsys, "devices", "--format", "json")
    check("devices", obj)
    assert [d["name"] for d in obj["devices"]] == list(known_profiles())


def test_info(capsys):
    check("info", cli_json(capsys, "info", "--model", "tiny", "--format", "json"))


@pytest.mark.parametrize("by", ["component", "op", "kernel"])
def test_predict(capsys, by):
    obj = cli_json(capsys, "predict", "--device", "s23ultra", "--model", "tiny", "--by", by,
                   "--format", "json")
    check("predict", obj)
    assert ("rows" in obj) == (by != "component")


def test_predict_rows_are_si_and_the_table_shows_them_in_human_units(capsys):
    """The JSON's kernel rows are seconds, FLOPs and bytes; the CSV of the same rows shows
    microseconds, MFLOPs and MB (10^6 bytes)."""
    import csv
    import io

    argv = ["predict", "--device", "pixel7", "--model", "tiny", "--by", "kernel"]
    rows = cli_json(capsys, *argv, "--format", "json")["rows"]
    assert main(argv + ["--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    for r, t in zip(rows, table):
        assert float(t["latency_us"]) == pytest.approx(r["latency_s"] * 1e6, rel=1e-9)
        assert float(t["MFLOPs"]) == pytest.approx(r["flops"] / 1e6, rel=1e-9)
        assert float(t["DRAM_MB"]) == pytest.approx(r["dram_bytes"] / 1e6, rel=1e-9)


def test_ablate(capsys):
    check("ablate", cli_json(capsys, "ablate", "--device", "s23ultra", "--model", "tiny",
                             "--format", "json"))


@pytest.mark.opencl
def test_bench_records(capsys):
    obj = cli_json(capsys, "bench", "--quick", "--family", "gelu", "--precision", "fp32",
                   "--repeat", "1", "--format", "json")
    check("bench", obj)
    assert obj["suite"] == "records" and obj["rows"]


@pytest.fixture(scope="module")
def predicted():
    import sdsim

    return sdsim.predict(device="s23ultra", model="tiny").to_json()


@pytest.mark.parametrize("break_it,where", [
    (lambda o: o.pop("total_s"), "(top level)"),                       # a required key gone
    (lambda o: o.update(total_ms=o.pop("total_s") * 1e3), "(top level)"),   # renamed to ms
    (lambda o: o["components"]["unet"].update(calls="21"), "components/unet/calls"),
    (lambda o: o["components"]["unet"].update(latency_s=-1.0), "components/unet/latency_s"),
    (lambda o: o.update(schema_version=2), "schema_version"),
    (lambda o: o["time_by_bound_s"].update(waiting=1.0), "time_by_bound_s"),
])
def test_a_broken_object_fails_naming_the_field(predicted, break_it, where):
    schemas.validate("predict", predicted)
    obj = json.loads(json.dumps(predicted))
    break_it(obj)
    with pytest.raises(SdsimError, match=r"^predict\.schema\.json: ") as e:
        schemas.validate("predict", obj)
    assert str(e.value).split(": ")[1] == where


def test_an_unknown_command_has_no_schema():
    with pytest.raises(SdsimError, match="no JSON schema for 'tune'.*predict"):
        schemas.load("tune")
