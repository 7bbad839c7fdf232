"""Every command's `--format json` output matches the JSON Schema shipped for it
(sdsim/schemas/COMMAND.schema.json), carries `schema_version`, and names its values in SI units.
The bench (--suite sd), validate and generate schemas are also checked in their own tests, on
the runs those tests make anyway."""

import json

import jsonschema
import pytest

from sdsim import schemas
from sdsim.cli import build_parser, main
from sdsim.errors import SdsimError
from sdsim.schemas import keys  # noqa: F401 - other tests import it from here


def cli_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def run_json(capsys, argv: list) -> tuple[dict, float]:
    """`sdsim ARGV --format json` run in process: its one JSON object, checked against the
    command's schema, and the wall seconds it took (for a test that its `seconds` key is
    seconds)."""
    import json
    import time

    from sdsim.cli import main

    capsys.readouterr()
    t0 = time.perf_counter()
    assert main([*argv, "--format", "json"]) == 0
    elapsed = time.perf_counter() - t0
    obj = json.loads(capsys.readouterr().out)
    check(argv[0], obj)
    return obj, elapsed


def check(command: str, obj: dict) -> None:
    """The object matches its command's schema (SI key names included, `schemas.validate`) and
    carries the current version."""
    schemas.validate(command, obj)
    assert obj["schema_version"] == schemas.SCHEMA_VERSION


@pytest.mark.parametrize("key", ["wall_ms", "latency_us", "traffic_MB", "peak_GiB",
                                 "rate_gflops"])
def test_a_key_in_a_non_si_unit_fails_naming_it(monkeypatch, key):
    """Beyond its schema (here one that takes anything), every command's output is checked for
    keys named in a non-SI unit, wherever they are nested; SI names pass."""
    monkeypatch.setattr(schemas, "load", lambda command: {})
    good = {"schema_version": 1, "rows": [{"latency_s": 1.0, "dram_bytes": 2,
                                           "peak_flops_per_s": 3.0}]}
    schemas.validate("validate", good)
    with pytest.raises(SdsimError, match=key):
        schemas.validate("validate", dict(good, rows=[{key: 1.0}]))


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


@pytest.mark.opencl
def test_devices_opencl(capsys):
    """--opencl lists this machine's OpenCL devices: each row's platform and device indices
    select that device, exactly one is the default the commands take, and with --half each
    cl_khr_fp16 device carries its half library (what sdsim.cl.half_probe reads off it, or why
    it could not), and each says whether it builds programs (the default is one that does) and
    lists the calibrated profiles measured on that device through that platform and driver."""
    from sdsim.cl.half_probe import probe
    from sdsim.cl.runtime import select_device, unusable
    from sdsim.cost.profile import known_profiles, load_profile

    calibrated = [p for p in map(load_profile, known_profiles()) if p.coefficients]

    obj = cli_json(capsys, "devices", "--opencl", "--half", "--format", "json")
    check("devices", obj)
    rows = obj["opencl_devices"]
    assert rows and sum(r["default"] for r in rows) == 1
    for r in rows:
        (pi, pname), (di, dname) = (x.split(": ", 1) for x in (r["platform"], r["device"]))
        dev = select_device(int(pi), int(di))
        assert (dev.platform.name.strip(), dev.name.strip()) == (pname, dname)
        assert r["default"] == (dev == select_device())
        assert r["fp16"] == ("cl_khr_fp16" in dev.extensions)
        assert (r["opencl"], r["driver"]) == (dev.version.strip(), dev.driver_version.strip())
        # a profile's api reads "OpenCL 3.0 (PLATFORM, driver DRIVER)"
        assert r["profiles"] == [
            p.name for p in calibrated if p.gpu == dname
            and p.api.endswith(f"({pname}, driver {r['driver']})")
            and p.api.startswith(" ".join(r["opencl"].split()[:2]))]
        assert r["build_error"] == unusable(dev) and not (r["default"] and r["build_error"])
        assert (r["half_library"] is None) != r["fp16"]
        if r["fp16"]:
            try:
                assert r["half_library"] == probe(int(pi), int(di)).describe()
            except SdsimError as e:   # a half fma that follows no one rule (AMD Zen 5)
                assert r["half_library"] == f"not read: {e}"
    assert main(["devices", "--opencl"]) == 0
    table = capsys.readouterr().out
    for r in rows:   # the table names each device that builds nothing, with the reason
        line = f"{r['platform']} / {r['device']} builds no program here"
        assert (line in table) == bool(r["build_error"])
        if r["build_error"]:
            assert r["build_error"] in table
    by_name: dict = {}
    for r in rows:
        i, name = r["platform"].split(": ", 1)
        by_name.setdefault(name, set()).add(int(i))
    for name, indices in by_name.items():
        if len(indices) < 2:
            continue
        # a name several platforms share (PyPI's and Debian's PoCL, as CI installs them): the
        # name takes the first whose device builds programs, and the table says which
        builders = [i for i in sorted(indices) if unusable(select_device(i, 0)) is None]
        if builders:
            assert (f"share the name '{name}': --platform '{name}' takes {builders[0]},"
                    in table)


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
    with pytest.raises(SdsimError, match="no JSON schema for 'nosuch'.*predict"):
        schemas.load("nosuch")


def test_calibrate_and_tune_json_match_their_schemas_without_a_device(tmp_path):
    """The objects `calibrate --format json` and `tune --format json` print, built here from a
    bundled calibrated profile and the CPU default tuning (the runs themselves are checked on
    PoCL in tests/test_calibrate.py and tests/test_tune.py): each matches its schema, its device
    figures are the profile's in SI units, and a time in microseconds under an _us key fails."""
    from types import SimpleNamespace

    import yaml

    from sdsim.commands import calibrate, tune
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning
    from sdsim.output import dumps
    from sdsim.paths import PROFILES_DIR

    data = yaml.safe_load((PROFILES_DIR / "pocl-cpu.yaml").read_text())
    prof = load_profile(str(PROFILES_DIR / "pocl-cpu.yaml"))
    cal = SimpleNamespace(name="mycpu", device="Portable Computing Language / cpu",
                          precision="fp16", mix="quick", sweep={"cases": 40},
                          coefficients=dict(prof.coefficients))
    held = {"points": 12, "median_abs_error_pct": 4.5, "within10_points_pct": 75.0,
            "within10_time_pct": 88.0}
    out, report = tmp_path / "mycpu.yaml", tmp_path / "calibration-mycpu.md"
    obj = json.loads(dumps(calibrate.summary_json(cal, data, out, report, held, 95.0)))
    check("calibrate", obj)
    assert obj["measurements"] == str(tmp_path / "calibration-mycpu.json")
    assert obj["launch_overhead_s"] == prof.launch_overhead and obj["seconds"] == 95.0
    assert obj["dram_bandwidth_bytes_per_s"] == prof.dram_bandwidth
    assert obj["kernel_bodies"] == len(prof.coefficients) and obj["refit"] is None
    none_held = dict(obj, heldout={"points": 0})
    schemas.validate("calibrate", none_held)
    for bad, where in ((dict(obj, launch_overhead_us=obj["launch_overhead_s"] * 1e6),
                        "(top level)"),
                       (dict(obj, heldout={"points": 3, "median_abs_error_pct": 2.0}), "heldout"),
                       (dict(obj, sweep="medium"), "sweep")):
        with pytest.raises(SdsimError, match=r"^calibrate\.schema\.json: ") as e:
            schemas.validate("calibrate", bad)
        assert str(e.value).split(": ")[1] == where

    cpu = tuning.DEFAULTS["cpu"]
    t = SimpleNamespace(device="Portable Computing Language / cpu", device_type="cpu",
                        size="quick", repeat=1, chosen=dict(cpu.gemm),
                        flash=(cpu.flash_rows, cpu.flash_unroll), split_groups=cpu.split_groups,
                        wino=cpu.wino_group, failed={"r4x16x1-1x1-v8": "wrong result at (1, 3, 100, 220)"})
    obj = json.loads(dumps(tune.summary_json(t, "mycpu", out, tmp_path / "tuning-mycpu.md",
                                             40.0)))
    check("tune", obj)
    assert obj["gemm"] == cpu.to_yaml("r")["gemm"] and obj["dropped"] == t.failed
    del obj["gemm"]["large"]
    with pytest.raises(SdsimError, match=r"^tune\.schema\.json: gemm: 'large' is a required"):
        schemas.validate("tune", obj)
