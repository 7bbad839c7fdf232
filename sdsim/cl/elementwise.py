"""Elementwise and data-movement ops on an OpenCL device (opencl/elementwise.cl): broadcast add,
nearest 2x upsample, concat, NCHW <-> (B, HW, C) transposes, embedding gather (with CLIP's
position embedding) and diffusers' timestep embedding; SiLU/GELU live in sdsim/cl/gelu.py.
Device-buffer functions return (out_buf, events); `*_host` wrappers take NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.cl.bench import BenchCase
from sdsim.errors import SdsimError
from sdsim.kernels import costs

i32 = np.int32


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
        if dims and ((s == 0 and strides[-1] == 0) or (s and strides[-1] and s == strides[-1] * dims[-1])):
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
    ev = rt.launch(k, (n,), rt.local_size(k, (256,)), a, b, out, i32(n), i32(d1), i32(d2),
                   i32(d3), *map(i32, st), wait_for=wait_for)
    return out, [ev]


def upsample_nearest2x(rt, x, shape, *, precision="fp32", out=None, wait_for=None):
    """(B, C, H, W) -> (B, C, 2H, 2W) nearest neighbour."""
    b, c, h, w = shape
    out = out if out is not None else rt.alloc(b * c * 4 * h * w, precision, "upsample output")
    k = rt.kernel("elementwise", "upsample_nearest2x", precision)
    ev = rt.launch(k, (2 * w, 2 * h, b * c), rt.local_size(k, (16, 4, 1)), x, out, i32(b * c),
                   i32(h), i32(w), wait_for=wait_for)
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
        return out, [rt.launch(k, (ld, outer), rt.local_size(k, (64, 1)), xs[0], xs[1], out,
                               i32(outer), i32(inners[0]), i32(inners[1]), wait_for=wait_for)]
    k = rt.kernel("elementwise", "copy_block", precision)
    events, off = [], 0
    for x, inner in zip(xs, inners):
        events.append(rt.launch(k, (inner, outer), rt.local_size(k, (64, 1)), x, out, i32(outer),
                                i32(inner), i32(ld), i32(off), wait_for=wait_for))
        off += inner
    return out, events


def transpose(rt, x, batch, rows, cols, *, precision="fp32", out=None, wait_for=None):
    """(batch, rows, cols) -> (batch, cols, rows): nchw_to_nlc is rows=C, cols=HW;
    nlc_to_nchw is rows=HW, cols=C."""
    out = out if out is not None else rt.alloc(batch * rows * cols, precision, "transpose output")
    k = rt.kernel("elementwise", "transpose", precision)
    ev = rt.launch(k, (cols, rows, batch), (16, 16, 1), x, out, i32(rows), i32(cols),
                   wait_for=wait_for)
    return out, [ev]


def embedding(rt, ids, table, tokens, dim, *, pos=None, npos=1, precision="fp32", out=None,
              wait_for=None):
    """y[t] = table[ids[t]] (+ pos[t % npos]); ids is an int32 buffer of `tokens` entries."""
    out = out if out is not None else rt.alloc(tokens * dim, precision, "embedding output")
    k = rt.kernel("elementwise", "embedding", precision)
    ev = rt.launch(k, (dim, tokens), rt.local_size(k, (64, 1)), ids, table,
                   pos if pos is not None else table, out, i32(tokens), i32(dim), i32(npos),
                   i32(pos is not None), wait_for=wait_for)
    return out, [ev]


def timestep_embedding(rt, t, batch, dim, flip_sin_to_cos, shift, *, max_period=10000,
                       out=None, wait_for=None):
    """diffusers' sinusoidal timestep embedding of `batch` fp32 timesteps; fp32 output (as the
    reference keeps it in both precisions)."""
    out = out if out is not None else rt.alloc(batch * dim, "fp32", "timestep embedding")
    k = rt.kernel("elementwise", "timestep_embedding", "fp32")
    ev = rt.launch(k, (dim, batch), rt.local_size(k, (64, 1)), t, out, i32(batch), i32(dim),
                   i32(bool(flip_sin_to_cos)), np.float32(shift),
                   np.float32(math.log(max_period)), wait_for=wait_for)
    return out, [ev]


# --- host wrappers ------------------------------------------------------------------------------
def add_host(rt, a, b, *, precision="fp32"):
    out, ev = add(rt, rt.to_device(a, precision, "a"), rt.to_device(b, precision, "b"), a.shape,
                  b.shape, precision=precision)
    return rt.from_device(out, a.shape, precision, wait_for=ev), ev


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
    import pyopencl as cl

    idb = cl.Buffer(rt.ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                    hostbuf=ids if ids.size else np.zeros(1, np.int32))
    dim = table.shape[1]
    pb = rt.to_device(pos, precision, "position table") if pos is not None else None
    out, ev = embedding(rt, idb, rt.to_device(table, precision, "table"), ids.size, dim, pos=pb,
                        npos=ids.shape[-1] if ids.ndim else 1, precision=precision)
    return rt.from_device(out, ids.shape + (dim,), precision, wait_for=ev), ev


def timestep_embedding_host(rt, t, dim, flip_sin_to_cos, shift):
    t = np.asarray(t, np.float32).reshape(-1)
    out, ev = timestep_embedding(rt, rt.to_device(t, "fp32", "timesteps"), t.size, dim,
                                 flip_sin_to_cos, shift)
    return rt.from_device(out, (t.size, dim), "fp32", wait_for=ev), ev


def timestep_embedding_ref(t, dim, flip_sin_to_cos, shift, max_period=10000):
    """float64 sinusoidal embedding written from diffusers' formula."""
    t = np.asarray(t, np.float64).reshape(-1)
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - shift))
    args = t[:, None] * freqs[None]
    first, second = (np.cos(args), np.sin(args)) if flip_sin_to_cos else (np.sin(args), np.cos(args))
    emb = np.concatenate([first, second], axis=-1)
    return np.pad(emb, ((0, 0), (0, dim % 2)))


# --- bench ---------------------------------------------------------------------------------------
#: add rounds once (fp16: 2^-11 relative of |a|+|b| <= 2 max|ref|-ish: 1e-3 rel); data movement is
#: exact in both precisions (compared against inputs rounded the same way), so (0, 0).
EXACT = (0.0, 0.0)
ADD_TOL = {"fp32": (0.0, 1e-7), "fp16": (0.0, 1e-3)}


def _r(a, precision):
    return a.astype(np.float16).astype(np.float64) if precision == "fp16" else np.asarray(a, np.float64)


def _bench(name, shape_kw, cost_kw, precision, make, run, ref, tol):
    return BenchCase("elementwise", name, shape_kw, precision, make, run, ref, tol,
                     costs("elementwise", name, precision=precision, **cost_kw))


def bench_cases(quick: bool) -> list[BenchCase]:
    """SD1.4 sizes: the time-embedding add (2x320x64x64 + (2,320,1,1)), the up-block upsample
    (2x1280x16x16), the skip concat (2x(640+320)x64x64) and the transformer's NCHW <-> tokens
    transposes (2x320x64x64); --quick shrinks them."""
    b, c, h = (1, 8, 5) if quick else (2, 320, 64)
    cases = []
    for p in ("fp32", "fp16"):
        n = b * c * h * h
        cases.append(_bench(
            "add", {"a": (b, c, h, h), "b": (b, c, 1, 1)}, {"numel": n, "numel_b": b * c}, p,
            lambda rng: {"a": rng.standard_normal((b, c, h, h), np.float32),
                         "b": rng.standard_normal((b, c, 1, 1), np.float32)},
            lambda rt, i, p=p: add_host(rt, i["a"], i["b"], precision=p),
            lambda i, p=p: _r(i["a"], p) + _r(i["b"], p), ADD_TOL[p]))
        cases.append(_bench(
            "upsample_nearest2x", {"x": (b, 4 * c, h // 4, h // 4)}, {"numel": n // 4}, p,
            lambda rng: {"x": rng.standard_normal((b, 4 * c, h // 4 or 1, h // 4 or 1), np.float32)},
            lambda rt, i, p=p: upsample_host(rt, i["x"], precision=p),
            lambda i, p=p: _r(i["x"], p).repeat(2, 2).repeat(2, 3), EXACT))
        cases.append(_bench(
            "concat", {"x": (b, 2 * c, h, h), "y": (b, c, h, h)}, {"numel": 3 * n}, p,
            lambda rng: {"x": rng.standard_normal((b, 2 * c, h, h), np.float32),
                         "y": rng.standard_normal((b, c, h, h), np.float32)},
            lambda rt, i, p=p: concat_host(rt, [i["x"], i["y"]], 1, precision=p),
            lambda i, p=p: np.concatenate([_r(i["x"], p), _r(i["y"], p)], 1), EXACT))
        cases.append(_bench(
            "nchw_to_nlc", {"x": (b, c, h, h)}, {"numel": n}, p,
            lambda rng: {"x": rng.standard_normal((b, c, h, h), np.float32)},
            lambda rt, i, p=p: nchw_to_nlc_host(rt, i["x"], precision=p),
            lambda i, p=p: _r(i["x"], p).reshape(b, c, -1).transpose(0, 2, 1), EXACT))
    return cases
