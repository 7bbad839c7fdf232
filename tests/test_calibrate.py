"""`sdsim calibrate`: the profile it writes loads and validates against the schema, its sources
point at the report it writes, and the efficiency aggregate is the documented formula."""

import pytest
import yaml

from sdsim.calibration.classes import Sample, efficiencies


def _s(cls, measured, roofline):
    return Sample("f", "v", {}, "k", cls, measured, roofline, "compute")


def test_efficiency_is_time_weighted_roofline_over_busy_time():
    launch = 1e-6
    samples = [_s("gemm", 11e-6, 5e-6), _s("gemm", 31e-6, 6e-6), _s("elementwise", 3e-6, 4e-6)]
    eff = efficiencies(samples, launch)
    # by hand: (5 + 6) / ((11 - 1) + (31 - 1)) = 11 / 40
    assert eff["gemm"]["efficiency"] == pytest.approx(11 / 40)
    assert eff["gemm"]["samples"] == 2
    # faster than the roofline: the ratio is kept, the profile value is capped at 1
    assert eff["elementwise"]["ratio"] == pytest.approx(4 / 2)
    assert eff["elementwise"]["efficiency"] == 1.0
    assert eff["conv"] is None


@pytest.mark.opencl
def test_calibrate_writes_a_profile_that_loads(tmp_path, capsys):
    import pyopencl as cl

    from sdsim.cli import main
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import KERNEL_CLASSES

    plat = "Portable" if any("Portable" in p.name for p in cl.get_platforms()) else "0"
    out, rep = tmp_path / "dev.yaml", tmp_path / "calibration-dev.md"
    assert main(["calibrate", "--platform", plat, "--quick", "--repeat", "1", "--out", str(out),
                 "--report", str(rep)]) == 0
    prof = load_profile(str(out))          # the schema of device_profiles/README.md
    assert prof.name == "dev"
    assert set(prof.efficiency) == set(KERNEL_CLASSES)
    assert all(0 < v <= 1 for v in prof.efficiency.values())
    assert prof.dram_bandwidth > 0 and prof.peak_flops["fp32"] > 0 and prof.launch_overhead > 0
    data = yaml.safe_load(out.read_text())
    for field in ("peak_fp32", "peak_fp16", "dram_bandwidth", "launch_overhead"):
        assert str(rep) in data[field]["source"] or rep.name in data[field]["source"]
    text = rep.read_text()
    assert "## Kernel-class efficiency" in text and "conv2d/winograd_f4" in text


def test_calibrate_refuses_a_non_yaml_out(tmp_path, capsys):
    from sdsim.cli import main

    assert main(["calibrate", "--out", str(tmp_path / "x.txt")]) == 2
    assert "x.txt" in capsys.readouterr().err
