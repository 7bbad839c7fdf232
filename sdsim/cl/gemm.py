"""GEMM kernels on a device (opencl/gemm.cl): linear with bias, linear with a GELU epilogue,
batched matmul, and the strided `gemm` launch that conv (im2col, Winograd) and attention reuse.

Buffer functions take and return device buffers in storage precision and the list of events they
enqueued; `*_host` wrappers take NumPy arrays (for tests and bench). Layouts are row-major:
linear x (m, k), W (n, k) as in PyTorch, y (m, n); matmul a (batch, m, k), b (batch, k, n) or
(batch, n, k) with trans_b, c (batch, m, n).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from sdsim.cl.bench import BenchCase
from sdsim.kernels import costs

RT = 16   # work-group edge of the gemm kernel (reqd_work_group_size)
TS = 64   # output tile edge


def dummy(rt, precision):
    """A one-element buffer passed where a kernel's optional operand (bias) is absent."""
    return rt.constant(("dummy", precision), lambda: rt.alloc(1, precision, "dummy bias"))


def gemm(rt, a, b, c, m, n, k, *, batch=1, strides_a, strides_b, strides_c, bias=None,
         bias_mode=0, act=0, alpha=1.0, precision="fp32", wait_for=None):
    """C[i] = act(alpha * A[i] @ B[i] + bias) for i < batch; strides are (batch, row, col) in
    elements; bias_mode 1 adds bias[col], 2 adds bias[row]; act 1 is the exact erf GELU."""
    kern = rt.kernel("gemm", "gemm", precision, {"BIAS": bias_mode, "ACT": act})
    gsize = (-(-n // TS) * RT, -(-m // TS) * RT, batch)
    i32 = np.int32
    return rt.launch(kern, gsize, (RT, RT, 1), a, b, bias if bias is not None else
                     dummy(rt, precision), c, i32(m), i32(n), i32(k), np.float32(alpha),
                     *map(i32, strides_a), *map(i32, strides_b), *map(i32, strides_c),
                     wait_for=wait_for)


def linear(rt, x, w, bias, m, k, n, *, gelu=False, precision="fp32", out=None, wait_for=None):
    """y (m, n) = x (m, k) @ w^T (w is (n, k)) + bias, GELU'd in the epilogue if `gelu`."""
    out = out if out is not None else rt.alloc(m * n, precision, "linear output")
    ev = gemm(rt, x, w, out, m, n, k, strides_a=(0, k, 1), strides_b=(0, 1, k),
              strides_c=(0, n, 1), bias=bias, bias_mode=1 if bias is not None else 0,
              act=int(gelu), precision=precision, wait_for=wait_for)
    return out, [ev]


def matmul(rt, a, b, batch, m, k, n, *, trans_b=False, alpha=1.0, precision="fp32", out=None,
           wait_for=None):
    """c[i] = alpha * a[i] @ b[i] (b[i] is (k, n), or (n, k) used transposed if trans_b)."""
    out = out if out is not None else rt.alloc(batch * m * n, precision, "matmul output")
    sb = (n * k, 1, k) if trans_b else (k * n, n, 1)
    ev = gemm(rt, a, b, out, m, n, k, batch=batch, strides_a=(m * k, k, 1), strides_b=sb,
              strides_c=(m * n, n, 1), alpha=alpha, precision=precision, wait_for=wait_for)
    return out, [ev]


def linear_host(rt, x, w, bias=None, *, gelu=False, precision="fp32"):
    """Host-array linear: returns (y float32 (m, n), events)."""
    m, k = x.shape
    n = w.shape[0]
    bb = rt.to_device(bias, precision, "bias") if bias is not None else None
    out, evs = linear(rt, rt.to_device(x, precision, "x"), rt.to_device(w, precision, "weight"),
                      bb, m, k, n, gelu=gelu, precision=precision)
    return rt.from_device(out, (m, n), precision), evs


def matmul_host(rt, a, b, *, trans_b=False, alpha=1.0, precision="fp32"):
    """Host-array batched matmul: a (batch, m, k), b (batch, k, n) or (batch, n, k)."""
    batch, m, k = a.shape
    n = b.shape[1] if trans_b else b.shape[2]
    out, evs = matmul(rt, rt.to_device(a, precision, "a"), rt.to_device(b, precision, "b"),
                      batch, m, k, n, trans_b=trans_b, alpha=alpha, precision=precision)
    return rt.from_device(out, (batch, m, n), precision), evs


def gelu_ref(x):
    """Exact erf GELU in float64."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


# Bench tolerance (atol, rel to max|ref|) for unit-variance inputs. fp32: float accumulation of
# K <= 1280 products gives errors ~sqrt(K)*2^-24*|terms|, far under 1e-4 of the output scale.
# fp16 storage rounds every input and the output to 2^-11 relative: ~5e-4 of the output scale,
# so 1e-2 leaves a 20x margin while still catching any indexing or tiling error (errors O(1)).
TOL = {"fp32": (1e-5, 1e-4), "fp16": (1e-3, 1e-2)}


def bench_cases(quick: bool) -> list[BenchCase]:
    """linear (tiled, tiled_gelu) and batched matmul at SD1.4 shapes (or small ones if quick)."""
    if quick:
        lin = [(77, 96, 130)]
        mm = [(4, 100, 40, 77)]
    else:  # UNet 64x64 feed-forward and attention shapes: tokens 4096, C 320, FF 1280
        lin = [(4096, 320, 1280), (4096, 1280, 320), (77, 768, 320)]
        mm = [(8, 4096, 40, 77), (8, 1024, 80, 1024)]
    cases = []
    for prec in ("fp32", "fp16"):
        for (m, k, n) in lin:
            for gelu in (False, True):
                cases.append(_linear_case(m, k, n, gelu, prec))
        for (bt, m, k, n) in mm:
            cases.append(_matmul_case(bt, m, k, n, prec))
    return cases


def _linear_case(m, k, n, gelu, prec):
    name = "tiled_gelu" if gelu else "tiled"

    def make(rng):
        return {"x": rng.standard_normal((m, k), dtype=np.float32),
                "w": (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32),
                "b": rng.standard_normal(n, dtype=np.float32)}

    def ref(i):
        y = i["x"].astype(np.float64) @ i["w"].astype(np.float64).T + i["b"]
        return gelu_ref(y) if gelu else y

    return BenchCase("linear", name, {"m": m, "k": k, "n": n, "bias": True}, prec, make,
                     lambda rt, i: linear_host(rt, i["x"], i["w"], i["b"], gelu=gelu,
                                               precision=prec),
                     ref, TOL[prec], costs("linear", name, m=m, k=k, n=n, bias=True,
                                           precision=prec))


def _matmul_case(bt, m, k, n, prec):
    def make(rng):
        return {"a": rng.standard_normal((bt, m, k), dtype=np.float32),
                "b": (rng.standard_normal((bt, k, n)) / np.sqrt(k)).astype(np.float32)}

    return BenchCase("matmul", "batched", {"batch": bt, "m": m, "k": k, "n": n}, prec, make,
                     lambda rt, i: matmul_host(rt, i["a"], i["b"], precision=prec),
                     lambda i: i["a"].astype(np.float64) @ i["b"].astype(np.float64),
                     TOL[prec], costs("matmul", "batched", batch=bt, m=m, k=k, n=n,
                                      precision=prec))
