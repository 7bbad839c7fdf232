"""Per-kernel latency: a roofline with a class efficiency and a launch overhead.

    t_compute = flops / peak_flops[precision]
    t_memory  = dram_bytes / dram_bandwidth
    t         = max(t_compute, t_memory) / efficiency[kernel_class] + launch_overhead

Why this form: a GPU kernel keeps many work-groups in flight, so while some wait on DRAM others
compute; the two overlap and the slower resource sets the pace (the max, not the sum). Real
kernels reach only a fraction of that bound (occupancy, tile edges, cache misses, instruction
overhead); that fraction is measured per kernel class (a GEMM benchmark for gemm, a streaming
copy for elementwise...) and recorded in the profile as `efficiency`. The launch overhead is the
gap between back-to-back dispatches in an in-order queue; it is not hidden by the kernel's own
work, so it is added. `bound` says which of the two terms was larger.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdsim.cost.profile import Profile
from sdsim.kernels import KernelCost


@dataclass(frozen=True)
class KernelTime:
    compute_s: float   # flops at peak
    memory_s: float    # DRAM bytes at peak bandwidth
    total_s: float     # max(...) / efficiency + launch overhead
    bound: str         # "compute" | "memory"


def roofline(k, peak_flops: float, bandwidth: float) -> tuple[float, float]:
    """(compute seconds, memory seconds) of a dispatch (anything with `flops` and `dram_bytes`)
    at a peak arithmetic rate and a DRAM bandwidth: the one roofline sdsim computes."""
    return k.flops / peak_flops, k.dram_bytes / bandwidth


def kernel_time(k: KernelCost, profile: Profile, precision: str) -> KernelTime:
    """Predicted latency of one dispatch on `profile` at `precision` ("fp16" | "fp32")."""
    tc, tm = roofline(k, profile.peak_flops[precision], profile.dram_bandwidth)
    eff = profile.efficiency[k.kernel_class]
    return KernelTime(tc, tm, max(tc, tm) / eff + profile.launch_overhead,
                      "compute" if tc >= tm else "memory")
