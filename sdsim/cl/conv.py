"""conv2d on a device (opencl/conv.cl + the gemm of opencl/gemm.cl), NCHW at the API.

Variants (the names of sdsim.kernels.conv): "direct" (any k, stride, asymmetric padding),
"im2col_gemm" (any k, stride, padding; a 1x1 stride-1 unpadded conv skips im2col),
"winograd_f2" / "winograd_f4" / "winograd_f6" (3x3, stride 1, padding 1).
Internal layouts: the im2col column matrix is (N, C*k*k, Ho*Wo); Winograd keeps U as
(alpha^2, K, C), V as (alpha^2, C, tiles) and M as (alpha^2, K, tiles).

`conv2d(rt, x, w, b, ...)` works on device buffers and returns (y buffer, events of the timed
dispatches); for Winograd pass `u=winograd_weights(...)[0]` to transform the weights once, at load
time, as a deployment would (when omitted they are transformed on the fly, and that dispatch is not
among the returned events). `conv2d_host` is the NumPy-array convenience for tests and bench.
"""

from __future__ import annotations

import numpy as np

from sdsim.cl import gemm as gemm_mod
from sdsim.cl.bench import BenchCase
from sdsim.errors import SdsimError
from sdsim.kernels import costs
from sdsim.kernels.conv import CB, COB, WINOGRAD_M
from sdsim.ops import conv_out_hw, padding4
from sdsim.sim.winograd import matrices

VARIANTS = ("direct", "im2col_gemm", *WINOGRAD_M)


def _consts(rt, m):
    """Device copies (float32) of the F(m x m, 3x3) matrices AT, G, BT, cached on the runtime."""
    return rt.constant(("winograd", m), lambda: tuple(
        rt.to_device(a.astype(np.float32), "fp32", f"winograd F{m}") for a in matrices(m)))


def winograd_weights(rt, w, cout, cin, m, precision="fp32"):
    """U (alpha^2, cout, cin) = G g G^T of 3x3 weights w (cout, cin, 3, 3): (u buffer, [event])."""
    a = m + 2
    kern = rt.kernel("conv", "wino_weight", precision, {"ALPHA": a})
    u = rt.alloc(a * a * cout * cin, precision, f"winograd F{m} weights")
    g = _consts(rt, m)[1]
    ev = rt.launch(kern, (cin, cout), rt.local_size(kern, (16, 16)), w, u, g,
                   np.int32(cout), np.int32(cin))
    return u, [ev]


def conv2d(rt, x, w, b, n, cin, h, wd, cout, k=3, stride=1, padding=1, *, variant="direct",
           precision="fp32", u=None, out=None):
    """y (n, cout, Ho, Wo) = conv(x (n, cin, h, wd), w (cout, cin, k, k)) + b (b may be None)."""
    pt, pb, pl, pr = padding4(padding)
    ho, wo = conv_out_hw(h, wd, k, stride, (pt, pb, pl, pr))
    if ho <= 0 or wo <= 0:
        raise SdsimError(f"conv2d: {h}x{wd} input too small for k={k}, padding={padding}")
    y = out if out is not None else rt.alloc(n * cout * ho * wo, precision, "conv output")
    i32 = np.int32
    has_bias = i32(b is not None)
    bias = b if b is not None else gemm_mod.dummy(rt, precision)
    if variant == "direct":
        kern = rt.kernel("conv", "conv_direct", precision, {"COB": COB, "CB": CB, "KS": k})
        ev = rt.launch(kern, (wo, ho, n * -(-cout // COB)), rt.local_size(kern, (16, 16, 1)),
                       x, w, bias, y, i32(n), i32(cin), i32(h), i32(wd), i32(cout), i32(ho),
                       i32(wo), i32(stride), i32(pt), i32(pl), has_bias)
        return y, [ev]
    if variant == "im2col_gemm":
        evs = []
        rows, npix = cin * k * k, ho * wo
        if k == 1 and stride == 1 and (pt, pb, pl, pr) == (0, 0, 0, 0):
            col = x
        else:
            kern = rt.kernel("conv", "im2col", precision)
            col = rt.alloc(n * rows * npix, precision, "im2col workspace")
            evs.append(rt.launch(kern, (npix, rows, n), rt.local_size(kern, (64, 4, 1)), x, col,
                                 i32(n), i32(cin), i32(h), i32(wd), i32(ho), i32(wo), i32(k),
                                 i32(stride), i32(pt), i32(pl)))
        evs.append(gemm_mod.gemm(rt, w, col, y, cout, npix, rows, batch=n,
                                 strides_a=(0, rows, 1), strides_b=(rows * npix, npix, 1),
                                 strides_c=(cout * npix, npix, 1), bias=b,
                                 bias_mode=2 if b is not None else 0, precision=precision,
                                 wait_for=evs or None))
        return y, evs
    if variant in WINOGRAD_M:
        m = WINOGRAD_M[variant]
        if k != 3 or stride != 1 or (pt, pb, pl, pr) != (1, 1, 1, 1):
            raise SdsimError(f"conv2d {variant} needs a 3x3 kernel, stride 1 and padding 1 "
                             f"(got k={k}, stride={stride}, padding={padding})")
        a = m + 2
        th, tw = -(-ho // m), -(-wo // m)
        p = n * th * tw
        at, _, bt = _consts(rt, m)
        if u is None:
            u = winograd_weights(rt, w, cout, cin, m, precision)[0]
        v = rt.alloc(a * a * cin * p, precision, f"winograd F{m} input tiles")
        mm = rt.alloc(a * a * cout * p, precision, f"winograd F{m} gemm output")
        kin = rt.kernel("conv", "wino_input", precision, {"ALPHA": a})
        e1 = rt.launch(kin, (tw, th, n * cin), rt.local_size(kin, (8, 8, 1)), x, v, bt,
                       i32(n), i32(cin), i32(h), i32(wd), i32(th), i32(tw))
        e2 = gemm_mod.gemm(rt, u, v, mm, cout, p, cin, batch=a * a,
                           strides_a=(cout * cin, cin, 1), strides_b=(cin * p, p, 1),
                           strides_c=(cout * p, p, 1), precision=precision, wait_for=[e1])
        kout = rt.kernel("conv", "wino_output", precision, {"ALPHA": a})
        e3 = rt.launch(kout, (tw, th, n * cout), rt.local_size(kout, (8, 8, 1)), mm, bias, y,
                       at, i32(n), i32(cout), i32(ho), i32(wo), i32(th), i32(tw), has_bias,
                       wait_for=[e2])
        return y, [e1, e2, e3]
    raise SdsimError(f"unknown conv2d variant '{variant}'; expected one of {VARIANTS}")


def conv2d_host(rt, x, w, b=None, stride=1, padding=1, *, variant="direct", precision="fp32"):
    """NumPy-array conv2d: returns (y float32 NCHW, events of the timed dispatches)."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    wb = rt.to_device(w, precision, "weight")
    u = None
    if variant in WINOGRAD_M and k == 3:
        u = winograd_weights(rt, wb, cout, cin, WINOGRAD_M[variant], precision)[0]
    y, evs = conv2d(rt, rt.to_device(x, precision, "x"), wb,
                    rt.to_device(b, precision, "bias") if b is not None else None,
                    n, cin, h, wd, cout, k, stride, padding, variant=variant,
                    precision=precision, u=u)
    ho, wo = conv_out_hw(h, wd, k, stride, padding)
    return rt.from_device(y, (n, cout, ho, wo), precision), evs


def conv_ref(x, w, b=None, stride=1, padding=1):
    """Independent float64 conv2d (NCHW) by shifted einsums."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    pt, pb, pl, pr = padding4(padding)
    k = w.shape[2]
    ho, wo = conv_out_hw(x.shape[2], x.shape[3], k, stride, (pt, pb, pl, pr))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, ky, kx], optimize=True)
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


# Bench tolerance (atol, rel to max|ref|) for unit-variance inputs and weights scaled by
# 1/sqrt(fan_in). fp32: float accumulation over cin*9 <= 2880 terms and the Winograd transforms
# (|B^T| entries up to 21/4 for F6, cancelling sums) stay below 1e-4 of the output scale (F6 is
# the worst, measured ~1e-5). fp16: storage rounding of input, weights, transformed tiles (V, U,
# M) and output at 2^-11 relative each; F6 amplifies it by the transform norms (the sim measures
# errors ~1e-2 of the output scale), so 4e-2 for Winograd, 1e-2 otherwise.
TOL = {("fp32", False): (1e-5, 1e-4), ("fp32", True): (1e-5, 3e-4),
       ("fp16", False): (1e-3, 1e-2), ("fp16", True): (1e-3, 4e-2)}


def bench_cases(quick: bool) -> list[BenchCase]:
    """Every conv2d variant at SD1.4 shapes (or small ones if quick), fp32 and fp16."""
    if quick:
        shapes = [dict(batch=1, cin=16, cout=20, h=19, w=17, k=3, stride=1, padding=1)]
        strided = [dict(batch=1, cin=16, cout=16, h=18, w=18, k=3, stride=2,
                        padding=(0, 1, 0, 1))]
        pointwise = [dict(batch=1, cin=24, cout=16, h=9, w=9, k=1, stride=1, padding=0)]
    else:  # UNet 64x64 320-channel resnet conv, 32x32 640, downsampler, 1x1 shortcut
        shapes = [dict(batch=1, cin=320, cout=320, h=64, w=64, k=3, stride=1, padding=1),
                  dict(batch=1, cin=640, cout=640, h=32, w=32, k=3, stride=1, padding=1)]
        strided = [dict(batch=1, cin=320, cout=320, h=64, w=64, k=3, stride=2, padding=1)]
        pointwise = [dict(batch=1, cin=640, cout=320, h=64, w=64, k=1, stride=1, padding=0)]
    cases = []
    for prec in ("fp32", "fp16"):
        for s in shapes:
            for v in VARIANTS:
                cases.append(_case(v, s, prec))
        for s in strided + pointwise:
            for v in ("direct", "im2col_gemm"):
                cases.append(_case(v, s, prec))
    return cases


def _case(variant, s, prec):
    def make(rng):
        fan = s["cin"] * s["k"] ** 2
        return {"x": rng.standard_normal((s["batch"], s["cin"], s["h"], s["w"]), dtype=np.float32),
                "w": (rng.standard_normal((s["cout"], s["cin"], s["k"], s["k"])) /
                      np.sqrt(fan)).astype(np.float32),
                "b": rng.standard_normal(s["cout"], dtype=np.float32)}

    return BenchCase(
        "conv2d", variant, dict(s), prec, make,
        lambda rt, i: conv2d_host(rt, i["x"], i["w"], i["b"], s["stride"], s["padding"],
                                  variant=variant, precision=prec),
        lambda i: conv_ref(i["x"], i["w"], i["b"], s["stride"], s["padding"]),
        TOL[(prec, variant in WINOGRAD_M)], costs("conv2d", variant, precision=prec, **s))
