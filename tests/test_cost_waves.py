"""The geometry model (sdsim/cost/waves.py) on a toy profile, by hand: spec-transferred
coefficients reduce to the roofline over the efficiency when the device is full, a partly filled
device is latency-bound, calibrated coefficients win over the transfer, and every time explains
itself in one line."""

import dataclasses

import pytest

from sdsim.cost.profile import parse_profile
from sdsim.cost.roofline import kernel_time
from sdsim.cost.waves import BEYOND, Coefficients
from sdsim.kernels import KERNEL_CLASSES, KernelCost, Launch


def q(v, unit):
    return {"value": v, "unit": unit, "source": "test"}


@pytest.fixture
def prof():
    eff = {c: q(0.5, "fraction") for c in KERNEL_CLASSES}
    eff["gemm"] = q(0.8, "fraction")
    return parse_profile({
        "schema": 2, "name": "toy", "soc": "s", "gpu": "g", "api": "a",
        "peak_fp32": q(1, "TFLOP/s"), "peak_fp16": q(2000, "GFLOP/s"),
        "dram_bandwidth": q(100, "GB/s"), "local_memory": q(32, "KiB"), "cache": q(1, "MiB"),
        "max_allocation": q(1, "GiB"), "launch_overhead": q(10, "us"), "step_latency": q(2, "us"),
        "geometry": {"compute_units": q(4, "count"), "lanes": q(64, "count"),
                     "residency": q(2, "count"), "clock": q(1, "GHz")},
        "efficiency": eff}, "toy")


def test_full_device_memory_bound_copy_is_the_roofline(prof):
    # 100 MB in + 100 MB out at 100 GB/s = 2 ms; at efficiency 0.5 -> 4 ms; + 10 us. 800 work-
    # groups on 4 CUs x 2 resident = 100 full waves of one step each.
    k = KernelCost("copy", "elementwise", flops=1e6, bytes_read=1e8, bytes_written=1e8,
                   launch=Launch((800 * 256,), (256,)))
    t = kernel_time(k, prof, "fp16")
    assert t.bound == "memory"
    assert t.total_s == pytest.approx(0.004 + 10e-6, rel=1e-12)
    assert t.why.startswith("100 waves x 1 steps x 40 us + 10 us")


def test_full_device_compute_bound_gemm_is_the_roofline(prof):
    # 2*1024^3 FLOPs at 1 TFLOP/s (fp32) = 2.147 ms; / 0.8 -> 2.684 ms; + 10 us; 256 work-groups
    # = 32 waves, 64 k-steps each
    n = 1024
    k = KernelCost("gemm", "gemm", flops=2.0 * n**3, bytes_read=3 * n * n * 4,
                   bytes_written=n * n * 4, launch=Launch((16 * 16, 16 * 16, 1), (16, 16, 1), 64),
                   half_arith=True)
    t = kernel_time(k, prof, "fp32")
    assert t.bound == "compute"
    assert t.total_s == pytest.approx(2 * 1024**3 / 1e12 / 0.8 + 10e-6, rel=1e-12)
    # fp16 storage: the fp16 rate for a kernel with a half build (native half: peak_fp16 is 2x)
    assert kernel_time(k, prof, "fp16").compute_s == pytest.approx(2 * 1024**3 / 2e12)
    floats = dataclasses.replace(k, half_arith=False)   # a kernel that computes in float
    assert kernel_time(floats, prof, "fp16").compute_s == pytest.approx(2 * 1024**3 / 1e12)


def test_few_work_groups_are_latency_bound(prof):
    # 3 work-groups of 80 steps: far less work per step than the 2 us step latency
    k = KernelCost("gemm", "gemm", flops=3 * 80 * 1e3, bytes_read=1e3, bytes_written=1e3,
                   launch=Launch((3 * 64,), (64,), 80))
    t = kernel_time(k, prof, "fp32")
    assert t.total_s == pytest.approx(10e-6 + 80 * 2e-6)
    assert "80 steps x 2 us latency-bound (3 work-groups, 8 slots)" in t.why


def test_calibrated_coefficients_win_over_the_transfer(prof):
    c = Coefficients(1e-6, 3e-6, 5e-6, 1, "calibrated")
    p = dataclasses.replace(prof, coefficients={"gemm": c})
    k = KernelCost("gemm_bias", "gemm", 1e9, 1e6, 1e6, launch=Launch((9 * 64,), (64,), 10),
                   model="gemm")
    t = kernel_time(k, p, "fp16")
    assert t.total_s == pytest.approx(1e-6 + 10 * max(3e-6, 3 * 5e-6))   # 9 groups, 4 slots
    assert t.why.endswith("[calibrated]")


def test_a_partly_filled_last_wave_steps_faster_by_its_tail(prof):
    # 6 work-groups on 4 slots: one full wave, then a half-full one whose steps cost
    # 1 - 0.5 x (1 - 0.5) = 0.75 of a full wave's
    c = Coefficients(1e-6, 0.0, 4e-6, 1, "calibrated", tail=0.5)
    p = dataclasses.replace(prof, coefficients={"gemm": c})
    k = KernelCost("gemm_bias", "gemm", 1e9, 1e6, 1e6, launch=Launch((6 * 64,), (64,), 10),
                   model="gemm")
    t = kernel_time(k, p, "fp16")
    assert t.total_s == pytest.approx(1e-6 + 10 * (4e-6 + 0.75 * 4e-6))
    assert "last wave 50% full (its steps x0.75)" in t.why


def test_rows_of_b_straddling_lines_fetch_a_b_past_the_cache_over_again(prof):
    # B of 8 MiB read again past a 2 MiB cache: 75% of it missed; rows straddling 1.75 lines
    # on average fetch 1.75 times the lines, so the step costs 1 + 2 x 0.75 x 1.75
    mib = 2 ** 20
    c = Coefficients(1e-6, 0.0, 4e-6, 1, "calibrated", spill=2.0, cache=2 * mib)
    p = dataclasses.replace(prof, coefficients={"gemm": c})

    def time(lines, reread=8 * mib):
        launch = dataclasses.replace(Launch((4 * 64,), (64,), 10), reread=reread, lines=lines)
        return kernel_time(KernelCost("gemm", "gemm", 1e9, 1e6, 1e6, launch=launch,
                                      model="gemm"), p, "fp32")

    aligned, split = time(1.0), time(1.75)
    assert aligned.total_s == pytest.approx(1e-6 + 10 * 4e-6 * (1 + 2 * 0.75))
    assert split.total_s == pytest.approx(1e-6 + 10 * 4e-6 * (1 + 2 * 0.75 * 1.75))
    assert "75% of 8 MiB past the 2 MiB cache (x2.50)" in aligned.why
    assert ("75% of 8 MiB past the 2 MiB cache, its rows of B straddling 1.75 cache lines each "
            "(x3.62)") in split.why
    # within the cache, straddled lines cost nothing the step does not already price
    assert time(1.75, reread=mib).total_s == pytest.approx(1e-6 + 10 * 4e-6)


def test_a_call_past_its_body_s_sweep_says_it_extrapolates(prof):
    # swept: 10-400 work-groups, 2-100 steps, lanes 50-100% active, footprints to 4 MiB
    mib = 2 ** 20
    swept = ((10, 400), (2, 100), (0.5, 1.0), (0.0, 4 * mib))
    c = Coefficients(1e-6, 0.0, 4e-6, 1, "calibrated", spill=1.0, cache=2 * mib, swept=swept)
    p = dataclasses.replace(prof, coefficients={"gemm": c})

    def why(wg, steps, active=1.0, reread=0.0):
        launch = dataclasses.replace(Launch((wg * 64,), (64,), steps), active=active,
                                     reread=reread)
        return kernel_time(KernelCost("gemm", "gemm", 1e9, 1e6, 1e6, launch=launch), p,
                           "fp16").why

    inside = why(400, 120, 0.45, 4.9 * mib)   # each within the 25% margin
    assert BEYOND not in inside and inside.endswith("[calibrated]")
    assert f"{BEYOND} (320 steps, swept to 100) [calibrated]" in why(40, 320)
    assert "7 work-groups, swept from 10" in why(7, 20)
    assert "600 work-groups, swept to 400" in why(600, 20)
    assert "25% lanes active, swept from 50%" in why(40, 20, 0.25)
    assert "8.0 MiB of data read again, swept to 4.0 MiB" in why(40, 20, reread=8 * mib)
    # the footprint matters only to a body with a cache term
    plain = dataclasses.replace(c, spill=0.0)
    p = dataclasses.replace(prof, coefficients={"gemm": plain})
    assert BEYOND not in why(40, 20, reread=8 * mib)
    # coefficients without a sweep (spec transfer, older profiles) never claim one
    p = dataclasses.replace(prof, coefficients={"gemm": dataclasses.replace(c, swept=())})
    assert BEYOND not in why(7, 320)


def test_a_profile_s_swept_ranges_load_in_bytes_and_bad_ones_are_named():
    import jsonschema

    from sdsim.cost.profile import COEFFICIENTS_SCHEMA, _coefficient_set

    body = {"t0_us": 1, "latency_us": 1, "step_us": 1, "residency": 2,
            "swept": {"work_groups": [3, 900], "steps": [1, 80], "active": [0.25, 1],
                      "footprint_mib": [0, 12.5]}}
    c = _coefficient_set({"kernels": {"gemm": body}})["gemm"]
    assert c.swept == ((3, 900), (1, 80), (0.25, 1), (0, 12.5 * 2 ** 20))
    section = {"report": "r.md", "kernels_hash": "abcdef", "precision": "fp16",
               "kernels": {"gemm": dict(body, swept=dict(body["swept"], steps=[1]))}}
    with pytest.raises(jsonschema.ValidationError, match="steps"):
        jsonschema.validate(section, COEFFICIENTS_SCHEMA)
