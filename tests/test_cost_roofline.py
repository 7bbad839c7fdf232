"""Roofline: a pure memory-bound and a pure compute-bound kernel on a toy profile, by hand."""

import pytest

from sdsim.cost.profile import parse_profile
from sdsim.cost.roofline import kernel_time
from sdsim.kernels import KERNEL_CLASSES, KernelCost


def q(v, unit):
    return {"value": v, "unit": unit, "source": "test"}


@pytest.fixture
def prof():
    eff = {c: q(0.5, "fraction") for c in KERNEL_CLASSES}
    eff["gemm"] = q(0.8, "fraction")
    return parse_profile({
        "name": "toy", "soc": "s", "gpu": "g", "api": "a",
        "peak_fp32": q(1, "TFLOP/s"), "peak_fp16": q(2000, "GFLOP/s"),
        "dram_bandwidth": q(100, "GB/s"), "local_memory": q(32, "KiB"), "cache": q(1, "MiB"),
        "max_allocation": q(1, "GiB"), "launch_overhead": q(10, "us"), "efficiency": eff}, "toy")


def test_memory_bound_copy(prof):
    # 100 MB in + 100 MB out at 100 GB/s = 2 ms; at efficiency 0.5 -> 4 ms; + 10 us launch
    k = KernelCost("copy", "elementwise", flops=1e6, bytes_read=1e8, bytes_written=1e8)
    t = kernel_time(k, prof, "fp16")
    assert t.bound == "memory"
    assert t.total_s == pytest.approx(0.004 + 10e-6, rel=1e-12)


def test_compute_bound_gemm(prof):
    # 2*1024^3 FLOPs at 1 TFLOP/s (fp32) = 2.147 ms; / 0.8 -> 2.684 ms; + 10 us
    n = 1024
    k = KernelCost("gemm", "gemm", flops=2.0 * n**3, bytes_read=3 * n * n * 4, bytes_written=n * n * 4)
    t = kernel_time(k, prof, "fp32")
    assert t.bound == "compute"
    assert t.total_s == pytest.approx(2 * 1024**3 / 1e12 / 0.8 + 10e-6, rel=1e-12)
    # the same kernel in fp16 uses the fp16 peak (2 TFLOP/s)
    assert kernel_time(k, prof, "fp16").compute_s == pytest.approx(2 * 1024**3 / 2e12)


def test_empty_kernel_costs_the_launch(prof):
    t = kernel_time(KernelCost("noop", "elementwise", 0, 0, 0), prof, "fp16")
    assert t.total_s == pytest.approx(10e-6)
