"""Efficiency of each kernel class, measured on synthetic shapes (not SD's own layer shapes).

Every case is one op variant at one shape, run through the same dispatch code as the OpenCL
backend (sdsim/backends/opencl/dispatch.py); each of its dispatches is timed by OpenCL events
(median of repeats) and set against its roofline time from the variant's cost formula and the
measured peak rate and bandwidth. A class's efficiency is the time-weighted ratio over all its
dispatches,

    efficiency[class] = sum(roofline_i) / sum(measured_i - launch)

i.e. the single factor that makes the cost model's total right for the calibration mix; it is
capped to (0, 1] as the profile schema requires. The shapes are deliberately off SD1.4's (other
channel counts, spatial sizes, token counts) so a validation on SD is not a fit to itself.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from sdsim.kernels import KERNEL_CLASSES, lookup

#: (family, variant, shape) of the calibration mix; "quick" is sized for a CPU OpenCL device
#: (seconds per case on PoCL), "full" for a desktop GPU (enough work-groups to fill it).
_CONV = ("direct", "im2col_gemm", "winograd_f2", "winograd_f4", "winograd_f6")


def _conv(b, cin, cout, hw, k=3, stride=1, padding=1, variants=_CONV):
    return [("conv2d", v, dict(batch=b, cin=cin, cout=cout, h=hw, w=hw, k=k, stride=stride,
                               padding=(padding,) * 4 if isinstance(padding, int) else padding))
            for v in variants]


def _lin(m, k, n, variants=("tiled",)):
    return [("linear", v, dict(m=m, k=k, n=n, bias=True)) for v in variants]


def _attn(b, heads, nq, nk, d, variants=("naive", "partial_softmax", "flash")):
    return [("attention", v, dict(batch=b, heads=heads, nq=nq, nk=nk, head_dim=d, causal=False))
            for v in variants]


def _gn(b, c, hw, groups, act, variants=("naive", "fused")):
    return [("group_norm", v, dict(batch=b, channels=c, hw=hw, groups=groups, eps=1e-5, act=act))
            for v in variants]


def _ln(rows, dim):
    return [("layer_norm", "rowwise", dict(rows=rows, dim=dim, eps=1e-5))]


def _ew(b, c, h, w):
    """Elementwise and data-movement ops on a (b, c, h, w) tensor, and GEGLU on its tokens."""
    x, n = (b, c, h, w), b * c * h * w
    one = lambda v, ins, out, **kw: ("elementwise", v, dict(numel=kw.pop("numel", n),
                                                              in_shapes=ins, out_shape=out, **kw))
    return [one("add", [x, x], x), one("add", [x, (b, c, 1, 1)], x, numel_b=b * c),
            one("silu", [x], x), one("gelu", [x], x),
            one("upsample_nearest2x", [x], (b, c, 2 * h, 2 * w)),
            one("concat", [x, x], (b, 2 * c, h, w), numel=2 * n, axis=1),
            one("nchw_to_nlc", [x], (b, h * w, c)), one("nlc_to_nchw", [(b, h * w, c)], x),
            *[("gelu", v, dict(tokens=b * h * w, dim=c // 2)) for v in ("standalone",
                                                                         "geglu_fused")]]


MIXES = {
    "quick": [
        *_conv(2, 96, 128, 12), *_conv(2, 192, 160, 6), *_conv(2, 48, 48, 20),
        *_conv(2, 128, 128, 10, stride=2, variants=("direct", "im2col_gemm")),
        *_conv(2, 192, 96, 10, k=1, padding=0, variants=("im2col_gemm",)),
        *_lin(150, 256, 1024), *_lin(300, 640, 160), *_lin(100, 384, 768, ("tiled_gelu",)),
        *_attn(2, 4, 100, 100, 40), *_attn(2, 4, 100, 60, 40), *_attn(2, 4, 36, 36, 96),
        *_gn(2, 96, 144, 16, "silu"), *_gn(2, 192, 36, 32, None), *_ln(200, 384),
        *_ew(2, 96, 12, 12), *_ew(2, 192, 6, 6),
    ],
    "full": [
        *_conv(2, 192, 192, 48), *_conv(2, 384, 384, 24), *_conv(1, 96, 128, 96),
        *_conv(2, 256, 256, 40, stride=2, variants=("direct", "im2col_gemm")),
        *_conv(2, 384, 192, 40, k=1, padding=0, variants=("im2col_gemm",)),
        *_lin(3000, 384, 1536), *_lin(3000, 1536, 384), *_lin(154, 512, 384),
        *_lin(2000, 512, 2048, ("tiled_gelu",)),
        *_attn(2, 6, 3000, 3000, 40), *_attn(2, 6, 3000, 60, 40), *_attn(2, 4, 900, 900, 96),
        *_attn(2, 8, 800, 800, 64),
        *_gn(2, 192, 48 * 48, 16, "silu"), *_gn(2, 384, 24 * 24, 32, "silu"),
        *_gn(2, 256, 40 * 40, 32, None), *_ln(2 * 3000, 384), *_ln(2 * 900, 768),
        *_ew(2, 192, 48, 48), *_ew(2, 384, 24, 24), *_ew(1, 96, 96, 96),
    ],
}


def shape_costs(family, variant, shape, precision):
    """The variant's cost list for an op's attrs (extra attrs such as eps are not cost inputs)."""
    fn = lookup(family, variant)
    names = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in dict(shape, precision=precision).items() if k in names})


@dataclass
class Sample:
    """One measured dispatch of the calibration mix."""

    family: str
    variant: str
    shape: dict
    kernel: str
    kernel_class: str
    measured_s: float
    roofline_s: float
    bound: str


def _roofline(k, peak, bw):
    tc, tm = k.flops / peak, k.dram_bytes / bw
    return max(tc, tm), ("compute" if tc >= tm else "memory")


def measure_case(rt, family, variant, shape, precision, peak, bw, repeat=3, seed=0):
    """Samples (one per dispatch) of one case: median event time over `repeat` runs."""
    from sdsim.backends.opencl import dispatch

    rng = np.random.default_rng(seed)
    ins, params, out = dispatch.random_operands(rt, family, variant, shape, precision, rng)
    plan = shape_costs(family, variant, shape, precision)
    dispatch.run(rt, family, variant, shape, ins, params, out, precision)  # warm-up
    rt.finish()
    runs = []
    for _ in range(repeat):
        evs = dispatch.run(rt, family, variant, shape, ins, params, out, precision)
        rt.finish()
        runs.append([(e.profile.end - e.profile.start) * 1e-9 for e in evs])
    if len(runs[0]) != len(plan):
        raise RuntimeError(f"{family}/{variant}: {len(runs[0])} dispatches run, the cost formula "
                           f"lists {len(plan)}")
    med = np.median(np.array(runs), axis=0)
    out = []
    for k, t in zip(plan, med):
        roof, bound = _roofline(k, peak, bw)
        out.append(Sample(family, variant, shape, k.kernel, k.kernel_class, float(t), roof, bound))
    return out


def efficiencies(samples: list[Sample], launch_s: float) -> dict:
    """Per class: efficiency (capped to (0, 1]), the uncapped ratio, and sample count."""
    res = {}
    for cls in KERNEL_CLASSES:
        ss = [s for s in samples if s.kernel_class == cls]
        if not ss:
            res[cls] = None
            continue
        roof = sum(s.roofline_s for s in ss)
        busy = sum(max(s.measured_s - launch_s, 1e-9) for s in ss)
        ratio = roof / busy
        res[cls] = {"efficiency": min(1.0, max(ratio, 1e-4)), "ratio": ratio, "samples": len(ss),
                    "measured_s": sum(s.measured_s for s in ss)}
    return res
