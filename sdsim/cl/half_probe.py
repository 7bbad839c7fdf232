"""What a half device's library computes where devices differ (sdsim.sim.half.HalfLibrary),
read off the device through sdsim's own kernels, so that the NumPy simulations can mirror it bit
for bit: Intel's OpenCL CPU runtime computes half exp as float's rounded and rounds a subnormal
fma through float32 on an AMD EPYC host, and does neither on an Intel Xeon with AVX512-FP16; on an
AMD Zen 5 it follows no one fma rule (the probe says so, and a bit-for-bit mirror is not had)."""

from __future__ import annotations

import numpy as np

from sdsim.sim.half import HalfLibrary, exp16, fma16, library

#: fma probes: how many operand triples whose results the two subnormal rules round apart
_FMA_CASES = 256


def probe(platform=None, device=None) -> HalfLibrary:
    """The half exp of every half and the subnormal fma rule of a cl_khr_fp16 device."""
    from sdsim.cl.runtime import Runtime, select_device
    from sdsim.errors import SdsimError

    dev = select_device(platform, device)
    if "cl_khr_fp16" not in dev.extensions:
        raise SdsimError(f"half library: {dev.platform.name.strip()} / {dev.name.strip()} has no "
                         "cl_khr_fp16, so it computes no half arithmetic to read (Intel's OpenCL "
                         "CPU runtime has it: platform Intel)")
    rt = Runtime(platform, device, arith="fp16acc")
    return HalfLibrary(exp=_exp_table(rt), fma_through_float=_fma_through_float(rt))


def _exp_table(rt) -> np.ndarray:
    """softmax_normalize with row max 0 and sum 1 stores exp((half)s - (half)0) / 1 = exp_h(s)
    for each finite half s; the non-finite halves (whose exp IEEE 754 fixes: +inf, +0, NaN)
    keep float's."""
    from sdsim.kernels.attention import SOFTMAX_WG, normalize_launch

    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    with library(HalfLibrary()):
        table = exp16(halves)
    finite = np.isfinite(halves)
    s = halves[finite]
    buf = rt.to_device(s.astype(np.float32), "fp16", "half exp arguments")
    mx = rt.to_device(np.zeros(1, np.float32), "fp32", "half exp max")
    sm = rt.to_device(np.ones(1, np.float32), "fp32", "half exp sum")
    kern = rt.kernel("attention", "softmax_normalize", "fp16", {"WG": SOFTMAX_WG})
    ev = normalize_launch(1, s.size).enqueue(rt, kern, buf, mx, sm, np.int32(s.size),
                                             np.int32(1))
    table[finite] = rt.from_device(buf, (s.size,), "fp16", wait_for=[ev]).astype(np.float16)
    return table


def _parting_triples(n: int, rng) -> tuple:
    """n half triples (a, b, c) whose fma the two subnormal rules round to different halves:
    c a subnormal half and a * b near a midpoint between subnormal halves, so that the exact sum
    lies just off a midpoint, where rounding to float32 first can land on it; drawn at random
    and kept where the rules part (about 1 in 10,000)."""
    found = []
    while sum(len(t[0]) for t in found) < n:
        m = 1 << 16
        a = rng.uniform(0.02, 0.07, m).astype(np.float16)
        j = rng.integers(1, 64, m)
        b = ((j + 0.5) * 2.0 ** -24 / a.astype(np.float64)).astype(np.float16)
        c = (rng.integers(-1023, 1024, m) * 2.0 ** -24).astype(np.float16)
        prod = a.astype(np.float32) * b.astype(np.float32)
        rules = []
        for through in (True, False):
            with library(HalfLibrary(fma_through_float=through)):
                rules.append(fma16(prod, c))
        part = rules[0].view(np.uint16) != rules[1].view(np.uint16)
        found.append((a[part], b[part], c[part]))
    return tuple(np.concatenate(x)[:n] for x in zip(*found))


def _fma_through_float(rt) -> bool:
    """The fp16acc GEMM with K = 2 computes fma(a_i, b_j, fma(1, c_j, 0)) = fma(a_i, b_j, c_j),
    each a half fma; on its diagonal, triples the two subnormal rules round apart. Which rule
    the device follows on all of them; an error if neither."""
    from sdsim.errors import SdsimError
    from sdsim.kernels.gemm import linear_host

    a, b, c = _parting_triples(_FMA_CASES, np.random.default_rng(0))
    x = np.stack([np.ones_like(a), a], 1).astype(np.float32)
    w = np.stack([c, b], 1).astype(np.float32)   # PyTorch layout (n, k)
    got = np.diagonal(linear_host(rt, x, w, precision="fp16")[0]).astype(np.float16)
    prod = a.astype(np.float32) * b.astype(np.float32)
    agree = {}
    for through in (True, False):
        with library(HalfLibrary(fma_through_float=through)):
            agree[through] = got.view(np.uint16) == fma16(prod, c).view(np.uint16)
        if agree[through].all():
            return through
    # Intel's runtime on an AMD Zen 5 (family 26): a few of 256, at places that move with the
    # operands' order, round exactly, the rest through float32
    raise SdsimError(f"half fma probe: {rt.device.name.strip()} follows neither subnormal fma "
                     f"rule on {a.size} fmas where they part ({agree[True].sum()} rounded through "
                     f"float32, {agree[False].sum()} exactly), so no simulation can mirror its "
                     "half arithmetic bit for bit")
