"""GroupNorm (family "group_norm") and LayerNorm (family "layer_norm"), opencl/norm.cl.

group_norm kwargs: batch, channels, hw, groups, act (None | "silu"), precision.
- "naive": three dispatches with fp32 intermediate tensors (mean, then variance, then
  normalize + affine [+ SiLU]); x is read by each of them.
- "fused": the paper's specialised kernel, one dispatch, one work-group per (batch, group): a
  first sweep accumulates shifted sum and sum of squares in fp32, a second sweep normalizes with
  affine [+ SiLU]. The group slice (channels/groups * hw elements, 160 KiB at SD1.4's 320 ch 64x64
  in fp32) does not fit in local memory, so x is read twice. A slice longer than CHUNK elements
  is split into chunks of one work-group each, in two dispatches (partial sums per chunk, then
  normalize with the slice's sums): the VAE decoder's last blocks (a batch of 1, 32 slices of a
  million elements) otherwise walk 4,096 steps on 32 work-groups, a quarter of an H200's
  compute units, 4x slower than the naive chain's fully parallel normalize.
layer_norm kwargs: rows, dim, precision. "rowwise": one work-group per row; a row (<= a few KiB)
stays in cache between the statistics and normalize sweeps, so x is read once.
Native half (fp16 storage on a device with cl_khr_fp16): the statistics stay float, the normalize
step (affine and SiLU) runs in half (opencl/norm.cl; sdsim/sim/norm.py mirrors it), so the
records of dispatches with a normalize sweep set half_arith.
"""

from __future__ import annotations

from math import ceil

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Launch, Variant, register, sweep
from sdsim.kernels.elementwise import SILU_FLOPS, silu_ref
from sdsim.precision import BYTES, stored

STAT = 4  # per-group statistics are fp32 whatever the storage precision
#: work-group size of the GroupNorm reductions (one work-group per (batch, group)); power of two
WG = 256
#: work-group size of LayerNorm (one work-group per row); power of two
LN_WG = 64
#: local size of the naive chain's normalize pass
NORMALIZE_LOCAL = 256
#: elements per work-group of the fused GroupNorm's split form (64 steps of WG lanes): longer
#: slices are cut into chunks of this many, so the SD1.4 UNet's slices at 512x512 (40,960
#: elements) run on 3 work-groups each and the VAE's (a million) on 64
CHUNK = 16384


def group_launch(groups, n, wg=WG, sweeps=1) -> Launch:
    """One `wg` work-group per group of `n` elements, each work-item striding over it `sweeps`
    times."""
    return Launch.grid((groups * wg,), (wg,), steps=sweeps * ceil(n / wg),
                       useful=groups * min(n, wg), sweeps=sweeps)


def normalize_launch(total) -> Launch:
    return Launch.grid((total,), (NORMALIZE_LOCAL,))


def _normalize_flops(act):
    # (x - mean) * rstd: 2; * gamma + beta: 2; optional SiLU
    return 4 + (SILU_FLOPS if act == "silu" else 0)


def group_norm_naive(batch, channels, hw, groups, precision, act=None):
    b = BYTES[precision]
    n = batch * channels * hw
    ng = batch * groups
    per_group = n // ng
    return [
        KernelCost("gn_mean", "reduction", n, n * b, ng * STAT, workspace=ng * STAT,
                   launch=group_launch(ng, per_group)),
        # (x - mean)^2 accumulated: subtract, multiply-add
        KernelCost("gn_var", "reduction", 3 * n, n * b + ng * STAT, ng * STAT, workspace=ng * STAT,
                   launch=group_launch(ng, per_group)),
        KernelCost("gn_normalize", "elementwise", _normalize_flops(act) * n + 2 * ng,
                   n * b + 2 * ng * STAT + 2 * channels * b, n * b, launch=normalize_launch(n),
                   model=_body("gn_normalize", act), half_arith=True),
    ]


def splits(per_group: int) -> int:
    """Chunks of the fused GroupNorm's split form per slice of `per_group` elements (1: the
    one-dispatch kernel)."""
    return max(1, ceil(per_group / CHUNK))


def group_norm_fused(batch, channels, hw, groups, precision, act=None):
    b = BYTES[precision]
    n = batch * channels * hw
    ng = batch * groups
    per_group = n // ng
    s = splits(per_group)
    if s == 1:
        # sweep 1: shift-subtract, add, multiply-add per element; sweep 2: normalize
        return [KernelCost("gn_fused", "reduction", (4 + _normalize_flops(act)) * n,
                           2 * n * b + 2 * channels * b, n * b,
                           launch=group_launch(ng, per_group, sweeps=2),
                           model=_body("gn_fused", act), half_arith=True)]
    parts = ng * s * 2 * STAT          # a (sum, sum of squares) pair per chunk
    chunk = group_launch(ng * s, CHUNK)
    return [
        KernelCost("gn_partial", "reduction", 4 * n, n * b, parts, workspace=parts,
                   launch=chunk),
        # each work-group first adds its slice's s pairs, then normalizes its chunk
        KernelCost("gn_apply", "elementwise", _normalize_flops(act) * n + 2 * ng * s * s,
                   n * b + s * parts + 2 * channels * b, n * b, launch=chunk,
                   model=_body("gn_apply", act), half_arith=True),
    ]


def _body(kernel: str, act) -> str:
    """The timing model's key: the fused SiLU is built in (-DACT=1), a body of its own whose
    exp costs each step about a tenth more on the H200's fused GroupNorm."""
    return f"{kernel}.silu" if _act_flag(act) else kernel


def layer_norm_rowwise(rows, dim, precision):
    b = BYTES[precision]
    n = rows * dim
    return [KernelCost("ln_rowwise", "reduction", 8 * n, n * b + 2 * dim * b, n * b,
                       launch=group_launch(rows, dim, LN_WG, sweeps=2), half_arith=True)]


# --- device ---------------------------------------------------------------------------------------

def _act_flag(act) -> int:
    if act not in (None, "silu"):
        raise SdsimError(f"group_norm: unknown fused activation {act!r}; expected None or 'silu'")
    return int(act == "silu")


def group_norm(rt, x, gamma, beta, shape, groups, eps, *, act=None, variant="fused",
               precision="fp32", out=None, wait_for=None):
    """GroupNorm of an NCHW buffer of `shape` = (B, C, *spatial); returns (out_buf, events)."""
    if variant not in ("naive", "fused"):
        raise SdsimError(f"group_norm: unknown variant '{variant}'; expected naive or fused")
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
    defs = {"WG": WG, "ACT": _act_flag(act)}
    s = splits(n)
    if variant == "fused" and s == 1:
        k = rt.kernel("norm", "gn_fused", precision, defs)
        ev = group_launch(ng, n, sweeps=2).enqueue(rt, k, x, gamma, beta, out, i32(hw), i32(cpg),
                                                   i32(groups), f32(eps), wait_for=wait_for)
        return out, [ev]
    if variant == "fused":
        parts = rt.alloc(ng * s * 2, "fp32", "group_norm partial sums")
        chunk = group_launch(ng * s, CHUNK)
        k1 = rt.kernel("norm", "gn_partial", precision, defs)
        events = [chunk.enqueue(rt, k1, x, parts, i32(n), i32(CHUNK), i32(s),
                                wait_for=wait_for)]
        k2 = rt.kernel("norm", "gn_apply", precision, defs)
        events.append(chunk.enqueue(rt, k2, x, parts, gamma, beta, out, i32(hw), i32(cpg),
                                    i32(groups), i32(CHUNK), i32(s), f32(eps),
                                    wait_for=events))
        return out, events
    mean = rt.alloc(ng, "fp32", "group mean")
    var = rt.alloc(ng, "fp32", "group variance")
    k1 = rt.kernel("norm", "gn_mean", precision, defs)
    events = [group_launch(ng, n).enqueue(rt, k1, x, mean, i32(n), wait_for=wait_for)]
    k2 = rt.kernel("norm", "gn_var", precision, defs)
    events.append(group_launch(ng, n).enqueue(rt, k2, x, mean, var, i32(n),
                                              wait_for=events[-1:]))
    k3 = rt.kernel("norm", "gn_normalize", precision, defs)
    events.append(normalize_launch(total).enqueue(
        rt, k3, x, mean, var, gamma, beta, out, i32(channels), i32(hw), i32(cpg), f32(eps),
        i32(total), wait_for=events[-1:]))
    return out, events


def layer_norm(rt, x, gamma, beta, rows, dim, eps, *, precision="fp32", out=None,
               wait_for=None):
    """LayerNorm over the last dim of a (rows, dim) buffer; returns (out_buf, events)."""
    if out is None:
        out = rt.alloc(rows * dim, precision, "layer_norm output")
    k = rt.kernel("norm", "ln_rowwise", precision, {"WG": LN_WG})
    ev = group_launch(rows, dim, LN_WG, sweeps=2).enqueue(rt, k, x, gamma, beta, out,
                                                          np.int32(dim), np.float32(eps),
                                                          wait_for=wait_for)
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
        y = silu_ref(y)
    return y.reshape(x.shape)


def layer_norm_ref(x, gamma, beta, eps=1e-5):
    """float64 NumPy LayerNorm over the last dim: the reference."""
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)



# --- the records -------------------------------------------------------------------------------
#: outputs are O(1) after normalization. fp32: float32 sums over up to ~1e5 elements give
#: ~1e-6 relative statistics, 1e-4 absolute leaves margin. fp16: inputs and outputs rounded to
#: half (2^-11 ~ 4.9e-4 relative of values up to ~4 sigma), hence 1e-2 absolute.
TOLERANCE = {"fp32": (1e-4, 1e-5), "fp16": (1e-2, 1e-3)}


def _gn_shape(batch, channels, h, w, groups, act):
    return dict(batch=batch, channels=channels, hw=h * w, groups=groups, eps=1e-5, act=act)


def _gn_record(name, cost):
    def launch(rt, a, ins, p, out, precision):
        return group_norm(rt, ins[0], p["gamma"], p["beta"], (a["batch"], a["channels"], a["hw"]),
                          a["groups"], a["eps"], act=a.get("act"), variant=name,
                          precision=precision, out=out)[1]

    def operands(a):
        n = a["batch"] * a["channels"] * a["hw"]
        return [n], {"gamma": a["channels"], "beta": a["channels"]}, n

    def make_inputs(a, rng):
        c = a["channels"]
        return {"ins": [rng.standard_normal((a["batch"], c, a["hw"]), np.float32) * 2 + 0.5],
                "params": {"gamma": rng.standard_normal(c, np.float32),
                           "beta": rng.standard_normal(c, np.float32)}}

    def reference(a, i, precision):
        g, b = (stored(i["params"][r], precision) for r in ("gamma", "beta"))
        return group_norm_ref(stored(i["ins"][0], precision), g, b, a["groups"], a["eps"],
                              a.get("act"))

    def simulate(a, ins, p, arith):
        from sdsim.sim import norm as sim
        return sim.group_norm(ins[0].reshape(a["batch"], a["channels"], a["hw"]), p["gamma"],
                              p["beta"], a["groups"], a["eps"], act=a.get("act"), variant=name,
                              arith=arith)

    # bench: SD1.4's GroupNorms (32 groups; 320 ch at 64x64, 640 at 32x32, 1280 at 16x16 and
    # 8x8, the VAE's 512 ch at 64x64 and 128 ch at 512x512 with SiLU); calibration off SD's shapes
    return Variant(
        "group_norm", name, cost, launch, operands, make_inputs, reference, TOLERANCE,
        {"tiny": [_gn_shape(1, 8, 3, 5, 4, "silu"), _gn_shape(2, 12, 2, 3, 4, None)],
         "quick": [_gn_shape(1, 64, 8, 8, 32, "silu"), _gn_shape(1, 96, 5, 7, 32, None)],
         "full": [_gn_shape(2, 320, 64, 64, 32, "silu"), _gn_shape(2, 640, 32, 32, 32, "silu"),
                  _gn_shape(2, 1280, 16, 16, 32, "silu"), _gn_shape(2, 1280, 8, 8, 32, None),
                  _gn_shape(1, 512, 64, 64, 32, "silu"),
                  _gn_shape(1, 128, 512, 512, 32, "silu")]},
        _GN_CAL, ("groupnorm", name), simulate=simulate)


def _gn_point(batch, channels, hw, act):
    return _gn_shape(batch, channels, hw, 1, 32, act)


# slices that fit one chunk (the one-dispatch kernel), 1,800 to 15,000 elements, 32 and 64 of
# them: the draw below gives that kernel's two bodies (with and without SiLU) 10 and 7 points.
_GN_WHOLE = [_gn_point(b, c, hw, act) for act in ("silu", None)
             for b, c, hw in ((1, 64, 900), (2, 160, 1600), (2, 448, 1024), (1, 1024, 196),
                              (2, 96, 5000), (1, 224, 2000))]
# 64 slices (a batch of 2) of 10,000 to 120,000 elements over 10-100 MB, on both sides of a
# large GPU's cache, where SD1.4's UNet runs its GroupNorms (1 to 8 chunks per slice); each
# activation (a kernel body of its own) gets half of them.
_GN_MID = [_gn_point(2, c, hw, act) for act in ("silu", None)
           for c, hw in ((96, 3600), (192, 2500), (192, 10000), (384, 3600), (768, 2500),
                         (96, 40000))]
# 32 slices (a batch of 1) of 300,000 to 1.4 million elements over 30-200 MB, on both sides of a
# large GPU's cache, as the VAE decoder's last blocks run (20 to 90 chunks per slice).
_GN_ONE = [_gn_point(1, c, hw, act) for act in ("silu", None)
           for c, hw in ((96, 120000), (96, 300000), (160, 120000), (160, 200000),
                         (224, 90000), (224, 200000))]
# Calibration sweeps (synthetic, channel counts and sizes off SD1.4's): group sizes from a few
# hundred elements (one strided step) to about a million, and group counts from 32 (under one
# wave on a large GPU) to 64; the largest images reach the VAE decoder's sweeps of hundreds of MB
# (past any GPU cache) with few channels per group, as its last blocks have.
_GN_CAL = {
    "quick": sweep(_gn_point, 3, seed=8, batch=[1, 2], channels=[96, 192], hw=[36, 144],
                   act=["silu", None]),
    "full": sweep(_gn_point, 24, seed=8, batch=[1, 2], channels=[64, 96, 192, 384, 768, 1536],
                  hw=[16, 100, 576, 2304, 6400, 16384, 40000], act=["silu", None])
    + sweep(_gn_point, 8, seed=9, batch=[1, 2], channels=[64, 96, 192],
            hw=[90000, 160000, 250000], act=["silu", None])
    + _GN_WHOLE + _GN_MID + _GN_ONE,
}


def _ln_launch(rt, a, ins, p, out, precision):
    return layer_norm(rt, ins[0], p["gamma"], p["beta"], a["rows"], a["dim"], a["eps"],
                      precision=precision, out=out)[1]


def _ln_inputs(a, rng):
    return {"ins": [rng.standard_normal((a["rows"], a["dim"]), np.float32)],
            "params": {"gamma": rng.standard_normal(a["dim"], np.float32),
                       "beta": rng.standard_normal(a["dim"], np.float32)}}


def _ln_reference(a, i, precision):
    g, b = (stored(i["params"][r], precision) for r in ("gamma", "beta"))
    return layer_norm_ref(stored(i["ins"][0], precision), g, b, a["eps"])


def _ln_simulate(a, ins, p, arith):
    from sdsim.sim import norm as sim
    return sim.layer_norm(ins[0].reshape(a["rows"], a["dim"]), p["gamma"], p["beta"], a["eps"],
                          arith=arith)


def _ln(rows, dim):
    return dict(rows=rows, dim=dim, eps=1e-5)


RECORDS = (
    _gn_record("naive", group_norm_naive),
    _gn_record("fused", group_norm_fused),
    # bench: the UNet transformer's LayerNorm (2x4096 tokens x 320) and CLIP's (77 x 768)
    Variant("layer_norm", "rowwise", layer_norm_rowwise, _ln_launch,
            lambda a: ([a["rows"] * a["dim"]], {"gamma": a["dim"], "beta": a["dim"]},
                       a["rows"] * a["dim"]),
            _ln_inputs, _ln_reference, TOLERANCE,
            {"tiny": [_ln(5, 12), _ln(3, 33)], "quick": [_ln(77, 64), _ln(33, 320)], "full": [_ln(8192, 320), _ln(77, 768)]},
            {"quick": [_ln(200, 384)],
             "full": sweep(_ln, 16, seed=9, rows=[60, 300, 1200, 3000, 6000, 12000],
                           dim=[96, 192, 384, 512, 960, 1536])}, simulate=_ln_simulate),
)
register(*RECORDS)
