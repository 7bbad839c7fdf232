"""Host side of opencl/backend_ops.cl: the elementwise and data-movement ops and GEGLU, as
runners of the dispatch table (one dispatch each; two for the standalone GEGLU).

Every runner takes the op's attrs extended with `in_shapes` and `out_shape` (the backend adds
them from its tensors), so broadcasting, concat parts and transposes need no other input.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.errors import SdsimError

FAMILY = "backend_ops"
ACT = {"silu": 1, "gelu": 2, "quick_gelu": 3}
WG = 256
i32, i64 = np.int32, np.int64


def _flat(rt, name, precision, n, *args, defines=None):
    k = rt.kernel(FAMILY, name, precision, defines)
    return rt.launch(k, (max(1, n),), rt.local_size(k, (WG,)), *args, i64(n))


def broadcast_index(out_shape, b_shape) -> tuple[int, int]:
    """(inner, nb) such that b's element for output i is (i // inner) % nb: b is `out_shape`
    with some trailing dims 1 (broadcast over them) and possibly fewer or unit leading dims."""
    out_shape, b_shape = tuple(out_shape), tuple(b_shape)
    b = (1,) * (len(out_shape) - len(b_shape)) + b_shape
    t = len(b)
    while t > 0 and b[t - 1] == 1:
        t -= 1
    inner = math.prod(out_shape[t:])
    lead = 0
    while lead < t and b[lead] == 1:
        lead += 1
    if b[lead:t] != out_shape[lead:t]:
        raise SdsimError(f"add: cannot broadcast {b_shape} onto {out_shape} on the device")
    return inner, math.prod(b_shape)


def run(rt, variant, a, ins, p, out, precision):
    n = math.prod(a["out_shape"])
    if variant in ACT:
        return [_flat(rt, "unary", precision, n, ins[0], out, defines={"ACT": ACT[variant]})]
    if variant == "add":
        shapes = a["in_shapes"]
        x, y = ins
        if math.prod(shapes[0]) < n:   # the broadcast operand first: swap (add commutes)
            x, y = y, x
            shapes = shapes[::-1]
        inner, nb = broadcast_index(a["out_shape"], shapes[1])
        return [_flat(rt, "add_bcast", precision, n, x, y, out, i64(inner), i64(nb))]
    if variant == "upsample_nearest2x":
        h, w = a["in_shapes"][0][-2:]
        return [_flat(rt, "upsample2x", precision, n, ins[0], out, i32(h), i32(w))]
    if variant == "concat":
        shapes, axis = a["in_shapes"], a.get("axis", 1)
        if len(ins) != 2:
            raise SdsimError(f"concat of {len(ins)} tensors: the device kernel takes two")
        inner = math.prod(shapes[0][axis + 1:])
        return [_flat(rt, "concat2", precision, n, ins[0], ins[1], out, i32(shapes[0][axis]),
                      i32(shapes[1][axis]), i64(inner))]
    if variant in ("nchw_to_nlc", "nlc_to_nchw"):
        s = a["in_shapes"][0]
        if variant == "nchw_to_nlc":
            batch, rows, cols = s[0], s[1], math.prod(s[2:])
        else:
            batch, rows, cols = s[0], s[1], s[2]
        k = rt.kernel(FAMILY, "transpose", precision)
        return [rt.launch(k, (cols, rows, batch), (16, 16, 1), ins[0], out, i32(rows),
                          i32(cols))]
    if variant == "embedding":
        tokens, dim = a["out_shape"][-2], a["out_shape"][-1]
        pos = p.get("positions")
        return [_flat(rt, "embedding", precision, n, ins[0], p["table"],
                      pos if pos is not None else p["table"], out, i32(tokens), i32(dim),
                      i32(pos is not None))]
    if variant == "timestep_embedding":
        dim = a["out_shape"][-1]
        return [_flat(rt, "timestep_embedding", precision, n, ins[0], out, i32(dim),
                      i32(bool(a["flip_sin_to_cos"])), np.float32(a["shift"]))]
    raise SdsimError(f"the OpenCL backend has no elementwise kernel '{variant}'")


def run_geglu(rt, variant, a, ins, p, out, precision):
    """GEGLU of (tokens, 2*dim) rows: fused (one pass) or standalone (gelu, then multiply)."""
    dim = a["dim"]
    n = a["tokens"] * dim
    if variant == "geglu_fused":
        return [_flat(rt, "geglu", precision, n, ins[0], out, i32(dim))]
    if variant == "standalone":
        g = rt.alloc(n, precision, "gelu(gate) temporary")
        e1 = _flat(rt, "gate_gelu", precision, n, ins[0], g, i32(dim))
        e2 = _flat(rt, "gate_mul", precision, n, ins[0], g, out, i32(dim))
        return [e1, e2]
    raise SdsimError(f"the OpenCL backend has no GEGLU variant '{variant}'")
