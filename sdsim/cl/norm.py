"""GroupNorm (naive chain and the specialised single-dispatch kernel) and LayerNorm on an OpenCL
device (opencl/norm.cl): device-buffer functions, host wrappers and bench cases.

GroupNorm takes NCHW (any trailing spatial size `hw`); LayerNorm normalizes the last dim.
"""

from __future__ import annotations

import numpy as np

from sdsim.cl.bench import BenchCase
from sdsim.errors import SdsimError
from sdsim.kernels import costs

VARIANTS = ("naive", "fused")
WG = 256
LN_WG = 64


def _wg(rt, preferred: int) -> int:
    """The largest power of two <= preferred that the device allows in one work-group (the
    kernels' tree reductions need a power of two)."""
    wg = 1
    while wg * 2 <= min(preferred, rt.max_wg):
        wg *= 2
    return wg


def _act_flag(act) -> int:
    if act not in (None, "silu"):
        raise SdsimError(f"group_norm: unknown fused activation {act!r}; expected None or 'silu'")
    return int(act == "silu")


def group_norm(rt, x, gamma, beta, shape, groups, eps, *, act=None, variant="fused",
               precision="fp32", out=None, wait_for=None):
    """GroupNorm of an NCHW buffer of `shape` = (B, C, *spatial); returns (out_buf, events)."""
    if variant not in VARIANTS:
        raise SdsimError(f"group_norm: unknown variant '{variant}'; expected one of {VARIANTS}")
    batch, channels = shape[:2]
    hw = int(np.prod(shape[2:], dtype=np.int64))
    if channels % groups:
        raise SdsimError(f"group_norm: {channels} channels do not split into {groups} groups")
    cpg, ng = channels // groups, batch * groups
    n = cpg * hw
    total = batch * channels * hw
    i32, f32 = np.int32, np.float32
    if out is None:
        out = rt.alloc(total, precision, "group_norm output")
    wg = _wg(rt, WG)
    defs = {"WG": wg, "ACT": _act_flag(act)}
    if variant == "fused":
        k = rt.kernel("norm", "gn_fused", precision, defs)
        ev = rt.launch(k, (ng * wg,), (wg,), x, gamma, beta, out, i32(hw), i32(cpg), i32(groups),
                       f32(eps), wait_for=wait_for)
        return out, [ev]
    mean = rt.alloc(ng, "fp32", "group mean")
    var = rt.alloc(ng, "fp32", "group variance")
    k1 = rt.kernel("norm", "gn_mean", precision, defs)
    events = [rt.launch(k1, (ng * wg,), (wg,), x, mean, i32(n), wait_for=wait_for)]
    k2 = rt.kernel("norm", "gn_var", precision, defs)
    events.append(rt.launch(k2, (ng * wg,), (wg,), x, mean, var, i32(n), wait_for=events[-1:]))
    k3 = rt.kernel("norm", "gn_normalize", precision, defs)
    events.append(rt.launch(k3, (total,), rt.local_size(k3, (256,)), x, mean, var, gamma, beta,
                            out, i32(channels), i32(hw), i32(cpg), f32(eps), i32(total),
                            wait_for=events[-1:]))
    return out, events


def layer_norm(rt, x, gamma, beta, rows, dim, eps, *, precision="fp32", out=None,
               wait_for=None):
    """LayerNorm over the last dim of a (rows, dim) buffer; returns (out_buf, events)."""
    if out is None:
        out = rt.alloc(rows * dim, precision, "layer_norm output")
    wg = _wg(rt, LN_WG)
    k = rt.kernel("norm", "ln_rowwise", precision, {"WG": wg})
    ev = rt.launch(k, (rows * wg,), (wg,), x, gamma, beta, out, np.int32(dim),
                   np.float32(eps), wait_for=wait_for)
    return out, [ev]


def group_norm_host(rt, x, gamma, beta, groups, eps=1e-5, *, act=None, variant="fused",
                    precision="fp32"):
    """Host-array wrapper of group_norm; returns (float32 out, events)."""
    bufs = [rt.to_device(a, precision, n) for a, n in ((x, "x"), (gamma, "gamma"), (beta, "beta"))]
    out, ev = group_norm(rt, *bufs, x.shape, groups, eps, act=act, variant=variant,
                         precision=precision)
    return rt.from_device(out, x.shape, precision, wait_for=ev), ev


def layer_norm_host(rt, x, gamma, beta, eps=1e-5, *, precision="fp32"):
    """Host-array wrapper of layer_norm over the last dim; returns (float32 out, events)."""
    dim = x.shape[-1]
    rows = x.size // dim if dim else 0
    bufs = [rt.to_device(a, precision, n) for a, n in ((x, "x"), (gamma, "gamma"), (beta, "beta"))]
    out, ev = layer_norm(rt, *bufs, rows, dim, eps, precision=precision)
    return rt.from_device(out, x.shape, precision, wait_for=ev), ev


def group_norm_ref(x, gamma, beta, groups, eps=1e-5, act=None):
    """float64 NumPy GroupNorm (two-pass mean and variance) [+ SiLU]: the reference."""
    x = np.asarray(x, np.float64)
    b, c = x.shape[:2]
    xg = x.reshape(b, groups, -1)
    mean = xg.mean(-1, keepdims=True)
    var = ((xg - mean) ** 2).mean(-1, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(b, c, -1)
    y = y * np.asarray(gamma, np.float64)[None, :, None] + np.asarray(beta, np.float64)[None, :, None]
    if act == "silu":
        y = y / (1.0 + np.exp(-y))
    return y.reshape(x.shape)


def layer_norm_ref(x, gamma, beta, eps=1e-5):
    """float64 NumPy LayerNorm over the last dim: the reference."""
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)


#: outputs are O(1) after normalization. fp32: float32 sums over up to ~1e5 elements give
#: ~1e-6 relative statistics, 1e-4 absolute leaves margin. fp16: inputs and outputs rounded to
#: half (2^-11 ~ 4.9e-4 relative of values up to ~4 sigma), hence 1e-2 absolute.
TOLERANCE = {"fp32": (1e-4, 1e-5), "fp16": (1e-2, 1e-3)}


def _round(a, precision):
    return a.astype(np.float16).astype(np.float64) if precision == "fp16" else a


def _gn_case(variant, batch, channels, h, w, groups, act, precision):
    shape = dict(batch=batch, channels=channels, hw=h * w, groups=groups, act=act)

    def make(rng):
        return {"x": rng.standard_normal((batch, channels, h, w), np.float32) * 2 + 0.5,
                "gamma": rng.standard_normal(channels, np.float32),
                "beta": rng.standard_normal(channels, np.float32)}

    def run(rt, i):
        return group_norm_host(rt, i["x"], i["gamma"], i["beta"], groups, act=act,
                               variant=variant, precision=precision)

    def ref(i):
        return group_norm_ref(*(_round(i[n], precision) for n in ("x", "gamma", "beta")),
                              groups, act=act)

    return BenchCase("group_norm", variant, shape, precision, make, run, ref,
                     TOLERANCE[precision], costs("group_norm", variant, precision=precision, **shape))


def _ln_case(rows, dim, precision):
    shape = dict(rows=rows, dim=dim)

    def make(rng):
        return {"x": rng.standard_normal((rows, dim), np.float32),
                "gamma": rng.standard_normal(dim, np.float32),
                "beta": rng.standard_normal(dim, np.float32)}

    def run(rt, i):
        return layer_norm_host(rt, i["x"], i["gamma"], i["beta"], precision=precision)

    def ref(i):
        return layer_norm_ref(*(_round(i[n], precision) for n in ("x", "gamma", "beta")))

    return BenchCase("layer_norm", "rowwise", shape, precision, make, run, ref,
                     TOLERANCE[precision], costs("layer_norm", "rowwise", precision=precision, **shape))


def bench_cases(quick: bool) -> list[BenchCase]:
    """SD1.4 GroupNorms (32 groups; 320 ch at 64x64, 640 at 32x32, 1280 at 16x16 and 8x8, the
    VAE's 512 ch at 64x64 and 128 ch at 512x512 with SiLU) and the LayerNorms of the UNet
    transformer (2x4096 tokens x 320) and CLIP (77 x 768); --quick shrinks the spatial size."""
    if quick:
        gn = [(1, 64, 8, 8, 32, "silu"), (1, 96, 5, 7, 32, None)]
        ln = [(77, 64), (33, 320)]
    else:
        gn = [(2, 320, 64, 64, 32, "silu"), (2, 640, 32, 32, 32, "silu"),
              (2, 1280, 16, 16, 32, "silu"), (2, 1280, 8, 8, 32, None),
              (1, 512, 64, 64, 32, "silu"), (1, 128, 512, 512, 32, "silu")]
        ln = [(8192, 320), (77, 768)]
    cases = []
    for precision in ("fp32", "fp16"):
        for s in gn:
            for v in VARIANTS:
                cases.append(_gn_case(v, *s, precision))
        for s in ln:
            cases.append(_ln_case(*s, precision))
    return cases
