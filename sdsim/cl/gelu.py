"""GELU-family activations on an OpenCL device (opencl/gelu.cl): erf GELU, quick_gelu, SiLU, and
the three ways to run the UNet feed-forward's GEGLU (see sdsim/kernels/gelu.py):
"standalone" (gelu over the gate half, then a multiply), "geglu_fused" (one pass) and
"gemm_epilogue" (GELU in the epilogue of the GEMM producing the gate half, K1's gemm_gelu, then
the multiply).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from sdsim.cl import gemm
from sdsim.cl.bench import BenchCase
from sdsim.errors import SdsimError
from sdsim.kernels import costs

ACTIVATIONS = ("gelu", "quick_gelu", "silu")
GEGLU_VARIANTS = ("standalone", "geglu_fused", "gemm_epilogue")
LOCAL = (64, 1)


def activation(rt, x, n, kind, *, precision="fp32", out=None, wait_for=None):
    """y = kind(x) elementwise over n elements; returns (out_buf, events)."""
    if kind not in ACTIVATIONS:
        raise SdsimError(f"unknown activation '{kind}'; expected one of {ACTIVATIONS}")
    out = out if out is not None else rt.alloc(n, precision, f"{kind} output")
    k = rt.kernel("gelu", kind, precision)
    ev = rt.launch(k, (n,), rt.local_size(k, (256,)), x, out, np.int32(n), wait_for=wait_for)
    return out, [ev]


def geglu(rt, x, rows, dim, *, variant="geglu_fused", precision="fp32", out=None, wait_for=None):
    """hidden * gelu(gate) from a (rows, 2*dim) buffer [hidden | gate]; "standalone" or
    "geglu_fused". Returns (out_buf, events)."""
    i32 = np.int32
    out = out if out is not None else rt.alloc(rows * dim, precision, "geglu output")
    if variant == "geglu_fused":
        k = rt.kernel("gelu", "geglu", precision)
        return out, [rt.launch(k, (dim, rows), rt.local_size(k, LOCAL), x, out, i32(rows),
                               i32(dim), wait_for=wait_for)]
    if variant == "gemm_epilogue":
        raise SdsimError("geglu: gemm_epilogue applies GELU inside the GEMM, so it starts from the "
                         "GEMM input; call geglu_gemm_epilogue (or ff_geglu_host)")
    if variant != "standalone":
        raise SdsimError(f"geglu: unknown variant '{variant}'; expected one of {GEGLU_VARIANTS}")
    g = rt.alloc(rows * dim, precision, "gelu(gate) temporary")
    k1 = rt.kernel("gelu", "gelu_gate", precision)
    events = [rt.launch(k1, (dim, rows), rt.local_size(k1, LOCAL), x, g, i32(rows), i32(dim),
                        wait_for=wait_for)]
    return out, events + _mul(rt, x, g, out, rows, dim, 2 * dim, precision, events[-1:])


def _mul(rt, x, g, out, rows, dim, ld, precision, wait_for):
    k = rt.kernel("gelu", "mul_rows", precision)
    return [rt.launch(k, (dim, rows), rt.local_size(k, LOCAL), x, g, out, np.int32(rows),
                      np.int32(dim), np.int32(ld), wait_for=wait_for)]


def geglu_gemm_epilogue(rt, h, w_hidden, b_hidden, w_gate, b_gate, rows, k, dim, *,
                        precision="fp32", wait_for=None):
    """GEGLU(h @ W^T + b) with W split into its hidden and gate halves ((dim, k) each): the gate
    GEMM applies GELU in its epilogue (gemm_gelu), then one multiply. Returns (out_buf, events)."""
    hid, e1 = gemm.linear(rt, h, w_hidden, b_hidden, rows, k, dim, precision=precision,
                          wait_for=wait_for)
    gate, e2 = gemm.linear(rt, h, w_gate, b_gate, rows, k, dim, gelu=True, precision=precision,
                           wait_for=e1)
    out = rt.alloc(rows * dim, precision, "geglu output")
    return out, e1 + e2 + _mul(rt, hid, gate, out, rows, dim, dim, precision, e2)


def ff_geglu_host(rt, h, w, b, *, variant="geglu_fused", precision="fp32"):
    """The feed-forward's first half on host arrays: GEGLU(h @ w^T + b), h (rows, k), w (2*dim, k).
    standalone / geglu_fused: one linear into (rows, 2*dim), then the GEGLU passes;
    gemm_epilogue: geglu_gemm_epilogue. Returns (float32 (rows, dim), events)."""
    if variant not in GEGLU_VARIANTS:
        raise SdsimError(f"geglu: unknown variant '{variant}'; expected one of {GEGLU_VARIANTS}")
    rows, k = h.shape
    dim = w.shape[0] // 2
    hb = rt.to_device(h, precision, "ff input")
    if variant == "gemm_epilogue":
        bufs = [rt.to_device(a, precision, n) for a, n in
                ((w[:dim], "w hidden"), (b[:dim], "b hidden"), (w[dim:], "w gate"),
                 (b[dim:], "b gate"))]
        out, ev = geglu_gemm_epilogue(rt, hb, *bufs, rows, k, dim, precision=precision)
    else:
        y, ev = gemm.linear(rt, hb, rt.to_device(w, precision, "ff weight"),
                            rt.to_device(b, precision, "ff bias"), rows, k, 2 * dim,
                            precision=precision)
        out, ev2 = geglu(rt, y, rows, dim, variant=variant, precision=precision, wait_for=ev)
        ev = ev + ev2
    return rt.from_device(out, (rows, dim), precision, wait_for=ev), ev


def activation_host(rt, x, kind, *, precision="fp32"):
    """Host-array wrapper of `activation`; returns (float32 out, events)."""
    out, ev = activation(rt, rt.to_device(x, precision, "x"), x.size, kind, precision=precision)
    return rt.from_device(out, x.shape, precision, wait_for=ev), ev


def geglu_host(rt, x, *, variant="geglu_fused", precision="fp32"):
    """Host-array wrapper of `geglu` on x (..., 2*dim); returns (float32 (..., dim), events)."""
    dim = x.shape[-1] // 2
    rows = x.size // (2 * dim) if dim else 0
    out, ev = geglu(rt, rt.to_device(x, precision, "x"), rows, dim, variant=variant,
                    precision=precision)
    return rt.from_device(out, x.shape[:-1] + (dim,), precision, wait_for=ev), ev


# --- float64 references ------------------------------------------------------------------------
def gelu_ref(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def quick_gelu_ref(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-1.702 * x))


def silu_ref(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-x))


REFERENCES = {"gelu": gelu_ref, "quick_gelu": quick_gelu_ref, "silu": silu_ref}


def geglu_ref(x):
    x = np.asarray(x, np.float64)
    hidden, gate = np.split(x, 2, axis=-1)
    return hidden * gelu_ref(gate)


#: elementwise with O(1) outputs. fp32: erf/exp are within 4 ulp in OpenCL, so 1e-6 of the
#: output scale. fp16: one rounding of the output (2^-11 relative) plus, for standalone GEGLU,
#: the rounded gelu(gate) temporary: 2e-3 relative. The GEMM variants add a k-term float32 dot
#: (k <= 1280): 1e-5 relative in fp32, and the fp16-rounded GEMM output (2^-11) feeding GELU.
TOLERANCE = {"fp32": (1e-6, 1e-5), "fp16": (1e-3, 2e-3)}
FF_TOLERANCE = {"fp32": (1e-5, 1e-4), "fp16": (2e-3, 4e-3)}


def _r(a, precision):
    return a.astype(np.float16).astype(np.float64) if precision == "fp16" else a


def _ff_case(variant, rows, k, dim, precision):
    """The FF's first half (GEMM + GEGLU): each variant timed from the same input, with the
    GEMM's cost (K1's linear family) added to the GEGLU dispatches' costs."""
    shape = dict(tokens=rows, dim=dim)

    def make(rng):
        return {"h": rng.standard_normal((rows, k), np.float32),
                "w": (rng.standard_normal((2 * dim, k)) / np.sqrt(k)).astype(np.float32),
                "b": rng.standard_normal(2 * dim, np.float32) * 0.1}

    def run(rt, i):
        return ff_geglu_host(rt, i["h"], i["w"], i["b"], variant=variant, precision=precision)

    def ref(i):
        return geglu_ref(_r(i["h"], precision) @ _r(i["w"], precision).T + _r(i["b"], precision))

    if variant == "gemm_epilogue":
        gemm_cost = (costs("linear", "tiled", m=rows, k=k, n=dim, precision=precision)
                     + costs("linear", "tiled_gelu", m=rows, k=k, n=dim, precision=precision))
    else:
        gemm_cost = costs("linear", "tiled", m=rows, k=k, n=2 * dim, precision=precision)
    return BenchCase("gelu", variant, dict(shape, k=k), precision, make, run, ref,
                     FF_TOLERANCE[precision],
                     gemm_cost + costs("gelu", variant, precision=precision, **shape))


def _act_case(kind, numel, precision):
    def make(rng):
        return {"x": rng.standard_normal(numel, np.float32) * 3}

    def run(rt, i):
        return activation_host(rt, i["x"], kind, precision=precision)

    def ref(i):
        return REFERENCES[kind](_r(i["x"], precision))

    return BenchCase("elementwise", kind, {"numel": numel}, precision, make, run, ref,
                     TOLERANCE[precision], costs("elementwise", kind, numel=numel,
                                                 precision=precision))


def bench_cases(quick: bool) -> list[BenchCase]:
    """The UNet FF at 64x64 (2x4096 tokens, 320 -> 2x1280 GEGLU), the CLIP MLP activation
    (77 x 3072 quick_gelu) and the VAE/UNet SiLU; --quick uses small shapes."""
    if quick:
        ff, acts = [(67, 40, 96)], [("gelu", 1000), ("quick_gelu", 1000), ("silu", 1000)]
    else:
        ff = [(8192, 320, 1280)]
        acts = [("gelu", 8192 * 1280), ("quick_gelu", 77 * 3072), ("silu", 2 * 320 * 64 * 64)]
    cases = []
    for precision in ("fp32", "fp16"):
        for s in ff:
            for v in GEGLU_VARIANTS:
                cases.append(_ff_case(v, *s, precision))
        for kind, n in acts:
            cases.append(_act_case(kind, n, precision))
    return cases
