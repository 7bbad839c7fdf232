"""Elementwise and data-movement variants (family "elementwise"), one dispatch each: broadcast add,
the activations SiLU / erf GELU / quick_gelu (opencl/gelu.cl), nearest 2x upsample, concat,
NCHW <-> (B, HW, C) transposes, embedding gather (with CLIP's position embedding) and diffusers'
timestep embedding (opencl/elementwise.cl).

Every variant's shape is the op's attrs plus `in_shapes` and `out_shape` (the lowering and the
backend add them from the traced tensors), so broadcasting, concat parts and transposes need no
other input.

FLOP convention shared by norm, gelu, gemm and attention: each arithmetic operation counts 1 (a
multiply-add counts 2) and each special function (exp, erf, rsqrt) counts 1, since mobile GPUs
execute those on a special-function unit at about one per lane per cycle. Per-element counts are
the *_FLOPS constants below, the one place each activation's count is written.

At fp16 storage on a device with native half (cl_khr_fp16) the adds and the activations' arithmetic
run in half, their special functions (erfc, exp) in float rounded once to half; the timestep
embedding stays float (opencl/gelu.cl and opencl/elementwise.cl say why; sdsim/sim/activation.py
mirrors the rounding).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Launch, Variant, register, sweep
from sdsim.ops import upsample_size
from sdsim.precision import BYTES, stored
from sdsim.sim import activation as sim

#: x / (1 + exp(-x)): negate, exp, add, divide
SILU_FLOPS = 4
#: 0.5 * x * (1 + erf(x / sqrt 2)): multiply, erf, add, multiply, multiply
GELU_FLOPS = 5
#: x / (1 + exp(-1.702 x)): multiply, exp, add, divide
QUICK_GELU_FLOPS = 4

i32 = np.int32
#: work-group size of the 1-D elementwise kernels
WG = 256
#: local size of the row-wise 2-D kernels (concat, copy, embedding)
ROWS_LOCAL = (64, 1)


# --- launch geometry (read by the launchers and the costs alike) ---------------------------------
def flat_launch(n) -> Launch:
    return Launch.grid((max(1, n),), (WG,))


def upsample_launch(planes, oh, ow) -> Launch:
    """One work-item per element of the (planes, oh, ow) output."""
    return Launch.grid((ow, oh, planes), (16, 4, 1))


def rows_launch(cols, rows) -> Launch:
    return Launch.grid((cols, rows), ROWS_LOCAL)


def transpose_launch(batch, rows, cols) -> Launch:
    return Launch.grid((cols, rows, batch), (16, 16, 1))


#: columns per work-item of opencl/gelu.cl's GEGLU kernels (its -DVEC: float8 arithmetic)
GELU_VEC = 8


# --- float64 references of the activations ----------------------------------------------------
def gelu_ref(x):
    """Exact erf GELU in float64."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def quick_gelu_ref(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-1.702 * x))


def silu_ref(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-x))


ACTIVATIONS = {"silu": (SILU_FLOPS, silu_ref), "gelu": (GELU_FLOPS, gelu_ref),
               "quick_gelu": (QUICK_GELU_FLOPS, quick_gelu_ref)}


# --- device functions ---------------------------------------------------------------------------
def activation(rt, x, n, kind, *, precision="fp32", out=None, wait_for=None):
    """y = kind(x) elementwise over n elements; returns (out_buf, events)."""
    if kind not in ACTIVATIONS:
        raise SdsimError(f"unknown activation '{kind}'; expected one of {', '.join(ACTIVATIONS)}")
    out = out if out is not None else rt.alloc(n, precision, f"{kind} output")
    k = rt.kernel("gelu", kind, precision, {"VEC": GELU_VEC})
    ev = flat_launch(n).enqueue(rt, k, x, out, i32(n), wait_for=wait_for)
    return out, [ev]


def broadcast_strides(a_shape, b_shape):
    """Collapse `b_shape` broadcast onto `a_shape` to the add kernel's 4-d view: returns
    ((d0, d1, d2, d3), (s0, s1, s2, s3)), a's dims and b's element strides (0 = broadcast)."""
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if len(b_shape) > len(a_shape):
        raise SdsimError(f"add: operand of shape {b_shape} does not broadcast onto {a_shape}")
    b_full = (1,) * (len(a_shape) - len(b_shape)) + b_shape
    dims, strides = [], []
    stride = 1
    for da, db in reversed(list(zip(a_shape, b_full))):
        if db not in (1, da):
            raise SdsimError(f"add: operand of shape {b_shape} does not broadcast onto {a_shape}")
        s = stride if (db == da and da != 1) else 0
        stride *= db
        # merge with the previous (inner) dim when both are broadcast or both contiguous
        if dims and ((s == 0 and strides[-1] == 0)
                     or (s and strides[-1] and s == strides[-1] * dims[-1])):
            if s:
                s = strides[-1]
            dims[-1] *= da
            strides[-1] = s
        else:
            dims.append(da)
            strides.append(s)
    dims, strides = dims[::-1], strides[::-1]
    if len(dims) > 4:
        raise SdsimError(f"add: broadcast of {b_shape} onto {a_shape} needs more than 4 dims")
    pad = 4 - len(dims)
    return tuple([1] * pad + dims), tuple([0] * pad + strides)


def add(rt, a, b, a_shape, b_shape, *, precision="fp32", out=None, wait_for=None):
    """a + b with b broadcast onto a (NumPy rules, e.g. (B,C,1,1) or (C,) onto NCHW)."""
    n = math.prod(a_shape)
    (d0, d1, d2, d3), st = broadcast_strides(a_shape, b_shape)
    out = out if out is not None else rt.alloc(n, precision, "add output")
    k = rt.kernel("elementwise", "add_bcast", precision)
    ev = flat_launch(n).enqueue(rt, k, a, b, out, i32(n), i32(d1), i32(d2), i32(d3),
                                *map(i32, st), wait_for=wait_for)
    return out, [ev]


def upsample_nearest2x(rt, x, shape, *, precision="fp32", out=None, wait_for=None, size=None):
    """(B, C, H, W) -> (B, C, 2H, 2W) nearest neighbour, or to `size` one row or column less
    where a UNet skip connection is odd (`sdsim.ops.upsample_size`)."""
    b, c, h, w = shape
    oh, ow = upsample_size(h, w, size)
    out = out if out is not None else rt.alloc(b * c * oh * ow, precision, "upsample output")
    k = rt.kernel("elementwise", "upsample_nearest2x", precision)
    ev = upsample_launch(b * c, oh, ow).enqueue(rt, k, x, out, i32(b * c), i32(h), i32(w),
                                                i32(oh), i32(ow), wait_for=wait_for)
    return out, [ev]


def concat(rt, xs, shapes, axis=1, *, precision="fp32", out=None, wait_for=None):
    """Concatenate buffers of `shapes` along `axis`: one dispatch for two inputs (the UNet's skip
    concat, as costed), one copy per input otherwise."""
    axis = axis % len(shapes[0])
    outer = math.prod(shapes[0][:axis])
    inners = [math.prod(s[axis:]) for s in shapes]
    ld = sum(inners)
    out = out if out is not None else rt.alloc(outer * ld, precision, "concat output")
    if len(xs) == 2:
        k = rt.kernel("elementwise", "concat2", precision)
        return out, [rows_launch(ld, outer).enqueue(rt, k, xs[0], xs[1], out, i32(outer),
                                                    i32(inners[0]), i32(inners[1]),
                                                    wait_for=wait_for)]
    k = rt.kernel("elementwise", "copy_block", precision)
    events, off = [], 0
    for x, inner in zip(xs, inners):
        events.append(rows_launch(inner, outer).enqueue(rt, k, x, out, i32(outer), i32(inner),
                                                        i32(ld), i32(off), wait_for=wait_for))
        off += inner
    return out, events


def transpose(rt, x, batch, rows, cols, *, precision="fp32", out=None, wait_for=None):
    """(batch, rows, cols) -> (batch, cols, rows): nchw_to_nlc is rows=C, cols=HW;
    nlc_to_nchw is rows=HW, cols=C."""
    out = out if out is not None else rt.alloc(batch * rows * cols, precision, "transpose output")
    k = rt.kernel("elementwise", "transpose", precision)
    ev = transpose_launch(batch, rows, cols).enqueue(rt, k, x, out, i32(rows), i32(cols),
                                                     wait_for=wait_for)
    return out, [ev]


def embedding(rt, ids, table, tokens, dim, *, pos=None, npos=1, precision="fp32", out=None,
              wait_for=None):
    """y[t] = table[ids[t]] (+ pos[t % npos]); ids is an int32 buffer of `tokens` entries."""
    out = out if out is not None else rt.alloc(tokens * dim, precision, "embedding output")
    k = rt.kernel("elementwise", "embedding", precision)
    ev = rows_launch(dim, tokens).enqueue(rt, k, ids, table, pos if pos is not None else table,
                                          out, i32(tokens), i32(dim), i32(npos),
                                          i32(pos is not None), wait_for=wait_for)
    return out, [ev]


def timestep_embedding(rt, t, batch, dim, flip_sin_to_cos, shift, *, precision="fp32", out=None,
                       wait_for=None):
    """diffusers' sinusoidal timestep embedding of `batch` fp32 timesteps, written in the storage
    precision (the next linear reads it as such)."""
    n = batch * dim
    out = out if out is not None else rt.alloc(n, precision, "timestep embedding")
    k = rt.kernel("elementwise", "timestep_embedding", precision)
    ev = flat_launch(n).enqueue(rt, k, t, out, i32(dim), i32(bool(flip_sin_to_cos)),
                                np.float32(shift), np.int64(n), wait_for=wait_for)
    return out, [ev]


# --- host wrappers (tests) ----------------------------------------------------------------------
def add_host(rt, a, b, *, precision="fp32"):
    out, ev = add(rt, rt.to_device(a, precision, "a"), rt.to_device(b, precision, "b"), a.shape,
                  b.shape, precision=precision)
    return rt.from_device(out, a.shape, precision, wait_for=ev), ev


def activation_host(rt, x, kind, *, precision="fp32"):
    out, ev = activation(rt, rt.to_device(x, precision, "x"), x.size, kind, precision=precision)
    return rt.from_device(out, x.shape, precision, wait_for=ev), ev


def upsample_host(rt, x, *, precision="fp32"):
    b, c, h, w = x.shape
    out, ev = upsample_nearest2x(rt, rt.to_device(x, precision, "x"), x.shape, precision=precision)
    return rt.from_device(out, (b, c, 2 * h, 2 * w), precision, wait_for=ev), ev


def concat_host(rt, xs, axis=1, *, precision="fp32"):
    bufs = [rt.to_device(x, precision, f"concat input {i}") for i, x in enumerate(xs)]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    out, ev = concat(rt, bufs, [x.shape for x in xs], axis, precision=precision)
    return rt.from_device(out, tuple(shape), precision, wait_for=ev), ev


def nchw_to_nlc_host(rt, x, *, precision="fp32"):
    b, c, h, w = x.shape
    out, ev = transpose(rt, rt.to_device(x, precision, "x"), b, c, h * w, precision=precision)
    return rt.from_device(out, (b, h * w, c), precision, wait_for=ev), ev


def nlc_to_nchw_host(rt, x, h, w, *, precision="fp32"):
    b, n, c = x.shape
    out, ev = transpose(rt, rt.to_device(x, precision, "x"), b, n, c, precision=precision)
    return rt.from_device(out, (b, c, h, w), precision, wait_for=ev), ev


def embedding_host(rt, ids, table, pos=None, *, precision="fp32"):
    ids = np.ascontiguousarray(np.asarray(ids, np.int32))
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise SdsimError(f"embedding: token ids must be in [0, {table.shape[0]}), got "
                         f"[{ids.min()}, {ids.max()}]")
    dim = table.shape[1]
    pb = rt.to_device(pos, precision, "position table") if pos is not None else None
    out, ev = embedding(rt, rt.to_device(ids, "int32", "token ids"),
                        rt.to_device(table, precision, "table"), ids.size, dim, pos=pb,
                        npos=ids.shape[-1] if ids.ndim else 1, precision=precision)
    return rt.from_device(out, ids.shape + (dim,), precision, wait_for=ev), ev


def timestep_embedding_host(rt, t, dim, flip_sin_to_cos, shift, *, precision="fp32"):
    t = np.asarray(t, np.float32).reshape(-1)
    out, ev = timestep_embedding(rt, rt.to_device(t, "fp32", "timesteps"), t.size, dim,
                                 flip_sin_to_cos, shift, precision=precision)
    return rt.from_device(out, (t.size, dim), precision, wait_for=ev), ev


# --- the records -------------------------------------------------------------------------------
def _numel(shape) -> int:
    return math.prod(shape)


def _one(kernel, flops, read, written, launch, half_arith=False):
    """One dispatch's cost; `half_arith`: its arithmetic has a native-half build (an add or an
    activation; data movement and the float timestep embedding have none)."""
    return [KernelCost(kernel, "elementwise", float(flops), float(read), float(written),
                       launch=launch, half_arith=half_arith)]


def _add_cost(in_shapes, out_shape, precision):
    """out = a + b with the smaller operand broadcast: it is read once per output element but its
    few distinct values stay in cache, so DRAM reads are numel + numel_b elements."""
    e, n = BYTES[precision], _numel(out_shape)
    nb = min(_numel(s) for s in in_shapes)
    return _one("ew_add", n, (n + nb) * e, n * e, flat_launch(n), half_arith=True)


def _add_launch(rt, a, ins, p, out, precision):
    shapes, (x, y) = a["in_shapes"], ins
    if _numel(shapes[0]) < _numel(a["out_shape"]):   # the broadcast operand second (add commutes)
        x, y, shapes = y, x, shapes[::-1]
    return add(rt, x, y, a["out_shape"], shapes[1], precision=precision, out=out)[1]


def _activation_record(kind):
    flops, ref = ACTIVATIONS[kind]

    def cost(out_shape, precision):
        e, n = BYTES[precision], _numel(out_shape)
        return _one(f"ew_{kind}", flops * n, n * e, n * e, flat_launch(n), half_arith=True)

    def launch(rt, a, ins, p, out, precision):
        return activation(rt, ins[0], _numel(a["out_shape"]), kind, precision=precision,
                          out=out)[1]

    return _record(kind, cost, launch, lambda a, i, prec: ref(stored(i["ins"][0], prec)),
                   _ACT_TOL, _make_scaled(3.0),
                   {"tiny": [_unary((37,))], "quick": [_unary((1000,))],
                    "full": [_unary((8192, 1280))]},
                   simulate=lambda a, ins, p, arith: sim.ACTIVATIONS[kind](ins[0], arith),
                   sim_ulps=1)   # the device's float exp (sdsim/sim/activation.py)


def _upsample_cost(in_shapes, out_shape, precision):
    e, n = BYTES[precision], _numel(in_shapes[0])
    *planes, oh, ow = out_shape
    return _one("ew_upsample_nearest2x", 0, n * e, _numel(out_shape) * e,
                upsample_launch(_numel(planes), oh, ow))


def _concat_cost(in_shapes, out_shape, precision, axis=1):
    """Two inputs (the UNet's skip concat): one dispatch; otherwise one copy per input."""
    e, axis = BYTES[precision], axis % len(out_shape)
    outer = _numel(out_shape[:axis])
    inners = [_numel(s[axis:]) for s in in_shapes]
    if len(in_shapes) == 2:
        n = _numel(out_shape)
        return _one("ew_concat", 0, n * e, n * e, rows_launch(sum(inners), outer))
    return [k for i in inners
            for k in _one("ew_copy_block", 0, outer * i * e, outer * i * e, rows_launch(i, outer))]


def _transpose_cost(in_shapes, out_shape, precision):
    e, n = BYTES[precision], _numel(out_shape)
    return _one("ew_transpose", 0, n * e, n * e, transpose_launch(*_transpose_dims(in_shapes[0])))


def _transpose_dims(s):
    """(batch, rows, cols) of the transpose of an input of shape s."""
    if len(s) == 4:          # nchw_to_nlc: (B, C, H, W) -> (B, HW, C)
        return s[0], s[1], s[2] * s[3]
    return tuple(s)          # nlc_to_nchw: (B, HW, C) -> (B, C, H, W)


def _transpose_launch(rt, a, ins, p, out, precision):
    batch, rows, cols = _transpose_dims(a["in_shapes"][0])
    return transpose(rt, ins[0], batch, rows, cols, precision=precision, out=out)[1]


def _embedding_cost(in_shapes, out_shape, precision):
    """Row gather table[ids]: reads the int32 ids and one row of `dim` per token, writes them."""
    e, tokens, dim = BYTES[precision], _numel(in_shapes[0]), out_shape[-1]
    return _one("ew_embedding", 0, tokens * 4 + tokens * dim * e, tokens * dim * e,
                rows_launch(dim, tokens), half_arith=True)


def _embedding_launch(rt, a, ins, p, out, precision):
    tokens, dim = a["out_shape"][-2], a["out_shape"][-1]
    return embedding(rt, ins[0], p["table"], _numel(a["out_shape"]) // dim, dim,
                     pos=p.get("positions"), npos=tokens, precision=precision, out=out)[1]


def _embedding_inputs(a, rng):
    vocab, (tokens, dim) = a["vocab"], a["out_shape"][-2:]
    return {"ins": [rng.integers(0, vocab, a["in_shapes"][0]).astype(np.int32)],
            "params": {"table": rng.standard_normal((vocab, dim), dtype=np.float32),
                       "positions": rng.standard_normal((tokens, dim), dtype=np.float32)}}


def _embedding_ref(a, i, precision):
    table, pos = (stored(i["params"][r], precision) for r in ("table", "positions"))
    return table[i["ins"][0]] + pos


def _embedding_sim(a, ins, p, arith):
    rows, pos = p["table"][ins[0]], p.get("positions")
    return rows.astype(np.float16) if pos is None else sim.add(rows, pos[:ins[0].shape[-1]], arith)


def _timestep_cost(out_shape, precision):
    """Per output element one exp (frequency), one multiply and one sin/cos; reads the fp32
    timesteps."""
    batch, dim = out_shape[0], out_shape[-1]
    return _one("ew_timestep_embedding", 3 * batch * dim, batch * 4,
                batch * dim * BYTES[precision], flat_launch(batch * dim))


def _timestep_launch(rt, a, ins, p, out, precision):
    batch, dim = a["out_shape"][0], a["out_shape"][-1]
    return timestep_embedding(rt, ins[0], batch, dim, a["flip_sin_to_cos"], a["shift"],
                              precision=precision, out=out)[1]


def _timestep_inputs(a, rng):
    # float64: kept as fp32 timesteps whatever the storage precision (see Variant.make_inputs)
    return {"ins": [rng.uniform(0, 1000, a["out_shape"][0])], "params": {}}


def _timestep_sim(a, ins, p, arith):
    return sim.timestep_embedding(ins[0], a["out_shape"][-1], a["flip_sin_to_cos"], a["shift"],
                                  arith)


def _timestep_ref(a, i, precision):
    from sdsim.backends.numpy_backend import sinusoidal_embedding

    return stored(sinusoidal_embedding(i["ins"][0], a["out_shape"][-1], a["flip_sin_to_cos"],
                                       a["shift"], np.float64), precision)


def _operands(a):
    ins = [_numel(s) for s in a["in_shapes"]]
    params = {}
    if "vocab" in a:
        tokens, dim = a["out_shape"][-2:]
        params = {"table": a["vocab"] * dim, "positions": tokens * dim}
    return ins, params, _numel(a["out_shape"])


def _make_scaled(scale):
    def make(a, rng):
        return {"ins": [rng.standard_normal(s, dtype=np.float32) * scale for s in a["in_shapes"]],
                "params": {}}
    return make


def _record(name, cost, launch, reference, tol, make_inputs, bench, cal=None, simulate=None,
            sim_ulps=0):
    """A variant; `simulate` defaults to `reference` on the stored halves, rounded to half: exact
    for data movement and for one add (the float64 sum of two halves is exact)."""
    def stored_ref(a, ins, p, arith):
        return reference(a, {"ins": ins, "params": p}, "fp16").astype(np.float16)

    return Variant("elementwise", name, cost, launch, _operands, make_inputs, reference, tol,
                   bench, cal or _calibration(name), simulate=simulate or stored_ref,
                   sim_ulps=sim_ulps)


def _unary(shape):
    return {"in_shapes": [tuple(shape)], "out_shape": tuple(shape)}


def _calibration(name):
    """Calibration shapes (off SD1.4's) of each elementwise variant on (b, c, h, w) tensors."""
    def shapes(b, c, h, w):
        x = (b, c, h, w)
        return {
            "add": [{"in_shapes": [x, x], "out_shape": x},
                    {"in_shapes": [x, (b, c, 1, 1)], "out_shape": x}],
            "upsample_nearest2x": [{"in_shapes": [x], "out_shape": (b, c, 2 * h, 2 * w)}],
            "concat": [{"in_shapes": [x, x], "out_shape": (b, 2 * c, h, w), "axis": 1}],
            "nchw_to_nlc": [{"in_shapes": [x], "out_shape": (b, h * w, c)}],
            "nlc_to_nchw": [{"in_shapes": [(b, h * w, c)], "out_shape": x}],
        }.get(name, [_unary(x)] if name in ACTIVATIONS else [])
    # sizes from a few KiB (cache-resident) to hundreds of MiB, channels off SD1.4's
    quick = [(2, 96, 12, 12), (2, 192, 6, 6)]
    full = sweep(lambda **a: a, 10, seed=11, b=[1, 2], c=[24, 96, 192, 384, 768],
                 hw=[6, 12, 24, 48, 96, 160, 256])
    return {"quick": [s for q in quick for s in shapes(*q)],
            "full": [s for f in full for s in shapes(f["b"], f["c"], f["hw"], f["hw"])]}


# Tolerances (atol, rel to max|ref|): data movement is exact in both precisions (the reference
# starts from the inputs as stored); add and the activations round once when stored (fp16:
# 2^-11 relative); erf/exp are within 4 ulp in OpenCL's float32, so 1e-5 relative in fp32.
_EXACT = {"fp32": (0.0, 0.0), "fp16": (0.0, 0.0)}
_ADD_TOL = {"fp32": (0.0, 1e-7), "fp16": (0.0, 1e-3)}
_ACT_TOL = {"fp32": (1e-6, 1e-5), "fp16": (1e-3, 2e-3)}
_TIMESTEP_TOL = {"fp32": (1e-3, 0.0), "fp16": (2e-3, 0.0)}   # float32 t*f at t ~ 1e3: 6e-5
#: the timestep embedding's simulation bound in half ulps: the device's float exp, sin and cos
#: against float64 ones rounded to float32 (sdsim/sim/activation.py). A float ulp of t f (6e-5 at
#: t = 1000) moves an output by up to 2^-11, many of its half ulps near a zero of sin: 64 at most,
#: and 2 in 10^4 outputs differing at all, over 2000 timesteps at dim 1280 on Intel's runtime.
TIMESTEP_SIM_ULPS = 64


def _sd(tiny, quick, full):
    return {"tiny": tiny, "quick": quick, "full": full}


def _x(i, p):
    return stored(i["ins"][0], p)


# Bench shapes (tiny for Oclgrind, quick for CI, full): SD1.4's time-embedding add (2x320x64x64 + (2,320,1,1)), an up-block upsample
# (2x1280x16x16), the skip concat (2x(640+320)x64x64), the transformer's transposes
# (2x320x64x64), CLIP's token + position embedding (77 tokens of 768) and the UNet's timestep
# embedding (2 x 320); --quick shrinks them.
RECORDS = (
    _record("add", _add_cost, _add_launch,
            lambda a, i, p: stored(i["ins"][0], p) + stored(i["ins"][1], p), _ADD_TOL,
            _make_scaled(1.0),
            _sd([{"in_shapes": [(2, 3, 4, 5), (1, 3, 1, 1)], "out_shape": (2, 3, 4, 5)}],
                [{"in_shapes": [(1, 8, 5, 5), (1, 8, 1, 1)], "out_shape": (1, 8, 5, 5)}],
                [{"in_shapes": [(2, 320, 64, 64), (2, 320, 1, 1)],
                  "out_shape": (2, 320, 64, 64)}])),
    *(_activation_record(k) for k in ACTIVATIONS),
    _record("upsample_nearest2x", _upsample_cost,
            lambda rt, a, ins, p, out, prec: upsample_nearest2x(
                rt, ins[0], a["in_shapes"][0], precision=prec, out=out,
                size=a["out_shape"][-2:])[1],
            lambda a, i, p: _x(i, p).repeat(2, 2).repeat(2, 3)[
                ..., :a["out_shape"][-2], :a["out_shape"][-1]], _EXACT, _make_scaled(1.0),
            _sd([{"in_shapes": [(1, 2, 3, 5)], "out_shape": (1, 2, 6, 10)},
                 {"in_shapes": [(1, 2, 3, 5)], "out_shape": (1, 2, 5, 9)}],
                [{"in_shapes": [(1, 32, 2, 2)], "out_shape": (1, 32, 4, 4)}],
                [{"in_shapes": [(2, 1280, 16, 16)], "out_shape": (2, 1280, 32, 32)}])),
    _record("concat", _concat_cost,
            lambda rt, a, ins, p, out, prec: concat(rt, ins, a["in_shapes"], a.get("axis", 1),
                                                    precision=prec, out=out)[1],
            lambda a, i, p: np.concatenate([stored(x, p) for x in i["ins"]], a.get("axis", 1)),
            _EXACT, _make_scaled(1.0),
            _sd([{"in_shapes": [(2, 2, 3, 1), (2, 3, 3, 1)], "out_shape": (2, 5, 3, 1), "axis": 1},
                 {"in_shapes": [(1, 2, 3), (1, 1, 3), (1, 4, 3)], "out_shape": (1, 7, 3),
                  "axis": 1}],
                [{"in_shapes": [(1, 16, 5, 5), (1, 8, 5, 5)], "out_shape": (1, 24, 5, 5),
                  "axis": 1}],
                [{"in_shapes": [(2, 640, 64, 64), (2, 320, 64, 64)],
                  "out_shape": (2, 960, 64, 64), "axis": 1}])),
    _record("nchw_to_nlc", _transpose_cost, _transpose_launch,
            lambda a, i, p: _x(i, p).reshape(*_x(i, p).shape[:2], -1).transpose(0, 2, 1),
            _EXACT, _make_scaled(1.0),
            _sd([{"in_shapes": [(2, 3, 4, 5)], "out_shape": (2, 20, 3)}],
                [{"in_shapes": [(1, 8, 5, 5)], "out_shape": (1, 25, 8)}],
                [{"in_shapes": [(2, 320, 64, 64)], "out_shape": (2, 4096, 320)}])),
    _record("nlc_to_nchw", _transpose_cost, _transpose_launch,
            lambda a, i, p: _x(i, p).transpose(0, 2, 1).reshape(a["out_shape"]),
            _EXACT, _make_scaled(1.0),
            _sd([{"in_shapes": [(2, 20, 3)], "out_shape": (2, 3, 4, 5)}],
                [{"in_shapes": [(1, 25, 8)], "out_shape": (1, 8, 5, 5)}],
                [{"in_shapes": [(2, 4096, 320)], "out_shape": (2, 320, 64, 64)}])),
    _record("embedding", _embedding_cost, _embedding_launch, _embedding_ref, _ADD_TOL,
            _embedding_inputs,
            _sd([{"in_shapes": [(2, 5)], "out_shape": (2, 5, 6), "vocab": 7}],
                [{"in_shapes": [(1, 77)], "out_shape": (1, 77, 64), "vocab": 100}],
                [{"in_shapes": [(1, 77)], "out_shape": (1, 77, 768), "vocab": 49408}]),
            cal={"quick": [{"in_shapes": [(2, 60)], "out_shape": (2, 60, 384), "vocab": 1000}],
                 "full": [{"in_shapes": [(b, t)], "out_shape": (b, t, d), "vocab": 30000}
                          for b in (1, 2) for t in (20, 60) for d in (384, 1024)]},
            simulate=_embedding_sim),
    _record("timestep_embedding", _timestep_cost, _timestep_launch, _timestep_ref,
            _TIMESTEP_TOL, _timestep_inputs,
            _sd([{"in_shapes": [(2,)], "out_shape": (2, 9), "flip_sin_to_cos": True,
                  "shift": 1.0}],
                [{"in_shapes": [(3,)], "out_shape": (3, 7), "flip_sin_to_cos": False,
                  "shift": 0.0}],
                [{"in_shapes": [(2,)], "out_shape": (2, 320), "flip_sin_to_cos": True,
                  "shift": 0.0}]),
            cal={"quick": [],
                 "full": [{"in_shapes": [(b,)], "out_shape": (b, d), "flip_sin_to_cos": True,
                           "shift": 0.0} for b in (1, 4) for d in (128, 512)]},
            simulate=_timestep_sim, sim_ulps=TIMESTEP_SIM_ULPS),
)
register(*RECORDS)
