"""Per-dispatch latency: the geometry model of sdsim/cost/waves.py, with the roofline beside it.

    t_compute = flops / rate                (the roofline: a bound and a sanity check; the rate is
                                             peak_fp16 only for half-arithmetic builds on a
                                             device with native half, Profile.rate)
    t_memory  = dram_bytes / dram_bandwidth
    t         = the geometry model of sdsim/cost/waves.py (waves x steps, with its latencies)

The coefficients are the profile's calibrated ones for the dispatch's kernel body, or transferred
from the profile's specifications where none were measured. `bound` says which roofline term is
larger; `why` explains the predicted time in one line.
"""

from __future__ import annotations

from sdsim.cost.profile import Profile
from sdsim.cost.waves import KernelTime, geometry_time, spec_coefficients


def roofline(k, peak_flops: float, bandwidth: float) -> tuple[float, float]:
    """(compute seconds, memory seconds) of a dispatch (anything with `flops` and `dram_bytes`)
    at a peak arithmetic rate and a DRAM bandwidth: the one roofline sdsim computes."""
    return k.flops / peak_flops, k.dram_bytes / bandwidth


def kernel_time(k, profile: Profile, precision: str) -> KernelTime:
    """Predicted latency of one dispatch (a KernelCall or KernelCost with its launch geometry)
    on `profile` at `precision` ("fp16" | "fp32")."""
    tc, tm = roofline(k, profile.rate(k, precision), profile.dram_bandwidth)
    coefficients = profile.coefficients_for(precision)
    c = coefficients.get(k.model_key) or coefficients.get(k.model_alt) or \
        spec_coefficients(k, profile, precision)
    t, why = geometry_time(c, k.launch, profile.geometry["compute_units"], k.dram_bytes)
    return KernelTime(tc, tm, t, "compute" if tc >= tm else "memory", why)
