"""One lowered op on a device: (family, variant, shape) -> the kernel functions of sdsim/cl.

`run(rt, family, variant, shape, ins, params, out, precision)` enqueues the dispatches of one op
on device buffers and returns their events in the order of the variant's cost list
(`sdsim.kernels.costs(family, variant, **shape)`), so event i is the measured twin of dispatch i
of the plan. `shape` is the trace's attrs (the same keyword arguments the cost formulas take);
`ins` are the activation buffers in the op's argument order, `params` the weight buffers by role
(w, b, u for Winograd-transformed weights, gamma, beta, table, positions), `out` the
preallocated output buffer. Elementwise ops also need `in_shapes` and `out_shape` in `shape`.

`operands(family, variant, shape)` gives the element counts of those buffers, so `sdsim calibrate` can run
any variant on synthetic shapes with the same code path the backend uses.
"""

from __future__ import annotations

import numpy as np

from sdsim.backends.opencl import elementwise as ew
from sdsim.cl import attention as cl_attention
from sdsim.cl import conv as cl_conv
from sdsim.cl import gemm as cl_gemm
from sdsim.cl import norm as cl_norm
from sdsim.errors import SdsimError
from sdsim.kernels.conv import WINOGRAD_M
from sdsim.ops import conv_out_hw


def _conv(rt, variant, a, ins, p, out, precision):
    _, evs = cl_conv.conv2d(rt, ins[0], p["w"], p.get("b"), a["batch"], a["cin"], a["h"], a["w"],
                            a["cout"], a["k"], a["stride"], a["padding"], variant=variant,
                            precision=precision, u=p.get("u"), out=out)
    return evs


def _linear(rt, variant, a, ins, p, out, precision):
    _, evs = cl_gemm.linear(rt, ins[0], p["w"], p.get("b"), a["m"], a["k"], a["n"],
                            gelu=variant == "tiled_gelu", precision=precision, out=out)
    return evs


def _attention(rt, variant, a, ins, p, out, precision):
    _, evs = cl_attention.attention(rt, *ins[:3], a["batch"], a["nq"], a["nk"], a["heads"],
                                    a["head_dim"], causal=bool(a.get("causal")), variant=variant,
                                    precision=precision, out=out)
    return evs


def _group_norm(rt, variant, a, ins, p, out, precision):
    _, evs = cl_norm.group_norm(rt, ins[0], p["gamma"], p["beta"],
                                (a["batch"], a["channels"], a["hw"]), a["groups"], a["eps"],
                                act=a.get("act"), variant=variant, precision=precision, out=out)
    return evs


def _layer_norm(rt, variant, a, ins, p, out, precision):
    _, evs = cl_norm.layer_norm(rt, ins[0], p["gamma"], p["beta"], a["rows"], a["dim"], a["eps"],
                                precision=precision, out=out)
    return evs


RUNNERS = {"conv2d": _conv, "linear": _linear, "attention": _attention,
           "group_norm": _group_norm, "layer_norm": _layer_norm, "elementwise": ew.run,
           "gelu": ew.run_geglu}


def run(rt, family, variant, shape, ins, params, out, precision):
    """Enqueue one lowered op; returns the events of its dispatches in cost-list order."""
    try:
        runner = RUNNERS[family]
    except KeyError:
        raise SdsimError(f"the OpenCL backend has no kernels for op family '{family}' "
                         f"(variant {variant})") from None
    return runner(rt, variant, shape, ins, params, out, precision)


def operands(family, variant, shape) -> tuple[list[int], dict, int]:
    """Element counts of (activation inputs, weights by role, output) of one op."""
    a = shape
    if family == "conv2d":
        ho, wo = conv_out_hw(a["h"], a["w"], a["k"], a["stride"], a["padding"])
        w = {"w": a["cout"] * a["cin"] * a["k"] ** 2, "b": a["cout"]}
        return [a["batch"] * a["cin"] * a["h"] * a["w"]], w, a["batch"] * a["cout"] * ho * wo
    if family == "linear":
        return [a["m"] * a["k"]], {"w": a["n"] * a["k"], "b": a["n"]}, a["m"] * a["n"]
    if family == "attention":
        c = a["heads"] * a["head_dim"]
        q, kv = a["batch"] * a["nq"] * c, a["batch"] * a["nk"] * c
        return [q, kv, kv], {}, q
    if family == "group_norm":
        n = a["batch"] * a["channels"] * a["hw"]
        return [n], {"gamma": a["channels"], "beta": a["channels"]}, n
    if family == "layer_norm":
        n = a["rows"] * a["dim"]
        return [n], {"gamma": a["dim"], "beta": a["dim"]}, n
    if family == "elementwise":
        return [int(np.prod(s)) for s in a["in_shapes"]], {}, int(np.prod(a["out_shape"]))
    if family == "gelu":
        return [a["tokens"] * 2 * a["dim"]], {}, a["tokens"] * a["dim"]
    raise SdsimError(f"no operand layout for op family '{family}'")


def prepare_weights(rt, family, variant, shape, params, precision):
    """Load-time weight transforms a variant needs (Winograd's U = G g G^T), done once."""
    if family == "conv2d" and variant in WINOGRAD_M:
        u, _ = cl_conv.winograd_weights(rt, params["w"], shape["cout"], shape["cin"],
                                        WINOGRAD_M[variant], precision)
        return dict(params, u=u)
    return params


def random_operands(rt, family, variant, shape, precision, rng):
    """Device buffers of random values for one op: (ins, params, out), weights prepared."""
    ins_n, w_n, out_n = operands(family, variant, shape)
    up = lambda n, what: rt.to_device(rng.standard_normal(n).astype(np.float32) * 0.5,
                                      precision, what)
    ins = [up(n, f"{family} input {i}") for i, n in enumerate(ins_n)]
    params = {k: up(n, f"{family} {k}") for k, n in w_n.items()}
    params = prepare_weights(rt, family, variant, shape, params, precision)
    return ins, params, rt.alloc(out_n, precision, f"{family} output")
