"""GEGLU of the UNet transformer's feed-forward (family "gelu", opencl/gelu.cl).

Shape: tokens, dim. The FF's first linear writes a (tokens, 2*dim) tensor [hidden | gate]; GEGLU
returns hidden * gelu(gate), a (tokens, dim) tensor. The variants are the dispatches *after* that
GEMM (the GEMM is the linear family's):
- standalone: two passes as a framework runs it, with the split as a strided view: gelu over the
  gate half (writes a (tokens, dim) temporary), then the multiply;
- geglu_fused: the paper's fused GELU, one pass reads [hidden | gate] and writes
  hidden * gelu(gate).
Both have a native-half build (opencl/gelu.cl; the same bits, sdsim/sim/activation.py's geglu).
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.kernels import KernelCost, Launch, Variant, register, sweep
from sdsim.kernels.elementwise import GELU_FLOPS, GELU_VEC, gelu_ref
from sdsim.precision import BYTES, stored
from sdsim.sim import activation as sim

LOCAL = (64, 1)
DEFINES = {"VEC": GELU_VEC}


def rows_launch(tokens, dim) -> Launch:
    """One work-item per GELU_VEC consecutive columns of a row of the (tokens, dim) result."""
    return Launch.grid((-(-dim // GELU_VEC), tokens), LOCAL)


def standalone_cost(tokens, dim, precision):
    b = BYTES[precision]
    n = tokens * dim
    g = rows_launch(tokens, dim)
    return [KernelCost("gelu", "elementwise", GELU_FLOPS * n, n * b, n * b, workspace=n * b,
                       launch=g, half_arith=True),
            KernelCost("mul", "elementwise", n, 2 * n * b, n * b, launch=g, half_arith=True)]


def fused_cost(tokens, dim, precision):
    b = BYTES[precision]
    n = tokens * dim
    return [KernelCost("geglu", "elementwise", (GELU_FLOPS + 1) * n, 2 * n * b, n * b,
                       launch=rows_launch(tokens, dim), half_arith=True)]


def geglu(rt, x, rows, dim, *, variant="geglu_fused", precision="fp32", out=None, wait_for=None):
    """hidden * gelu(gate) from a (rows, 2*dim) buffer [hidden | gate]; returns (out, events)."""
    i32 = np.int32
    out = out if out is not None else rt.alloc(rows * dim, precision, "geglu output")
    if variant == "geglu_fused":
        k = rt.kernel("gelu", "geglu", precision, DEFINES)
        return out, [rows_launch(rows, dim).enqueue(rt, k, x, out, i32(rows), i32(dim),
                                                    wait_for=wait_for)]
    if variant != "standalone":
        raise SdsimError(f"geglu: unknown variant '{variant}'; expected one of "
                         f"{', '.join(r.name for r in RECORDS)}")
    g = rt.alloc(rows * dim, precision, "gelu(gate) temporary")
    k1 = rt.kernel("gelu", "gelu_gate", precision, DEFINES)
    events = [rows_launch(rows, dim).enqueue(rt, k1, x, g, i32(rows), i32(dim),
                                             wait_for=wait_for)]
    k2 = rt.kernel("gelu", "mul_rows", precision, DEFINES)
    events.append(rows_launch(rows, dim).enqueue(rt, k2, x, g, out, i32(rows), i32(dim),
                                                 i32(2 * dim), wait_for=events[-1:]))
    return out, events


def geglu_host(rt, x, *, variant="geglu_fused", precision="fp32"):
    """Host-array wrapper of `geglu` on x (..., 2*dim); returns (float32 (..., dim), events)."""
    dim = x.shape[-1] // 2
    rows = x.size // (2 * dim) if dim else 0
    out, ev = geglu(rt, rt.to_device(x, precision, "x"), rows, dim, variant=variant,
                    precision=precision)
    return rt.from_device(out, x.shape[:-1] + (dim,), precision, wait_for=ev), ev


def geglu_ref(x):
    x = np.asarray(x, np.float64)
    hidden, gate = np.split(x, 2, axis=-1)
    return hidden * gelu_ref(gate)


# --- the records -------------------------------------------------------------------------------
def _record(name, cost, option, tol):
    def launch(rt, a, ins, p, out, precision):
        return geglu(rt, ins[0], a["tokens"], a["dim"], variant=name, precision=precision,
                     out=out)[1]

    return Variant(
        "gelu", name, cost, launch,
        lambda a: ([a["tokens"] * 2 * a["dim"]], {}, a["tokens"] * a["dim"]),
        lambda a, rng: {"ins": [rng.standard_normal((a["tokens"], 2 * a["dim"]),
                                                    dtype=np.float32) * 2], "params": {}},
        lambda a, i, precision: geglu_ref(stored(i["ins"][0], precision)),
        tol,
        # bench: SD1.4's FF at 64x64 (2x4096 tokens, 2x1280 -> 1280); calibration off SD's shapes
        {"tiny": [dict(tokens=5, dim=10)], "quick": [dict(tokens=67, dim=96)], "full": [dict(tokens=8192, dim=1280)]},
        {"quick": [dict(tokens=2 * 144, dim=48), dict(tokens=2 * 36, dim=96)],
         "full": sweep(dict, 16, seed=10, tokens=[60, 300, 1200, 3000, 6000, 12000],
                       dim=[96, 384, 960, 1536, 2560])},
        ("gelu", option),
        simulate=lambda a, ins, p, arith: sim.geglu(ins[0].reshape(-1, 2 * a["dim"]), arith,
                                                    two_pass=name == "standalone"),
        sim_ulps=1)   # the float exp in gelu's erfc (sdsim/sim/activation.py)


# fp16: one rounding of the output (2^-11 relative) plus, for standalone, of the gelu(gate)
# temporary: 2e-3 relative. fp32: erf within 4 ulp of float32: 1e-5 relative.
RECORDS = (
    _record("standalone", standalone_cost, "standalone",
            {"fp32": (1e-6, 1e-5), "fp16": (1e-3, 2e-3)}),
    _record("geglu_fused", fused_cost, "fused", {"fp32": (1e-6, 1e-5), "fp16": (1e-3, 2e-3)}),
)
register(*RECORDS)
