"""Runners of the dispatch table for the elementwise and data-movement ops and GEGLU: the kernels
of sdsim/cl/elementwise.py and sdsim/cl/gelu.py, plus opencl/backend_ops.cl's timestep embedding
written in the storage precision (elementwise.cl writes float32, which the next linear would
misread under fp16 storage; the cost formula charges storage-precision bytes).

Every runner takes the op's attrs extended with `in_shapes` and `out_shape` (the backend adds
them from its tensors), so broadcasting, concat parts and transposes need no other input.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.cl import elementwise as cl_ew
from sdsim.cl import gelu as cl_gelu
from sdsim.errors import SdsimError

WG = 256
i32, i64 = np.int32, np.int64


def _own(rt, name, precision, n, *args):
    k = rt.kernel("backend_ops", name, precision)
    return rt.launch(k, (max(1, n),), rt.local_size(k, (WG,)), *args, i64(n))


def run(rt, variant, a, ins, p, out, precision):
    n = math.prod(a["out_shape"])
    kw = dict(precision=precision, out=out)
    if variant in cl_gelu.ACTIVATIONS:
        return cl_gelu.activation(rt, ins[0], n, variant, **kw)[1]
    if variant == "add":
        shapes = a["in_shapes"]
        x, y = ins
        if math.prod(shapes[0]) < n:   # the broadcast operand second (add commutes)
            x, y = y, x
            shapes = shapes[::-1]
        return cl_ew.add(rt, x, y, a["out_shape"], shapes[1], **kw)[1]
    if variant == "upsample_nearest2x":
        return cl_ew.upsample_nearest2x(rt, ins[0], a["in_shapes"][0], **kw)[1]
    if variant == "concat":
        return cl_ew.concat(rt, ins, a["in_shapes"], a.get("axis", 1), **kw)[1]
    if variant in ("nchw_to_nlc", "nlc_to_nchw"):
        s = a["in_shapes"][0]
        if variant == "nchw_to_nlc":
            batch, rows, cols = s[0], s[1], math.prod(s[2:])
        else:
            batch, rows, cols = s[0], s[1], s[2]
        return cl_ew.transpose(rt, ins[0], batch, rows, cols, **kw)[1]
    if variant == "embedding":
        tokens, dim = a["out_shape"][-2], a["out_shape"][-1]
        pos = p.get("positions")
        return cl_ew.embedding(rt, ins[0], p["table"], n // dim, dim, pos=pos, npos=tokens,
                               **kw)[1]
    if variant == "timestep_embedding":
        dim = a["out_shape"][-1]
        return [_own(rt, "timestep_embedding", precision, n, ins[0], out, i32(dim),
                     i32(bool(a["flip_sin_to_cos"])), np.float32(a["shift"]))]
    raise SdsimError(f"the OpenCL backend has no elementwise kernel '{variant}'")


def run_geglu(rt, variant, a, ins, p, out, precision):
    """GEGLU of (tokens, 2*dim) rows: fused (one pass) or standalone (gelu, then multiply)."""
    return cl_gelu.geglu(rt, ins[0], a["tokens"], a["dim"], variant=variant,
                         precision=precision, out=out)[1]
