"""Cache-aware traffic (sdsim/cost/traffic.py): between compulsory and tiled on every SD1.4
dispatch, and equal to hand-computed bytes on a toy cache."""

from types import SimpleNamespace

import pytest

from sdsim.backends.trace import trace_pipeline
from sdsim.cost.profile import load_profile, parse_profile
from sdsim.cost.roofline import kernel_time
from sdsim.cost.traffic import apply
from sdsim.kernels import KERNEL_CLASSES, costs
from sdsim.lower.options import SETS
from sdsim.lower.plan import KernelCall, lower_graph
from sdsim.model.presets import load_model_config

MiB = 1 << 20


def test_cached_between_compulsory_and_tiled_sd14():
    cache = load_profile("s23ultra").cache
    graphs = trace_pipeline(load_model_config("sd14"), resolution=512, batch=2, precision="fp16")
    for g in graphs.values():
        for opt in SETS.values():
            tiled = lower_graph(g, opt, "fp16")
            cached = apply(g, tiled, "cached", cache, "fp16")
            comp = apply(g, tiled, "compulsory", cache, "fp16")
            below = 0
            for t, c, p in zip(tiled, cached, comp):
                assert t.identity == c.identity == p.identity and t.flops == c.flops
                assert p.dram_bytes <= c.dram_bytes * (1 + 1e-12)
                assert c.dram_bytes <= t.dram_bytes * (1 + 1e-12)
                below += c.dram_bytes < t.dram_bytes * (1 - 1e-9)
            assert below, f"{g.name}: the cache served no re-read at all"


def _gemm_call(n, precision):
    from sdsim.kernels import tuning
    with tuning.use(tuning.Tuning("gpu", {c: tuning.GemmConfig(64, 64, 16, 16, 16, 4)
                                          for c in tuning.CLASS_NAMES}, "test")):
        k = costs("linear", "tiled", m=n, k=n, n=n, bias=False, precision=precision)[0]
    return KernelCall("toy", 0, "linear", "", "linear", "tiled", 0, k.kernel, k.kernel_class,
                      k.flops, k.bytes_read, k.bytes_written, k.workspace, None, "toy/0",
                      k.launch, k.model_key)


def _q(v, unit):
    return {"value": v, "unit": unit, "source": "test"}


def _toy_profile(cache_bytes):
    eff = {c: _q(1.0, "fraction") for c in KERNEL_CLASSES}
    return parse_profile({
        "schema": 2, "name": "toy", "soc": "s", "gpu": "g", "api": "a",
        "step_latency": _q(1, "us"),
        "geometry": {"compute_units": _q(4, "count"), "lanes": _q(64, "count"),
                     "residency": _q(2, "count"), "clock": _q(1, "GHz")},
        "peak_fp32": _q(1, "TFLOP/s"), "peak_fp16": _q(2, "TFLOP/s"),
        "dram_bandwidth": _q(10, "GB/s"), "local_memory": _q(32, "KiB"),
        "cache": _q(cache_bytes, "B"), "max_allocation": _q(1, "GiB"),
        "launch_overhead": _q(1, "us"), "efficiency": eff}, "toy")


def test_cached_gemm_by_hand():
    # 1024^3 fp16 GEMM, 64x64 output tiles: A and B each read 1024/64 = 16 times (32 MiB each),
    # C written once (2 MiB): tiled 66 MiB. Compulsory: A, B, C once = 6 MiB.
    # Cache of three 128x128 fp16 blocks (96 KiB): blocked schedule re-reads
    # 2 * 1024^3 / 128 elements = 16 Mi elements = 32 MiB -> cached 6 + 32 = 38 MiB.
    n, e = 1024, 2
    prof = _toy_profile(3 * 128 * 128 * e)
    call = _gemm_call(n, "fp16")
    assert call.dram_bytes == 66 * MiB
    op = SimpleNamespace(index=0, bytes_read=2 * n * n * e, bytes_written=n * n * e)
    graph = SimpleNamespace(ops=[op])
    (c,) = apply(graph, [call], "cached", prof.cache, "fp16")
    assert c.dram_bytes == pytest.approx(38 * MiB, rel=1e-12)
    assert kernel_time(c, prof, "fp16").memory_s == pytest.approx(38 * MiB / 10e9, rel=1e-12)
    # a cache holding A, B and C (6 MiB) serves every re-read: compulsory bytes
    (c,) = apply(graph, [call], "cached", 6 * MiB, "fp16")
    assert c.dram_bytes == pytest.approx(6 * MiB, rel=1e-12)
    # a tiny cache (blocks smaller than the kernel's 64-wide tiles) never charges more than tiled
    (c,) = apply(graph, [call], "cached", 3 * 16 * 16 * e, "fp16")
    assert c.dram_bytes == 66 * MiB


def test_streaming_op_over_cache_keeps_tiled_bytes():
    # a broadcast add re-reading a 4 MiB operand: no contraction, footprint over a 1 MiB cache
    k = KernelCall("toy", 0, "add", "", "elementwise", "add", 0, "ew_add", "elementwise",
                   1e6, 12 * MiB, 4 * MiB, 0, None, "toy/add")
    op = SimpleNamespace(index=0, bytes_read=8 * MiB, bytes_written=4 * MiB)
    graph = SimpleNamespace(ops=[op])
    assert apply(graph, [k], "cached", 1 * MiB, "fp16")[0].dram_bytes == 16 * MiB
    assert apply(graph, [k], "cached", 16 * MiB, "fp16")[0].dram_bytes == 12 * MiB


def test_mixed_op_saving_comes_from_its_contraction():
    # a Winograd-like op over the cache: a transform (30 MiB, streaming) and a GEMM (100 MiB,
    # 2*1024^3 FLOPs); compulsory C = 20 MiB. 96 KiB cache -> b = 128: blocked re-reads
    # 2*1024^3 * 2 B / 128 = 32 MiB, op charged min(130, 20 + 32) = 52 MiB; the transform keeps
    # its 30 MiB, the GEMM gets the other 22 MiB.
    mk = lambda i, cls, flops, b: KernelCall("toy", 0, "conv2d", "", "conv2d", "w", i, f"k{i}",
                                             cls, flops, b, 0.0, 0, "conv3x3", f"toy/{i}")
    plan = [mk(0, "winograd_transform", 1e6, 30 * MiB), mk(1, "gemm", 2.0 * 1024**3, 100 * MiB)]
    graph = SimpleNamespace(ops=[SimpleNamespace(index=0, bytes_read=15 * MiB,
                                                 bytes_written=5 * MiB)])
    t, g = apply(graph, plan, "cached", 3 * 128 * 128 * 2, "fp16")
    assert t.dram_bytes == pytest.approx(30 * MiB, rel=1e-12)
    assert g.dram_bytes == pytest.approx(22 * MiB, rel=1e-12)
    # compulsory: the 110 MiB saving exceeds the GEMM's 100 MiB, so both scale by 20/130
    t, g = apply(graph, plan, "compulsory")
    assert t.dram_bytes + g.dram_bytes == pytest.approx(20 * MiB, rel=1e-12)
    assert t.dram_bytes == pytest.approx(30 * MiB * 20 / 130, rel=1e-12)
