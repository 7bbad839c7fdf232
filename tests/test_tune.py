"""`sdsim tune`: every candidate measured and checked, the best per class recorded in the profile,
and the lowering, launchers and cost model then use that choice."""

import dataclasses
import shutil

import pytest
import yaml

from sdsim.paths import PROFILES_DIR

pytestmark = pytest.mark.opencl


def test_tune_records_the_fastest_config_per_class(plat, tmp_path):
    import pyopencl as cl

    from sdsim.calibration.tune import SHAPES, WINO_SHAPES
    from sdsim.cli import main
    from sdsim.cost.predict import predict_component
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning

    prof = tmp_path / "dev.yaml"
    shutil.copy(PROFILES_DIR / "pocl-cpu-spec.yaml", prof)
    rep = tmp_path / "tuning-dev.md"
    assert main(["tune", "--platform", plat, "--quick", "--repeat", "1", "--device", str(prof),
                 "--report", str(rep)]) == 0
    data = yaml.safe_load(prof.read_text())
    assert prof.read_text().startswith("# pocl-cpu-spec")      # the header comment is kept
    assert data["tuning"]["report"].endswith("tuning-dev.md")
    p = load_profile(str(prof))
    t = tuning.for_profile(p)
    dtype = "cpu" if "CPU" in cl.device_type.to_string(
        cl.get_platforms()[0].get_devices()[0].type) else "gpu"
    names = {c.name for c in tuning.CANDIDATES[dtype]}
    assert set(t.gemm) == set(tuning.CLASS_NAMES) and {c.name for c in t.gemm.values()} <= names
    assert (t.flash_rows, t.flash_unroll) in tuning.FLASH[dtype]
    assert data["tuning"]["flash_rows"] == t.flash_rows
    assert "## FlashAttention work-group: chosen " in rep.read_text()
    assert t.wino_group in tuning.WINO_GROUPS[dtype]
    assert data["tuning"]["wino_group"] == tuning.group_name(t.wino_group)
    wino = rep.read_text().split("## Winograd transform work-group: chosen ")[1]
    # the report ranks the chosen group first (the lowest score), with a time for every shape,
    # transform and precision
    rows = [r.split(" | ") for r in wino.split("\n\n")[1].splitlines()[2:]]
    assert rows[0][0] == f"| {tuning.group_name(t.wino_group)} **chosen**"
    assert float(rows[0][1]) == min(float(r[1]) for r in rows) and len(rows) > 1
    assert {len(r) for r in rows} == {2 + 2 * 2 * len(WINO_SHAPES["quick"])}
    text = rep.read_text()
    for cls in SHAPES["quick"]:
        # the chosen config is the one the report ranks first (score 1.00 is the floor)
        section = text.split(f"## {cls}: chosen `")[1]
        chosen = section.split("`")[0]
        first = section.split("\n| `")[1].split("`")[0]
        assert chosen == first == t.gemm[cls].name
    # the cost model prices the tuned builds: every GEMM call's model key names its class's
    # config, whose launch geometry it carries
    from sdsim.backends.trace import trace_component
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config

    g = trace_component("unet", load_model_config("tiny"), 64, 2, "fp32")
    pred = predict_component(g, 1, p, parse_opt("paper"), "fp32")
    from sdsim.kernels.gemm import NO_BIAS

    keys = {c.call.model_key.removesuffix(NO_BIAS) for c in pred.kernels
            if c.call.model_key.startswith("gemm.")}
    assert keys and keys <= {f"gemm.{c.name}" for c in t.gemm.values()}


def test_tuning_a_profile_calibrated_on_another_device_is_an_error(plat, tmp_path, monkeypatch,
                                                                  capsys):
    """Kernel builds tuned on one device written into a profile whose timing coefficients were
    measured on another would be priced by that other device's: tune says so, before tuning
    anything, and leaves the profile as it was."""
    from sdsim.calibration import tune as tune_mod
    from sdsim.cli import main

    prof = tmp_path / "dev.yaml"
    data = yaml.safe_load((PROFILES_DIR / "pocl-cpu.yaml").read_text())
    data["gpu"] = "a device of another host"
    prof.write_text(yaml.safe_dump(data, sort_keys=False))
    before = prof.read_text()
    monkeypatch.setattr(tune_mod, "tune", lambda *a, **k: pytest.fail("tuned anyway"))
    assert main(["tune", "--platform", plat, "--quick", "--device", str(prof)]) == 2
    assert prof.read_text() == before
    err = capsys.readouterr().err
    assert "calibrated on a device of another host" in err and "sdsim calibrate --out" in err


def test_tuning_section_errors_name_the_field(tmp_path):
    from sdsim.cost.profile import load_profile
    from sdsim.errors import SdsimError

    data = yaml.safe_load((PROFILES_DIR / "pocl-cpu-spec.yaml").read_text())
    data["tuning"] = {"report": "r.md", "device_type": "cpu",
                      "gemm": {"narrow": "r8x8x1-1x1-v8", "small": "huge",
                               "medium": "r8x8x1-1x1-v8", "large": "r8x8x1-1x1-v8"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(SdsimError, match=r"bad.yaml: tuning.gemm.small: gemm config 'huge'"):
        load_profile(str(bad))
    del data["tuning"]["gemm"]["large"]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(SdsimError, match="lacks the classes large"):
        load_profile(str(bad))
    data["tuning"]["gemm"] = {c: "r8x8x1-1x1-v8" for c in ("narrow", "small", "medium", "large")}
    for group in ("16x0", "64x64", "wide"):
        data["tuning"]["wino_group"] = group
        bad.write_text(yaml.safe_dump(data))
        with pytest.raises(SdsimError, match=r"bad.yaml.*wino_group"):
            load_profile(str(bad))


def test_a_winograd_group_tuned_after_calibration_is_called_stale(tmp_path):
    """Coefficients fitted on 8 x 8 Winograd transform launches (recorded, or from before the
    choice was recorded) are stale once the profile is tuned for another shape; recording the
    shape they were fitted under clears it."""
    from sdsim.cost.profile import load_profile, stale_calibration
    from sdsim.kernels import tuning

    assert stale_calibration(load_profile("nvidia-h100-opencl")) is None   # tuned, then fitted
    data = yaml.safe_load((PROFILES_DIR / "nvidia-h100-opencl.yaml").read_text())
    sets = [k for k in data if k.startswith("coefficients")]    # one per precision
    assert len(sets) == 2
    for p in sets:
        data[p].pop("launches")                        # as calibrated before they were recorded
    prof = tmp_path / "h.yaml"
    t = tuning.for_profile(load_profile("nvidia-h100-opencl"))    # the builds it was fitted on
    for group, stale in (((8, 8), False), ((16, 4), True)):
        data["tuning"] = dataclasses.replace(t, wino_group=group).to_yaml("tuning-h.md")
        prof.write_text(yaml.safe_dump(data))
        msg = stale_calibration(load_profile(str(prof)))
        assert (msg is not None and "wino_group 8x8" in msg and "wino_group 16x4" in msg) == stale
    for p in sets:
        data[p]["launches"] = {k: data["tuning"][k] for k in ("flash_rows", "flash_unroll",
                                                                "split_groups", "wino_group")}
    prof.write_text(yaml.safe_dump(data))
    assert stale_calibration(load_profile(str(prof))) is None


def test_tune_format_json_is_one_object_of_its_schema(plat, tmp_path, capsys):
    """`tune --quick --format json` prints one JSON object (nothing else on stdout) that matches
    sdsim/schemas/tune.schema.json: the profile and report written, the device, the seconds it
    took (the command's wall time, not ms or minutes; no other key is a time) and the choice per
    shape class, as the profile's `tuning:` section records it."""
    from test_schemas import keys, run_json

    from sdsim.cli import main
    from sdsim.kernels import tuning

    prof = tmp_path / "dev.yaml"
    shutil.copy(PROFILES_DIR / "pocl-cpu-spec.yaml", prof)
    obj, elapsed = run_json(capsys, ["tune", "--platform", plat, "--quick", "--repeat", "1",
                                     "--device", str(prof)])
    assert obj["profile"] == str(prof) and obj["report"] == str(tmp_path / "tuning-dev.md")
    assert (tmp_path / "tuning-dev.md").is_file()
    assert obj["device"] == "pocl-cpu-spec" and obj["sweep"] == "quick" and obj["repeat"] == 1
    if plat != "0":
        assert plat in obj["opencl_device"]
    written = yaml.safe_load(prof.read_text())["tuning"]
    assert obj["gemm"] == written["gemm"] and list(obj["gemm"]) == list(tuning.CLASS_NAMES)
    assert obj["device_type"] == written["device_type"]
    for k in ("flash_rows", "flash_unroll", "split_groups", "wino_group"):
        assert obj[k] == written[k], k
    names = {c.name for c in tuning.CANDIDATES[obj["device_type"]]}
    assert set(obj["gemm"].values()) <= names - set(obj["dropped"])
    assert not [k for k in keys(obj) if k.endswith("_s")]
    assert elapsed / 4 <= obj["seconds"] <= elapsed      # seconds: not ms, not minutes

    # the choice as CSV rows, one per shape class, as the profile records it
    import csv
    import io

    assert main(["tune", "--platform", plat, "--quick", "--repeat", "1", "--device", str(prof),
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    written = yaml.safe_load(prof.read_text())["tuning"]
    assert [r["class"] for r in rows] == list(tuning.CLASS_NAMES)
    assert {r["class"]: r["config"] for r in rows} == written["gemm"]


def test_no_winograd_work_group_that_runs_is_an_error_that_says_why(plat, monkeypatch):
    """Where every candidate work-group fails (here: larger than any device allows), tuning
    stops with an error naming each, rather than choosing one that does not run."""
    from sdsim.calibration import tune
    from sdsim.cl.runtime import Runtime
    from sdsim.errors import SdsimError
    from sdsim.kernels import tuning

    rt = Runtime(plat)
    dtype = tuning.device_type(rt.device)
    monkeypatch.setitem(tuning.WINO_GROUPS, dtype, [(rt.max_wg * 2, 1), (rt.max_wg, 4)])
    out = tune.Tuned(rt.name, "", dtype, "", "", "quick", 1)
    with pytest.raises(SdsimError, match="no Winograd transform work-group ran") as e:
        tune._tune_wino(rt, out, "quick", 1)
    assert f"winograd {rt.max_wg * 2}x1: " in str(e.value)
    assert f"winograd {rt.max_wg}x4: " in str(e.value)
