"""conv2d variants (opencl/conv.cl + the tiled GEMM of opencl/gemm.cl), NCHW at the API.

Variants:
- direct: one work-item per output pixel and block of COB output channels, work-groups over the
  flattened pixel index oy*Wo+ox of one image; the input is streamed once per channel block, the
  block's weights once per work-group (staged through local memory CB input channels at a time).
  COB (4, 8 or 16) and the work-group size (256, 128 or 64 pixels, COB x size = 1024 lane-channels
  in every configuration) are chosen per call by `direct_config` so channel blocks and pixel
  groups leave few lanes idle (cout=4 -> 4 channels x 256 pixels; an 8x8 image -> 16 x 64). Any
  k, stride, asymmetric padding.
- im2col_gemm: an im2col dispatch writes the column matrix (N, C*k*k, Ho*Wo) (workspace), then the
  tiled GEMM multiplies W (cout x cin*k*k) by it with bias. A 1x1, stride-1, unpadded conv skips
  im2col (the input already is the column matrix): this is how every 1x1 conv runs.
- winograd_f{2,4,6} (3x3, stride 1, padding 1): input transform V = B^T d B per (tile, channel)
  into alpha^2 matrices (alpha = m + 2; V is (alpha^2, C, tiles), workspace), batched GEMM
  M[xi] = U[xi] @ V[xi] (M is (alpha^2, K, tiles), workspace), output transform
  Y = A^T M A + bias. The weight transform U = G g G^T ((alpha^2, K, C)) runs once at load time
  (`prepare`) and is not among the timed dispatches.

Arithmetic: with fp16 storage on a device with native half, conv_direct, the Winograd input and
output transforms and the GEMMs run half arithmetic (KernelCost.half_arith; opencl/conv.cl,
sdsim/sim/conv.py and sdsim/sim/winograd.py say where they round); im2col only moves data, and
the load-time weight transform stays float.

Byte-counting rule: an operand is charged once per time the kernel's tiling streams it; window
gathers that re-read neighbouring elements inside one work-group (conv windows, Winograd tile
halos) are charged at their unique footprint, as caches serve the overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from math import ceil

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Launch, Variant, register, sweep, tuning
from sdsim.kernels import gemm as gemm_mod
from sdsim.kernels.winograd_transforms import matrices
from sdsim.ops import conv_out_hw, padding4
from sdsim.precision import BYTES, stored

#: (output channels per work-item, work-group size in pixels) configurations of the direct
#: kernel: each work-group computes 1024 (pixel, channel) outputs, but a work-item's serial step
#: (one input channel tap) is COB dependent multiply-adds, so a step with few work-groups in
#: flight takes longer at COB 16 than at 4 (on the H200, 0.105 vs 0.05 us): each blocking has its
#: own timing coefficients (DirectConfig.model_key)
DIRECT_BLOCKS = ((16, 64), (8, 128), (4, 256))
#: input channels x output channels of the weights the direct kernel stages in local memory at a
#: time (CB = DIRECT_STAGE // COB input channels: 64 * k * k floats of local memory)
DIRECT_STAGE = 64
WINOGRAD_M = {"winograd_f2": 2, "winograd_f4": 4, "winograd_f6": 6}


def _is_pointwise(k, stride, padding) -> bool:
    return k == 1 and stride == 1 and padding4(padding) == (0, 0, 0, 0)


# --- launch geometry (read by the launchers and the costs alike) -------------------------------
@dataclass(frozen=True)
class DirectConfig:
    """The blocking of one direct-conv call: output channels per work-item (`cob`), input
    channels staged in local memory at a time (`cb`), work-group size in pixels (`group`)."""

    cob: int
    cb: int
    group: int

    def defines(self, k: int) -> dict:
        return {"COB": self.cob, "CB": self.cb, "KS": k}

    @property
    def model_key(self) -> str:
        """The timing model's key of this blocking: a work-item's serial step is COB
        multiply-adds per input load, so each blocking is timed as its own kernel body."""
        return f"conv_direct.c{self.cob}x{self.group}"


@lru_cache(maxsize=1024)
def direct_config(batch, cin, cout, ho, wo, k) -> DirectConfig:
    """The DIRECT_BLOCKS entry launching the fewest work-groups (each does the same work, so
    that is the fewest idle lanes: channels past cout in the last block, pixels past Ho*Wo in
    the last group), ties going to the most output channels per work-item (the most
    multiply-adds per input load). cout=4 at 64x64 -> 4 channels x 256 pixels; 8 channels ->
    8 x 128; an 8x8 image, or any cout > 8 whose image fills 64-pixel groups as well as larger
    ones -> 16 x 64. Shared by the launcher and the cost, so they always agree."""
    def work_groups(block):
        cob, group = block
        return batch * ceil(ho * wo / group) * ceil(cout / cob)

    cob, group = min(DIRECT_BLOCKS, key=work_groups)   # min keeps the first of equals
    return DirectConfig(cob, max(1, DIRECT_STAGE // cob), group)


def direct_launch(batch, cin, cout, ho, wo, k) -> Launch:
    """Work-groups of `group` consecutive output pixels (oy*Wo+ox) of one image and COB output
    channels, one work-item per pixel; each walks cin * k * k taps (serial steps). Useful lanes:
    the pixels times the share of the COB channels below cout."""
    c = direct_config(batch, cin, cout, ho, wo, k)
    return Launch.grid((ho * wo, batch * ceil(cout / c.cob)), (c.group, 1), steps=cin * k * k,
                       useful=batch * ho * wo * cout / c.cob)


def taps_read(size, out, k, stride, pad) -> int:
    """Input rows (or columns) of `size` that `out` output rows (columns) read through windows of
    k at `stride` after `pad` leading padding: the padding is not read, and when stride > k the
    rows between windows are not either."""
    if k >= stride:   # windows overlap or touch: one interval
        return max(0, min(size - 1, (out - 1) * stride - pad + k - 1) - max(0, -pad) + 1)
    return sum(max(0, min(size - 1, o * stride - pad + k - 1) - max(0, o * stride - pad) + 1)
               for o in range(out))


def im2col_launch(batch, cin, k, ho, wo) -> Launch:
    return Launch.grid((ho * wo, cin * k * k, batch), (64, 4, 1))


def winograd_launch(batch, channels, ho, wo, m) -> Launch:
    """One work-item per (tile, channel) of the input or output transform, in work-groups of the
    device's tuned shape (tiles along a row x rows of tiles; tuning.WINO_GROUPS)."""
    return Launch.grid((ceil(wo / m), ceil(ho / m), batch * channels),
                       (*tuning.current().wino_group, 1))


# --- cost ---------------------------------------------------------------------------------------
def direct_cost(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    """One dispatch. Reads: the input once per channel block (the elements the windows cover;
    halos that neighbouring work-groups share are served by caches, as im2col and the Winograd
    input transform count them), the weights (cin * k * k per channel below cout) and bias once
    per work-group; writes the output once. FLOPs: the multiply-adds of the convolution
    (padding taps multiply a zero, counted as the im2col GEMM counts them) and the bias add."""
    e = BYTES[precision]
    pt, _, pl, _ = padding4(padding)
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    c = direct_config(batch, cin, cout, ho, wo, k)
    pixel_groups = ceil(ho * wo / c.group)
    flops = 2.0 * batch * cout * ho * wo * cin * k * k + batch * cout * ho * wo
    plane = taps_read(h, ho, k, stride, pt) * taps_read(w, wo, k, stride, pl)
    read = (batch * ceil(cout / c.cob) * cin * plane
            + batch * pixel_groups * (cout * cin * k * k + cout))
    return [KernelCost("conv_direct", "conv", flops, float(read * e),
                       float(batch * cout * ho * wo * e),
                       launch=direct_launch(batch, cin, cout, ho, wo, k), model=c.model_key,
                       half_arith=True)]


def im2col_gemm_cost(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    e = BYTES[precision]
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    out = []
    if not _is_pointwise(k, stride, padding):
        col = batch * cin * k * k * ho * wo
        out.append(KernelCost("im2col", "elementwise", 0.0, float(batch * cin * h * w * e),
                              float(col * e), workspace=col * e,
                              launch=im2col_launch(batch, cin, k, ho, wo)))
    out.extend(gemm_mod.gemm_cost("gemm_bias", batch, cout, cin * k * k, ho * wo, precision,
                                  bias=True, caller="im2col_gemm"))
    return out


def winograd_cost(m, batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
    if k != 3 or stride != 1:
        raise ValueError(f"Winograd F({m}x{m},3x3) needs k=3 and stride 1 (got k={k}, "
                         f"stride={stride})")
    e = BYTES[precision]
    a = m + 2
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    p = batch * ceil(ho / m) * ceil(wo / m)
    v = a * a * cin * p
    mm = a * a * cout * p
    *body, last = gemm_mod.gemm_cost(f"wino_gemm_f{m}", a * a, cout, cin, p, precision,
                                     caller="wino_gemm", cold_b=True)
    return [
        KernelCost(f"wino_input_transform_f{m}", "winograd_transform",
                   4.0 * a ** 3 * cin * p, float(batch * cin * h * w * e), float(v * e),
                   workspace=v * e, launch=winograd_launch(batch, cin, ho, wo, m),
                   half_arith=True),
        *body, replace(last, workspace=mm * e),
        KernelCost(f"wino_output_transform_f{m}", "winograd_transform",
                   (2.0 * (m * a * a + m * m * a) + m * m) * cout * p,
                   float((mm + cout) * e), float(batch * cout * ho * wo * e),
                   launch=winograd_launch(batch, cout, ho, wo, m), half_arith=True),
    ]


# --- device ------------------------------------------------------------------------------------
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


def winograd_input(rt, x, n, cin, h, wd, m, precision="fp32"):
    """V (alpha^2, cin, tiles) = B^T d B of x (n, cin, h, wd) (stride 1, padding 1):
    (v buffer, event)."""
    a = m + 2
    th, tw = -(-h // m), -(-wd // m)
    v = rt.alloc(a * a * cin * n * th * tw, precision, f"winograd F{m} input tiles")
    kern = rt.kernel("conv", "wino_input", precision, {"ALPHA": a})
    ev = winograd_launch(n, cin, h, wd, m).enqueue(
        rt, kern, x, v, _consts(rt, m)[2], np.int32(n), np.int32(cin), np.int32(h),
        np.int32(wd), np.int32(th), np.int32(tw))
    return v, ev


def winograd_output(rt, mm, b, y, n, cout, ho, wo, m, precision="fp32", wait_for=None):
    """y (n, cout, ho, wo) = A^T M A + b into buffer y from M (alpha^2, cout, tiles); b may be
    None: the event."""
    th, tw = -(-ho // m), -(-wo // m)
    kern = rt.kernel("conv", "wino_output", precision, {"ALPHA": m + 2})
    bias = b if b is not None else gemm_mod.dummy(rt, precision)
    return winograd_launch(n, cout, ho, wo, m).enqueue(
        rt, kern, mm, bias, y, _consts(rt, m)[0], np.int32(n), np.int32(cout), np.int32(ho),
        np.int32(wo), np.int32(th), np.int32(tw), np.int32(b is not None), wait_for=wait_for)


def conv2d(rt, x, w, b, n, cin, h, wd, cout, k=3, stride=1, padding=1, *, variant="direct",
           precision="fp32", u=None, out=None):
    """y (n, cout, Ho, Wo) = conv(x (n, cin, h, wd), w (cout, cin, k, k)) + b (b may be None) on
    device buffers: returns (y buffer, events of the timed dispatches). For Winograd pass
    `u=winograd_weights(...)[0]` to transform the weights once, at load time, as a deployment
    would (when omitted they are transformed on the fly, outside the returned events)."""
    pt, pb, pl, pr = padding4(padding)
    ho, wo = conv_out_hw(h, wd, k, stride, (pt, pb, pl, pr))
    if ho <= 0 or wo <= 0:
        raise SdsimError(f"conv2d: {h}x{wd} input too small for k={k}, padding={padding}")
    y = out if out is not None else rt.alloc(n * cout * ho * wo, precision, "conv output")
    i32 = np.int32
    has_bias = i32(b is not None)
    bias = b if b is not None else gemm_mod.dummy(rt, precision)
    if variant == "direct":
        cfg = direct_config(n, cin, cout, ho, wo, k)
        kern = rt.kernel("conv", "conv_direct", precision, cfg.defines(k))
        ev = direct_launch(n, cin, cout, ho, wo, k).enqueue(
            rt, kern, x, w, bias, y, i32(n), i32(cin), i32(h), i32(wd), i32(cout), i32(ho),
            i32(wo), i32(stride), i32(pt), i32(pl), has_bias)
        return y, [ev]
    if variant == "im2col_gemm":
        evs = []
        rows, npix = cin * k * k, ho * wo
        if _is_pointwise(k, stride, padding):
            col = x
        else:
            kern = rt.kernel("conv", "im2col", precision)
            col = rt.alloc(n * rows * npix, precision, "im2col workspace")
            evs.append(im2col_launch(n, cin, k, ho, wo).enqueue(
                rt, kern, x, col, i32(n), i32(cin), i32(h), i32(wd), i32(ho), i32(wo), i32(k),
                i32(stride), i32(pt), i32(pl)))
        evs.extend(gemm_mod.gemm(rt, w, col, y, cout, npix, rows, batch=n,
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
        p = n * -(-ho // m) * -(-wo // m)
        if u is None:
            u = winograd_weights(rt, w, cout, cin, m, precision)[0]
        v, e1 = winograd_input(rt, x, n, cin, h, wd, m, precision)
        mm = rt.alloc(a * a * cout * p, precision, f"winograd F{m} gemm output")
        e2 = gemm_mod.gemm(rt, u, v, mm, cout, p, cin, batch=a * a,
                           strides_a=(cout * cin, cin, 1), strides_b=(cin * p, p, 1),
                           strides_c=(cout * p, p, 1), precision=precision, wait_for=[e1])
        e3 = winograd_output(rt, mm, b, y, n, cout, ho, wo, m, precision, wait_for=e2[-1:])
        return y, [e1, *e2, e3]
    raise SdsimError(f"unknown conv2d variant '{variant}'; expected one of "
                     f"{', '.join(r.name for r in RECORDS)}")


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
            patch = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride,
                       kx:kx + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, ky, kx], optimize=True)
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


# --- the records -------------------------------------------------------------------------------
def _launch(variant):
    def launch(rt, a, ins, p, out, precision):
        return conv2d(rt, ins[0], p["w"], p.get("b"), a["batch"], a["cin"], a["h"], a["w"],
                      a["cout"], a["k"], a["stride"], a["padding"], variant=variant,
                      precision=precision, u=p.get("u"), out=out)[1]
    return launch


def _operands(a):
    ho, wo = conv_out_hw(a["h"], a["w"], a["k"], a["stride"], a["padding"])
    return ([a["batch"] * a["cin"] * a["h"] * a["w"]],
            {"w": a["cout"] * a["cin"] * a["k"] ** 2, "b": a["cout"]},
            a["batch"] * a["cout"] * ho * wo)


def _prepare(m):
    def prepare(rt, a, params, precision):
        u, _ = winograd_weights(rt, params["w"], a["cout"], a["cin"], m, precision)
        return dict(params, u=u)
    return prepare


def _make_inputs(a, rng):
    """Unit-variance input, weights scaled by 1/sqrt(fan_in), unit bias."""
    fan = a["cin"] * a["k"] ** 2
    return {"ins": [rng.standard_normal((a["batch"], a["cin"], a["h"], a["w"]),
                                        dtype=np.float32)],
            "params": {"w": (rng.standard_normal((a["cout"], a["cin"], a["k"], a["k"]))
                             / np.sqrt(fan)).astype(np.float32),
                       "b": rng.standard_normal(a["cout"], dtype=np.float32)}}


def _reference(a, i, precision):
    w, b = (stored(i["params"][r], precision) for r in ("w", "b"))
    return conv_ref(stored(i["ins"][0], precision), w, b, a["stride"], a["padding"])


def _shape(batch, cin, cout, hw, k=3, stride=1, padding=1):
    return dict(batch=batch, cin=cin, cout=cout, h=hw, w=hw, k=k, stride=stride,
                padding=padding4(padding))


# Bench tolerance (atol, rel to max|ref|) for unit-variance inputs and weights scaled by
# 1/sqrt(fan_in). fp32: float accumulation over cin*9 <= 2880 terms and the Winograd transforms
# (|B^T| entries up to 21/4 for F6, cancelling sums) stay below 1e-4 of the output scale (F6 is
# the worst, measured ~1e-5). fp16: storage rounding of transformed tiles (V, U, M) and output at
# 2^-11 relative each; F6 amplifies it by the transform norms (the sim measures errors ~1e-2 of
# the output scale), so 4e-2 for Winograd, 1e-2 otherwise.
_TOL = {"fp32": (1e-5, 1e-4), "fp16": (1e-3, 1e-2)}
_WINO_TOL = {"fp32": (1e-5, 3e-4), "fp16": (1e-3, 4e-2)}

# Bench: tiny shapes for Oclgrind, small ones for --quick; SD1.4's UNet 64x64 320-channel resnet conv, 32x32 640,
# the downsampler and a 1x1 shortcut for the full run. Calibration: shapes off SD1.4's.
_BENCH_3X3 = {"tiny": [_shape(1, 3, 5, 0) | dict(h=7, w=6)],
              "quick": [_shape(1, 16, 20, 0) | dict(h=19, w=17)],
              "full": [_shape(1, 320, 320, 64), _shape(1, 640, 640, 32)]}
_BENCH_OTHER = {"tiny": [_shape(2, 2, 3, 0, stride=2, padding=(0, 1, 0, 1)) | dict(h=6, w=5),
                         _shape(1, 3, 4, 0, k=1, padding=0) | dict(h=5, w=3)],
                "quick": [_shape(1, 16, 16, 18, stride=2, padding=(0, 1, 0, 1)),
                          _shape(1, 24, 16, 9, k=1, padding=0)],
                "full": [_shape(1, 320, 320, 64, stride=2),
                         _shape(1, 640, 320, 64, k=1, padding=0)]}

# The direct kernel's per-call blockings that the shapes above do not reach: 4 output channels x
# 256 pixels (a latent's 4 channels) and 8 x 128, with partial pixel groups and padding; an 8x8
# image in 16 x 64 work-groups (SD1.4's deepest UNet level).
_BENCH_DIRECT = {"tiny": [_shape(1, 3, 4, 0) | dict(h=13, w=11),
                          _shape(1, 2, 8, 0, padding=(1, 0, 0, 1)) | dict(h=13, w=12)],
                 "quick": [_shape(2, 32, 4, 24), _shape(2, 64, 64, 8)]}


def _conv_point(batch, cin, cout, hw, k=3, stride=1):
    return _shape(batch, cin, cout, hw, k=k, stride=stride, padding=(k - 1) // 2)


# Calibration sweeps (synthetic, channel counts and sizes off SD1.4's): output channels from a
# handful (a latent's 4) to many, spatial sizes from 6 to 128, so work-groups span one to many
# waves and the serial steps (cin x taps) span 1 to thousands.
_CHANNELS = [3, 5, 12, 24, 48, 96, 160, 224, 384, 576, 896]
_CAL_3X3 = {
    "quick": sweep(_conv_point, 6, seed=1, batch=[1, 2], cin=[8, 24, 48], cout=[5, 24, 48],
                   hw=[6, 12, 20]),
    "full": sweep(_conv_point, 44, seed=1, batch=[1, 2], cin=_CHANNELS, cout=_CHANNELS,
                  hw=[6, 10, 20, 28, 40, 56, 72, 100, 128]),
    # more draws of the same kind, for kernel bodies the sweep leaves short of cases
    # (sdsim.calibration.sweep.top_up)
    "pool": sweep(_conv_point, 300, seed=40, batch=[1, 2], cin=_CHANNELS, cout=_CHANNELS,
                  hw=[6, 10, 20, 28, 40, 56, 72, 100, 128]),
}
_CAL_STRIDED = {
    "quick": [_conv_point(2, 24, 24, 12, stride=2)],
    "full": sweep(lambda **a: _conv_point(**a, stride=2), 10, seed=2, batch=[1, 2],
                  cin=[48, 96, 224, 384, 576], cout=[48, 96, 224, 384], hw=[20, 40, 72, 128]),
}
_CAL_POINTWISE = {
    "quick": [_conv_point(2, 48, 24, 10, k=1)],
    "full": sweep(lambda **a: _conv_point(**a, k=1), 12, seed=3, batch=[1, 2],
                  cin=[24, 96, 224, 576, 896], cout=[24, 96, 224, 576, 896],
                  hw=[10, 28, 56, 100]),
}
# Channel counts past 1024 at small images (SD's deepest levels run 1280-2560 channels at 8x8
# to 32x32 latents): hundreds of work-groups each walking a hundred or more k-steps, a regime the
# shapes above reach only in part.
_DEEP = [1152, 1536, 1792, 2304]
_CAL_DEEP = {
    "quick": [],
    "full": sweep(_conv_point, 16, seed=13, batch=[1, 2], cin=_DEEP, cout=_DEEP,
                  hw=[6, 10, 14, 18, 24, 28]),
}
_CAL_DEEP_POINTWISE = {
    "quick": [],
    "full": sweep(lambda **a: _conv_point(**a, k=1), 10, seed=14, batch=[1, 2], cin=_DEEP,
                  cout=[576] + _DEEP, hw=[6, 10, 14, 18, 24])
    # and at images of 28 to 72 a side, as SD's 1x1 skip convs run 1000-2500 input channels at
    # 32x32 and 64x64 latents: a K of 60-160 k-steps over an activation matrix of several MB,
    # which the H200's fp16 fit, with no point there, priced 11-14% short
    + sweep(lambda **a: _conv_point(**a, k=1), 10, seed=21, batch=[1, 2], cin=_DEEP,
            cout=[384, 576, 896, 1152], hw=[28, 40, 56, 72]),
}
# The direct kernel's narrower blockings (4 and 8 output channels per work-item, chosen for
# cout <= 8): enough points for each blocking's own coefficients.
_CAL_DIRECT_BLOCKS = {
    "quick": [],
    "full": [*sweep(_conv_point, 16, seed=12, batch=[1, 2], cin=[12, 48, 160, 384, 896, 1152],
                    cout=[1, 2, 3, 4], hw=[20, 40, 72, 100, 128]),
             *sweep(_conv_point, 12, seed=15, batch=[1, 2], cin=[12, 48, 160, 384, 896, 1152],
                    cout=[5, 6, 7, 8], hw=[10, 20, 40, 72, 100, 128]),
             # images of 256 and 384 a side, as a decoder's output conv runs: thousands of
             # work-groups, where the draws above stop at a few hundred
             *sweep(_conv_point, 4, seed=19, batch=[1], cin=[48, 96, 160], cout=[1, 2, 3, 4],
                    hw=[256, 384])],
}
# Large images (128 to 512 pixels a side) with a few hundred channels, as SD1.4's VAE decoder
# runs its 3x3 and 1x1 convs: tens of thousands of work-groups with every lane of a tile row
# active (the sizes above leave a quarter or more of a Winograd transform's lanes idle).
_CAL_LARGE = {
    "quick": [],
    "full": sweep(_conv_point, 8, seed=16, batch=[1], cin=[24, 48, 96, 160, 224, 384],
                  cout=[24, 48, 96, 160, 224, 384], hw=[128, 192, 256, 384, 512]),
}
_CAL_LARGE_POINTWISE = {
    "quick": [],
    "full": sweep(lambda **a: _conv_point(**a, k=1), 6, seed=17, batch=[1],
                  cin=[48, 96, 224, 384], cout=[24, 96, 224, 384], hw=[192, 256, 384, 512])
    # more input channels (a VAE decoder's skip convs take 512 to 256 and 256 to 128 at 256 and
    # 512 a side)
    + sweep(lambda **a: _conv_point(**a, k=1), 4, seed=22, batch=[1], cin=[448, 576, 768],
            cout=[96, 160, 224, 384], hw=[192, 320, 448]),
}
# Winograd's batched GEMM over large images at batch 2 with ~100-160 channels: tens of waves
# of its 128x128 tiles, each walking 12-20 k-steps (the points above pair many waves with 20+
# k-steps, or few k-steps with few waves; a VAE decoder's last levels run 35 waves x 16 k-steps)
_CAL_WINOGRAD_WIDE = sweep(_conv_point, 8, seed=18, batch=[2], cin=[96, 112, 144, 160],
                           cout=[96, 112, 144, 160], hw=[256, 320, 384, 448])
# Input channels that are powers of two, as SD1.4's VAE decoder runs (128, 256, 512): the input
# transform writes each of its 36 planes C x tiles elements apart, a power of two where the side
# is one too (the VAE's 128 to 512). The draws above never use a power-of-two channel count, and
# the H100's fp16 fit priced the VAE's transforms at 512 a side 13-23% short, where a 224-channel
# point of the same size fitted within 5%; with these cases the H100's transforms in its VAE run
# came within 10% for 68% of their time against 54% refitted without them. The output channels
# keep each shape off SD's own.
_CAL_WINOGRAD_POW2 = [_conv_point(b, cin, cout, hw) for b, cin, cout, hw in (
    (1, 128, 224, 512), (1, 256, 224, 448), (1, 128, 160, 448), (2, 64, 160, 448),
    (1, 256, 384, 320), (2, 128, 384, 320), (1, 64, 96, 320), (1, 512, 384, 192),
    (2, 256, 96, 160), (1, 512, 224, 96))]
_CAL_WINOGRAD = {
    "quick": _CAL_3X3["quick"][:4],
    "full": sweep(_conv_point, 30, seed=4, batch=[1, 2], cin=_CHANNELS[3:], cout=_CHANNELS[3:],
                  hw=[6, 10, 20, 28, 40, 56, 72, 100]) + _CAL_DEEP["full"] + _CAL_LARGE["full"]
    + _CAL_WINOGRAD_WIDE + _CAL_WINOGRAD_POW2,
    "pool": _CAL_3X3["pool"],
}


def _im2col(x, k, stride, padding):
    """The im2col kernel's column matrix (N, C k k, Ho Wo) of host x (N, C, H, W): row
    (c k + ky) k + kx, zeros on the padding."""
    n, c, h, wd = x.shape
    pt, pb, pl, pr = padding4(padding)
    ho, wo = conv_out_hw(h, wd, k, stride, (pt, pb, pl, pr))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols = [xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            for ky in range(k) for kx in range(k)]
    return np.stack(cols, 2).reshape(n, c * k * k, ho * wo)


def _simulate(variant):
    def simulate(a, ins, p, arith):
        from sdsim.sim import conv as sim_conv
        from sdsim.sim import winograd as sim_wino

        x = ins[0].reshape(a["batch"], a["cin"], a["h"], a["w"])
        w, b = p["w"].reshape(a["cout"], a["cin"], a["k"], a["k"]), p.get("b")
        if variant == "direct":
            return sim_conv.conv_direct(x, w, b, a["stride"], a["padding"], arith=arith)
        if variant == "im2col_gemm":
            col = _im2col(x, a["k"], a["stride"], a["padding"])
            return gemm_mod.simulate_gemm(w.reshape(1, a["cout"], -1), col, arith, bias=b,
                                          bias_mode=2)
        m = WINOGRAD_M[variant]
        tiles = a["batch"] * -(-a["h"] // m) * -(-a["w"] // m)
        kslice, k_step = gemm_mod.k_walk((m + 2) ** 2, a["cout"], a["cin"], tiles)
        return sim_wino.conv3x3(x, w, b, m, "fp16", np.float16, arith, kslice, k_step)
    return simulate


def _join(*sets):
    return {q: [s for d in sets for s in d.get(q, ())] for q in sets[0]}


def _record(name, cost, option, tol, bench, cal, prepare=None):
    return Variant("conv2d", name, cost, _launch(name), _operands, _make_inputs, _reference,
                   tol, bench, cal, ("conv3x3", option), prepare, _simulate(name))


def _winograd_record(name, m):
    def cost(batch, cin, cout, h, w, k=3, stride=1, padding=1, precision="fp32"):
        return winograd_cost(m, batch, cin, cout, h, w, k, stride, padding, precision)
    cost.__doc__ = f"Winograd F({m}x{m},3x3): input transform, batched gemm, output transform."
    return _record(name, cost, name, _WINO_TOL, _BENCH_3X3, _CAL_WINOGRAD, _prepare(m))


#: the variant every 1x1 stride-1 unpadded conv runs as, whatever the switches (a matrix multiply)
POINTWISE = "im2col_gemm"

RECORDS = (
    _record("direct", direct_cost, "direct", _TOL, _join(_BENCH_3X3, _BENCH_OTHER, _BENCH_DIRECT),
            _join(_CAL_3X3, _CAL_STRIDED, _CAL_DIRECT_BLOCKS, _CAL_DEEP)),
    _record("im2col_gemm", im2col_gemm_cost, "im2col", _TOL, _join(_BENCH_3X3, _BENCH_OTHER),
            _join(_CAL_3X3, _CAL_STRIDED, _CAL_POINTWISE, _CAL_DEEP_POINTWISE,
                  _CAL_LARGE_POINTWISE)),
    *(_winograd_record(name, m) for name, m in WINOGRAD_M.items()),
)
register(*RECORDS)
