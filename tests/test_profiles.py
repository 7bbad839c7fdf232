"""Device profiles: the shipped ones validate, and each kind of mistake names the file and field."""

import copy

import pytest
import yaml

from sdsim.cost.profile import known_profiles, load_profile, parse_profile, read_profile
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES
from sdsim.lower.options import parse_opt

EXPECTED = {"s23ultra", "s22", "s24", "pixel7", "dimensity9200", "iphone14promax"}


def q(v, unit):
    return {"value": v, "unit": unit, "source": "test"}


def toy():
    return {"schema": 2, "name": "toy", "soc": "toy soc", "gpu": "toy gpu", "api": "OpenCL",
            "peak_fp32": q(1000, "GFLOP/s"), "peak_fp16": q(2, "TFLOP/s"),
            "dram_bandwidth": q(50, "GB/s"), "local_memory": q(32, "KiB"),
            "cache": q(1, "MiB"), "max_allocation": q(1, "GiB"),
            "launch_overhead": q(5, "us"), "step_latency": q(1, "us"),
            "geometry": {"compute_units": q(4, "count"), "lanes": q(64, "count"),
                         "residency": q(2, "count"), "clock": q(800, "MHz")},
            "efficiency": {c: q(0.5, "fraction") for c in KERNEL_CLASSES}}


def write(tmp_path, data, name="toy.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_shipped_profiles_all_load_with_sources():
    assert EXPECTED <= set(known_profiles())
    for name in EXPECTED:
        p = load_profile(name)
        assert p.peak_flops["fp16"] >= p.peak_flops["fp32"] > 1e11
        assert all(len(s) > 10 for s in p.sources.values())


def test_units_are_converted_to_si(tmp_path):
    p = read_profile(write(tmp_path, toy()))
    assert p.peak_flops == {"fp32": 1e12, "fp16": 2e12}
    assert p.dram_bandwidth == 50e9 and p.launch_overhead == pytest.approx(5e-6)
    assert p.local_memory == 32768 and p.cache == 2**20 and p.max_allocation == 2**30


def mutate(path, value):
    d = toy()
    node = d
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize("path, value, field, words", [
    (("peak_fp16",), KeyError, "peak_fp16", "missing"),
    (("efficiency", "attention"), KeyError, "efficiency.attention", "missing"),
    (("dram_bandwidth", "unit"), "GB", "dram_bandwidth.unit", "GB/s"),
    (("launch_overhead", "unit"), "GFLOP/s", "launch_overhead.unit", "us"),
    (("peak_fp32", "value"), -3, "peak_fp32.value", "> 0"),
    (("dram_bandwidth", "value"), 0, "dram_bandwidth.value", "> 0"),
    (("efficiency", "gemm", "value"), 1.5, "efficiency.gemm.value", "(0, 1]"),
    (("turbo",), 1, "turbo", "unknown key"),
    (("efficiency", "tensor_core"), q(0.5, "fraction"), "efficiency.tensor_core", "unknown key"),
    (("peak_fp32", "source"), KeyError, "peak_fp32.source", "missing"),
    (("peak_fp32", "value"), 5e9, "peak_fp32", "implausibly large"),
    (("geometry", "clock", "unit"), "Hz", "geometry.clock.unit", "MHz"),
    (("geometry", "residency"), KeyError, "geometry.residency", "missing"),
    (("native_half",), {"value": "yes", "source": "test"}, "native_half.value", "boolean"),
    (("native_half",), {"value": True}, "native_half.source", "missing"),
])
def test_schema_errors_name_file_and_field(tmp_path, path, value, field, words):
    f = write(tmp_path, mutate(path, value))
    with pytest.raises(SdsimError) as e:
        read_profile(f)
    msg = str(e.value)
    assert str(f) in msg and f"'{field}'" in msg and words in msg
    assert "\n" not in msg


def test_old_schema_says_how_to_recalibrate(tmp_path):
    d = toy()
    del d["schema"], d["geometry"], d["step_latency"]
    f = write(tmp_path, d)
    with pytest.raises(SdsimError) as e:
        read_profile(f)
    assert str(f) in str(e.value) and "sdsim calibrate --out" in str(e.value)
    assert "schema-1" in str(e.value)


def test_bands_give_both_corners(tmp_path):
    d = toy()
    d["peak_fp32"].update(low=800, high=1500)
    d["geometry"]["compute_units"].update(low=2, high=6)
    d["step_latency"].update(low=0.5, high=3)
    p = read_profile(write(tmp_path, d))
    fast, slow = p.corner(fast=True), p.corner(fast=False)
    assert (fast.peak_flops["fp32"], slow.peak_flops["fp32"]) == (1.5e12, 0.8e12)
    assert (fast.geometry["compute_units"], slow.geometry["compute_units"]) == (6, 2)
    assert (fast.step_latency, slow.step_latency) == pytest.approx((0.5e-6, 3e-6))
    d["peak_fp32"]["low"] = 1200
    with pytest.raises(SdsimError, match="peak_fp32.*band"):
        read_profile(write(tmp_path, d, "bad.yaml"))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    f = write(tmp_path, "name: toy\npeak_fp32: {value: 1, unit: [\n")
    with pytest.raises(SdsimError, match=r"toy\.yaml: YAML syntax error at line"):
        read_profile(f)


def test_unknown_device_lists_known_and_suggests_closest():
    with pytest.raises(SdsimError) as e:
        load_profile("s23ultr")
    assert "Did you mean 's23ultra'" in str(e.value) and "pixel7" in str(e.value)


def test_device_by_path(tmp_path):
    assert load_profile(str(write(tmp_path, toy(), "mine.yaml"))).name == "toy"


def test_parse_profile_does_not_mutate_input():
    d = toy()
    before = copy.deepcopy(d)
    parse_profile(d, "x.yaml")
    assert d == before


def test_profile_without_per_caller_gemm_models_warns(tmp_path):
    """A profile calibrated before im2col and Winograd GEMMs had their own timing models says
    which are missing and how to recalibrate; the committed one, which has them, does not (taken
    as measured on today's kernels: a change of the kernel sources is a warning of its own)."""
    from sdsim.cost.profile import kernels_hash, stale_calibration

    committed = load_profile("nvidia-h200-opencl")
    with open(committed.path) as fh:
        d = yaml.safe_load(fh)
    for section in ("coefficients", *(f"coefficients_{p}" for p in ("fp16", "fp32"))):
        if section in d:
            d[section]["kernels_hash"] = kernels_hash()
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(yaml.safe_dump(d))
    assert stale_calibration(read_profile(fresh)) is None
    kernels = d["coefficients"]["kernels"]
    for key in [k for k in kernels if k.startswith(("im2col_gemm.", "wino_gemm."))]:
        del kernels[key]
    f = tmp_path / "old.yaml"
    f.write_text(yaml.safe_dump(d))
    msg = stale_calibration(read_profile(f))
    assert msg and "im2col_gemm, wino_gemm" in msg and f"sdsim calibrate --out {f}" in msg


def test_profile_measured_on_other_kernels_says_so(tmp_path):
    """Coefficients measured on other kernel sources than today's opencl/*.cl: the warning
    names both hashes and the command that measures the profile again."""
    from sdsim.cost.profile import kernels_hash, stale_calibration

    with open(load_profile("pocl-cpu").path) as fh:
        d = yaml.safe_load(fh)
    d["coefficients"]["kernels_hash"] = "000000000000"
    stale = d["coefficients"]["precision"]     # the set written last, fp16 or fp32
    f = write(tmp_path, d, "old.yaml")
    msg = stale_calibration(read_profile(f))
    assert msg and "000000000000" in msg and kernels_hash() in msg
    assert f"sdsim calibrate --precision {stale} --out {f}" in msg and f"{stale} ones" in msg


def test_fp16_rate_only_for_half_arithmetic_builds_on_native_half(tmp_path):
    """An fp16-storage GEMM (opencl/gemm.cl has a half build) runs at peak_fp16 on a device with
    native half; the naive softmax's row max, whose kernel computes in float (a comparison, exact
    either way), and every fp32-storage call run at peak_fp32; without native half nothing gets
    the fp16 rate. Absent, native_half follows peak_fp16 > 1.2 x peak_fp32."""
    from sdsim import kernels

    gemm = kernels.get("linear", "tiled").costs("fp16", m=4096, k=320, n=320, bias=True)[0]
    attn = {k.kernel: k for k in kernels.get("attention", "naive").costs(
        "fp16", batch=2, heads=8, nq=4096, nk=4096, head_dim=40)}
    row_max = attn["softmax_max"]
    assert gemm.half_arith and attn["attn_qk"].half_arith and not row_max.half_arith
    rates = {}
    for native in (True, False, None):
        d = toy()
        if native is not None:
            d["native_half"] = {"value": native, "source": "test"}
        p = read_profile(write(tmp_path, d, f"t{native}.yaml"))
        rates[native] = (p.rate(gemm, "fp16"), p.rate(row_max, "fp16"), p.rate(gemm, "fp32"))
    assert rates[True] == (2e12, 1e12, 1e12)
    assert rates[False] == (1e12, 1e12, 1e12)
    assert rates[None] == rates[True]          # toy: peak_fp16 = 2 x peak_fp32


def test_shipped_profiles_say_whether_the_device_has_native_half():
    for name in known_profiles():
        p = load_profile(name)
        assert "native_half" in yaml.safe_load(open(p.path)), name
    assert load_profile("s23ultra").native_half and not load_profile("pocl-cpu").native_half


def test_precision_mismatch_warns_when_coefficients_are_of_the_other_storage(tmp_path):
    from sdsim.cost.profile import precision_mismatch

    pocl = read_profile(write(tmp_path, _fp16_only(), "one.yaml"))
    assert precision_mismatch(pocl, "fp16") is None
    msg = precision_mismatch(pocl, "fp32")
    assert "measured at fp16 storage" in msg and "--precision fp32" in msg
    both = load_profile("pocl-cpu")            # the shipped profile has a set per precision
    assert set(both.coefficient_sets) == {"fp16", "fp32"}
    assert precision_mismatch(both, "fp32") is None and precision_mismatch(both, "fp16") is None
    assert precision_mismatch(load_profile("s23ultra"), "fp32") is None   # no coefficients


def test_other_device_warns_when_a_run_measures_another_device_than_the_calibrated_one():
    """The PoCL profile was calibrated on an AMD EPYC host: a run on another host's PoCL device,
    or on the same device through another PoCL build (another platform or driver), is told so,
    with the command that calibrates it; the same device through the same driver, and profiles
    from specifications (which describe devices sdsim never ran on), say nothing."""
    from sdsim.cost.profile import other_device, profile_warnings

    pocl = load_profile("pocl-cpu")
    assert pocl.api == "OpenCL 3.0 (Portable Computing Language, driver 3.0-rc2)"
    here = f"Portable Computing Language / {pocl.gpu}"
    assert other_device(pocl, here, pocl.api) is None
    assert profile_warnings(pocl, "fp16", (here, pocl.api)) == []
    xeon = "Portable Computing Language / pthread-Intel(R) Xeon(R) Processor"
    msg = other_device(pocl, xeon, pocl.api)
    assert f"calibrated on {pocl.gpu}" in msg and "pthread-Intel(R) Xeon(R) Processor" in msg
    assert "sdsim calibrate --platform 'Portable Computing Language' --out" in msg
    assert msg in profile_warnings(pocl, "fp16", (xeon, pocl.api))
    debian = "OpenCL 3.0 (Portable Computing Language, driver 3.1)"
    msg = other_device(pocl, here, debian)
    assert f"through {debian} (another platform or driver)" in msg and pocl.api in msg
    assert profile_warnings(pocl, "fp16", (here, debian)) == [msg]
    h100 = load_profile("nvidia-h100-opencl")
    cuda = "OpenCL 3.0 (NVIDIA CUDA, driver 580.159.04)"
    assert other_device(h100, "NVIDIA CUDA / NVIDIA H100 80GB HBM3", cuda) is None
    assert "NVIDIA H200" in other_device(h100, "NVIDIA CUDA / NVIDIA H200", cuda)
    assert other_device(h100, "NVIDIA CUDA / NVIDIA H100 80GB HBM3",
                        cuda.replace("580.159.04", "590.1")) is not None
    spec = load_profile("nvidia-h200-spec")
    assert other_device(spec, "NVIDIA CUDA / NVIDIA H100", cuda) is None


def test_profiles_by_name_from_the_search_path_first(tmp_path, monkeypatch):
    """$SDSIM_PROFILE_PATH, then the user profile folder, then the bundled profiles: a profile
    of a bundled name in an earlier folder shadows it; `devices` lists every name once."""
    from sdsim.paths import PROFILES_DIR

    mine, user = tmp_path / "mine", tmp_path / "data" / "sdsim" / "profiles"
    mine.mkdir()
    user.mkdir(parents=True)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("SDSIM_PROFILE_PATH", str(mine))
    d = yaml.safe_load((PROFILES_DIR / "pixel7.yaml").read_text())
    write(user, dict(d, name="lab-gpu"), "lab-gpu.yaml")
    write(user, dict(d, name="s23ultra-user"), "s23ultra.yaml")
    write(mine, dict(d, name="s23ultra-mine"), "s23ultra.yaml")
    assert load_profile("lab-gpu").path == str(user / "lab-gpu.yaml")
    assert load_profile("s23ultra").name == "s23ultra-mine"
    monkeypatch.delenv("SDSIM_PROFILE_PATH")
    assert load_profile("s23ultra").name == "s23ultra-user"
    names = known_profiles()
    assert "lab-gpu" in names and names.count("s23ultra") == 1 and "pixel7" in names


def _fp16_only():
    """pocl-cpu's profile with only its fp16 coefficient set, as `coefficients`."""
    from sdsim.paths import PROFILES_DIR

    d = yaml.safe_load((PROFILES_DIR / "pocl-cpu.yaml").read_text())
    sets = [d.pop(k) for k in ("coefficients", "coefficients_fp16", "coefficients_fp32") if k in d]
    d["coefficients"] = next(s for s in sets if s["precision"] == "fp16")
    return d


def _with_fp32_set(scale):
    """pocl-cpu's fp16-only profile plus an fp32 set: its fp16 coefficients with every time x
    `scale`."""
    d = _fp16_only()
    extra = copy.deepcopy(d["coefficients"])
    extra["precision"] = "fp32"
    for c in extra["kernels"].values():
        for k in ("t0_us", "latency_us", "step_us", "group_us", "wave_latency_us"):
            if k in c:
                c[k] *= scale
    d["coefficients_fp32"] = extra
    return d


def test_a_coefficient_set_per_storage_precision(tmp_path):
    """fp32-storage calls are timed with the fp32 set when the profile has one (no warning),
    fp16 calls with the fp16 set; a set filed under the wrong precision is refused."""
    from sdsim.backends.trace import trace_component
    from sdsim.cost.predict import predict_component
    from sdsim.cost.profile import precision_mismatch
    from sdsim.model.presets import PRESETS

    one = read_profile(write(tmp_path, _fp16_only(), "one.yaml"))
    two = read_profile(write(tmp_path, _with_fp32_set(0.5), "two.yaml"))
    assert set(two.coefficient_sets) == {"fp16", "fp32"}
    assert precision_mismatch(two, "fp32") is None and precision_mismatch(one, "fp32")
    opt = parse_opt("paper")

    def total(profile, precision):
        g = trace_component("unet", PRESETS["tiny"], 32, 2, precision)
        return predict_component(g, 1, profile, opt, precision).latency_per_call

    assert total(two, "fp16") == pytest.approx(total(one, "fp16"))
    # every call with a fitted body halves; the few whose build has no calibration points in
    # this profile (attention's narrow GEMM build) are priced from specifications and do not
    ratio = total(two, "fp32") / total(one, "fp32")
    assert 0.5 <= ratio < 0.6
    bad = _with_fp32_set(1.0)
    bad["coefficients_fp32"]["precision"] = "fp16"
    with pytest.raises(SdsimError, match="coefficients_fp32"):
        read_profile(write(tmp_path, bad, "bad.yaml"))


def test_a_bodys_later_wave_share_is_read_and_bounded(tmp_path):
    """`later` (what each wave after the first costs, sdsim/cost/waves.py) is read where a body
    has it, is 1 (no overlap) where it has none, and a share past 1 is refused naming its field."""
    d = _fp16_only()
    key = sorted(d["coefficients"]["kernels"])[0]
    body = d["coefficients"]["kernels"][key]
    body.pop("later", None)
    assert read_profile(write(tmp_path, d, "none.yaml")).coefficients[key].later == 1.0
    body["later"] = 0.8
    assert read_profile(write(tmp_path, d, "some.yaml")).coefficients[key].later == 0.8
    body["later"] = 1.5
    with pytest.raises(SdsimError, match=f"'coefficients.kernels.{key}.later'"):
        read_profile(write(tmp_path, d, "bad.yaml"))


def test_calibrate_keeps_the_other_precisions_set(tmp_path):
    from types import SimpleNamespace

    from sdsim.calibration.write import _other_precision

    d = _with_fp32_set(1.0)
    path = write(tmp_path, d, "p.yaml")
    h = d["coefficients"]["kernels_hash"]
    here = {"gpu": d["gpu"], "api": d["api"]}   # the same device calibrated again
    kept = _other_precision(path, SimpleNamespace(precision="fp32", kernels_hash=h), here)
    assert list(kept) == ["coefficients_fp16"] and kept["coefficients_fp16"]["precision"] == "fp16"
    kept = _other_precision(path, SimpleNamespace(precision="fp16", kernels_hash=h), here)
    assert list(kept) == ["coefficients_fp32"]
    # a set measured on other kernels is kept too: it carries its own hash, which predict warns on
    kept = _other_precision(path, SimpleNamespace(precision="fp16", kernels_hash="other"), here)
    assert list(kept) == ["coefficients_fp32"] and kept["coefficients_fp32"]["kernels_hash"] == h


@pytest.mark.parametrize("field, value", [("gpu", "pthread-skylake-avx512-AMD EPYC"),
                                          ("api", "OpenCL 3.0 (Portable Computing Language, "
                                                  "driver 3.1+debian)")])
def test_calibrating_another_device_into_a_profile_keeps_none_of_its_sets(tmp_path, capsys,
                                                                         field, value):
    """Two PoCL builds on one host share their platform name: a calibration of the other one
    written into this profile must not leave this device's fp32 set beside its fp16 one, and
    the command says so before it sweeps."""
    from types import SimpleNamespace

    from sdsim.calibration.write import (
        _other_precision,
        calibrated_elsewhere,
        measured_on,
    )
    from sdsim.commands.calibrate import _same_device

    d = _with_fp32_set(1.0)
    path = write(tmp_path, d, "p.yaml")
    platform, driver = d["api"].split("(", 1)[1].rstrip(")").split(", driver ")
    same = measured_on(f"{platform} / {d['gpu']}", d["api"], driver)
    assert same == {"gpu": d["gpu"], "api": d["api"]}
    assert calibrated_elsewhere(path, same) is None
    here = dict(same, **{field: value})
    why = calibrated_elsewhere(path, here)
    assert value in why and d[field] in why
    cal = SimpleNamespace(precision="fp16", kernels_hash=d["coefficients"]["kernels_hash"])
    assert _other_precision(path, cal, here) == {}
    assert calibrated_elsewhere(tmp_path / "none.yaml", here) is None   # no profile there yet

    dev_platform, dev_driver = (platform, driver) if field == "gpu" else \
        ("Portable Computing Language", "3.1+debian")
    rt = SimpleNamespace(name=f"{dev_platform} / {here['gpu']}",
                         device=SimpleNamespace(version=d["api"].split(" (")[0],
                                                driver_version=dev_driver))
    assert _same_device(path, rt) is False
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "replaces it whole" in err and value in err
    rt.name, rt.device.driver_version = f"{platform} / {d['gpu']}", driver
    assert _same_device(path, rt) is True and capsys.readouterr().err == ""
