"""The NumPy reference backend: every op of sdsim/ops.py computed in float32 on the CPU.

Tensors are plain NumPy arrays (NCHW images, (B, N, C) tokens). Memory is kept in check where the
naive formulation would not be: conv2d is im2col + BLAS matmul over blocks of output rows (the
column buffer never exceeds `WORKSPACE_BYTES`), and attention runs per head over blocks of
queries so the full (B, heads, Nq, Nk) score matrix is never allocated. The row-wise hot loops (norms, GELU
variants) are Numba kernels that run on all cores; attention's softmax uses NumPy's SIMD ufuncs.

precision="fp16" simulates a mobile GPU: weights and each op's output are stored as float16 (the
points a kernel writes to memory), all arithmetic inside an op is float32. Every op's output is
watched for inf/NaN; the first op that produces one is kept in `first_nonfinite` (op name and
module scope) and reported once as a warning, or raised as SdsimError when `strict=True`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import glob
import math
import os
import warnings

import numba
import numpy as np

# Numba's OpenMP layer costs milliseconds per parallel region on small CI machines (measured
# ~8 ms vs 0.04 ms on 2 cores); the workqueue layer has no such overhead. An explicit
# NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from sdsim.errors import SdsimError
from sdsim.ops import Backend, conv_out_hw, padding4, upsample_size

#: cap on the im2col column buffer of conv2d (bytes)
WORKSPACE_BYTES = 64 << 20
#: conv2d computes (positions x K)(K x Cout) instead of (Cout x K)(K x positions) when a block has
#: at least this many output positions and at most this many output channels: OpenBLAS runs that
#: orientation 10-25% faster at SD's 64x64 and 32x32 shapes and slower at 16x16 (measured)
TRANSPOSED_GEMM_MIN_POSITIONS = 1024
TRANSPOSED_GEMM_MAX_COUT = 640
#: one block of attention scores (bytes): small enough to stay in a core's L2 cache
ATTENTION_BLOCK_BYTES = 1 << 20
#: below this many multiply-adds per matmul pair, attention stays on the calling thread
THREADED_ATTENTION_WORK = 1 << 22

_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))


# --- Numba kernels: float32 in, float32 out, parallel over rows ---------------------------------

@numba.njit(cache=True)
def _row_mean_var(x2, r):
    """Mean and (biased) variance of row r of a (rows, n) float32 array, two-pass in float64."""
    n = x2.shape[1]
    s = 0.0
    for j in range(n):
        s += x2[r, j]
    m = s / n
    v = 0.0
    for j in range(n):
        d = x2[r, j] - m
        v += d * d
    return m, v / n


@numba.njit(parallel=True, cache=True)
def _group_stats(x3):
    """Mean and (biased) variance of each row of a (rows, n) float32 array."""
    rows = x3.shape[0]
    mean = np.empty(rows, np.float64)
    var = np.empty(rows, np.float64)
    for r in numba.prange(rows):
        mean[r], var[r] = _row_mean_var(x3, r)
    return mean, var


@numba.njit(parallel=True, cache=True)
def _group_norm_apply(x4, mean, rstd, weight, bias, groups, silu, out):
    """out = (x - mean) * rstd * weight + bias (then SiLU), x4 is (B, C, HW)."""
    b_, c_, n = x4.shape
    cpg = c_ // groups
    for bc in numba.prange(b_ * c_):
        b = bc // c_
        c = bc % c_
        g = b * groups + c // cpg
        scale = np.float32(rstd[g] * weight[c])
        shift = np.float32(bias[c] - mean[g] * rstd[g] * weight[c])
        for j in range(n):
            y = x4[b, c, j] * scale + shift
            if silu:
                y = y / (np.float32(1.0) + np.exp(-y))
            out[b, c, j] = y


@numba.njit(parallel=True, cache=True)
def _layer_norm_rows(x2, weight, bias, eps, out):
    rows, n = x2.shape
    for r in numba.prange(rows):
        m, var = _row_mean_var(x2, r)
        rstd = 1.0 / math.sqrt(var + eps)
        for j in range(n):
            out[r, j] = np.float32((x2[r, j] - m) * rstd) * weight[j] + bias[j]


@numba.njit(parallel=True, cache=True)
def _geglu_rows(x2, out):
    """out = hidden * gelu_erf(gate) with x2 = [hidden | gate] along the last axis."""
    rows, n2 = x2.shape
    n = n2 // 2
    for r in numba.prange(rows):
        for j in range(n):
            g = x2[r, n + j]
            out[r, j] = x2[r, j] * (np.float32(0.5) * g * (np.float32(1.0) + math.erf(g * _SQRT_HALF)))


@numba.njit(parallel=True, cache=True)
def _unary_rows(x2, kind, out):
    """Elementwise activations on (rows, n): 0 = gelu (erf), 1 = quick_gelu, 2 = silu."""
    rows, n = x2.shape
    for r in numba.prange(rows):
        for j in range(n):
            v = x2[r, j]
            if kind == 0:
                out[r, j] = np.float32(0.5) * v * (np.float32(1.0) + math.erf(v * _SQRT_HALF))
            elif kind == 1:
                out[r, j] = v / (np.float32(1.0) + np.exp(np.float32(-1.702) * v))
            else:
                out[r, j] = v / (np.float32(1.0) + np.exp(-v))


_UNARY = {"gelu": 0, "quick_gelu": 1, "silu": 2}
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _BlasThreads:
    """Switch NumPy's bundled OpenBLAS to one thread for a while (found by its exported symbol;
    when it cannot be found, `available` is False and attention runs on the calling thread)."""

    def __init__(self):
        self._set = self._get = None
        libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "")):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    self._set, self._get = setter, getter
                    return

    @property
    def available(self) -> bool:
        return self._set is not None

    @contextlib.contextmanager
    def single_threaded(self):
        before = self._get()
        self._set(1)
        try:
            yield
        finally:
            self._set(before)


_BLAS = _BlasThreads()
_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(_CORES, thread_name_prefix="sdsim-attn")
    return _POOL


class NumpyBackend(Backend):
    """Runs the model on NumPy arrays; `params` maps diffusers parameter names to arrays."""

    name = "numpy"

    def __init__(self, params=None, precision: str = "fp32", strict: bool = False):
        super().__init__()
        if precision not in ("fp32", "fp16"):
            raise SdsimError(f"precision must be fp32 or fp16, not {precision!r}")
        self.params = params if params is not None else {}
        self.precision = precision
        self.store_dtype = np.float16 if precision == "fp16" else np.float32
        self.strict = strict
        self.first_nonfinite: tuple[str, str] | None = None
        self._cache: dict[str, np.ndarray] = {}

    # --- tensors ---------------------------------------------------------------------------
    def value(self, param):
        """The array of a Param (looked up by name), stored at the backend's precision."""
        if param is None or isinstance(param, np.ndarray):
            return param
        arr = self._cache.get(param.name)
        if arr is None:
            arr = self.weight(self.params, param)
            if arr.dtype != self.store_dtype:
                arr = arr.astype(self.store_dtype)
                self._cache[param.name] = arr
        return arr

    def _w(self, param):
        """A weight as float32 for arithmetic (a cast copy in fp16 mode)."""
        w = self.value(param)
        return None if w is None else _f32(w)

    def input(self, x):
        """Bring an external tensor (latents, ids excepted) to the storage precision."""
        return np.ascontiguousarray(x, dtype=self.store_dtype)

    def _store(self, out, op):
        """Round an op's result to the storage dtype and watch it for inf/NaN."""
        with np.errstate(over="ignore"):
            out = out.astype(self.store_dtype, copy=False)
        if self.first_nonfinite is None and out.size and \
                not np.isfinite(np.sum(out, dtype=np.float32)) and not np.isfinite(out).all():
            self.first_nonfinite = (op, self.current_scope)
            msg = (f"{self.precision}: first inf/NaN produced by {op} in "
                   f"{self.current_scope or '<top>'}")
            if self.strict:
                raise SdsimError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return out

    # --- ops -------------------------------------------------------------------------------
    def conv2d(self, x, weight, bias, stride=1, padding=0):
        x, w, b = _f32(x), self._w(weight), self._w(bias)
        return self._store(conv2d_f32(x, w, b, stride, padding), "conv2d")

    def linear(self, x, weight, bias=None):
        x, w, b = _f32(x), self._w(weight), self._w(bias)
        lead = x.shape[:-1]
        out = x.reshape(-1, x.shape[-1]) @ w.T
        if b is not None:
            out += b
        return self._store(out.reshape(*lead, w.shape[0]), "linear")

    def group_norm(self, x, groups, weight, bias, eps, act=None):
        if act not in (None, "silu"):
            raise SdsimError(f"group_norm: unknown fused activation {act!r}")
        x = _f32(x)
        bsz, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(bsz, c, -1)
        mean, var = _group_stats(x3.reshape(bsz * groups, -1))
        rstd = 1.0 / np.sqrt(var + eps)
        out = np.empty_like(x3)
        _group_norm_apply(x3, mean, rstd, self._w(weight), self._w(bias), groups,
                          act == "silu", out)
        return self._store(out.reshape(x.shape), "group_norm")

    def layer_norm(self, x, weight, bias, eps):
        x = np.ascontiguousarray(_f32(x))
        out = np.empty_like(x)
        _layer_norm_rows(x.reshape(-1, x.shape[-1]), self._w(weight), self._w(bias), float(eps),
                         out.reshape(-1, x.shape[-1]))
        return self._store(out, "layer_norm")

    def attention(self, q, k, v, heads, causal=False):
        out = attention_f32(_f32(q), _f32(k), _f32(v), heads, causal)
        return self._store(out, "attention")

    def geglu(self, x):
        x = np.ascontiguousarray(_f32(x))
        out = np.empty(x.shape[:-1] + (x.shape[-1] // 2,), np.float32)
        _geglu_rows(x.reshape(-1, x.shape[-1]), out.reshape(-1, out.shape[-1]))
        return self._store(out, "geglu")

    def _unary(self, x, op):
        x = np.ascontiguousarray(_f32(x))
        out = np.empty_like(x)
        n = x.shape[-1] if x.ndim else 1
        _unary_rows(x.reshape(-1, n), _UNARY[op], out.reshape(-1, n))
        return self._store(out, op)

    def gelu(self, x):
        return self._unary(x, "gelu")

    def quick_gelu(self, x):
        return self._unary(x, "quick_gelu")

    def silu(self, x):
        return self._unary(x, "silu")

    def add(self, a, b):
        return self._store(np.add(_f32(a), _f32(b)), "add")

    def upsample_nearest2x(self, x, size=None):
        bsz, c, h, w = x.shape
        oh, ow = upsample_size(h, w, size)
        out = np.broadcast_to(x[:, :, :, None, :, None], (bsz, c, h, 2, w, 2))
        return self._store(out.reshape(bsz, c, 2 * h, 2 * w)[:, :, :oh, :ow], "upsample_nearest2x")

    def concat(self, xs, axis=1):
        return self._store(np.concatenate([_f32(x) for x in xs], axis=axis), "concat")

    def nchw_to_nlc(self, x):
        bsz, c, h, w = x.shape
        return self._store(np.ascontiguousarray(x.reshape(bsz, c, h * w).transpose(0, 2, 1)),
                           "nchw_to_nlc")

    def nlc_to_nchw(self, x, h, w):
        bsz, n, c = x.shape
        return self._store(np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(bsz, c, h, w),
                           "nlc_to_nchw")

    def reshape(self, x, shape):
        return x.reshape(shape)

    def embedding(self, ids, table, position_table=None):
        ids = np.asarray(ids)
        out = self._w(table)[ids]
        if position_table is not None:
            out += self._w(position_table)[:ids.shape[-1]]
        return self._store(out, "embedding")

    def timestep_embedding(self, t, dim, flip_sin_to_cos, shift):
        """Kept in float32 in both precisions, as the trace backend records it."""
        return sinusoidal_embedding(t, dim, flip_sin_to_cos, shift)


def _f32(a):
    return a if a is None or a.dtype == np.float32 else np.asarray(a, dtype=np.float32)


def conv2d_f32(x, w, b, stride=1, padding=0):
    """2-D convolution (cross-correlation, as PyTorch) by im2col + matmul over row blocks."""
    bsz, cin, h, wd = x.shape
    cout, cin_w, k, k2 = w.shape
    if cin_w != cin or k != k2:
        raise SdsimError(f"conv2d: input has {cin} channels, weight is {w.shape}")
    pad = padding4(padding)
    ho, wo = conv_out_hw(h, wd, k, stride, pad)
    out = np.empty((bsz, cout, ho, wo), np.float32)
    if k == 1 and stride == 1 and pad == (0, 0, 0, 0):
        np.matmul(w.reshape(cout, cin), x.reshape(bsz, cin, h * wd), out=out.reshape(bsz, cout, -1))
    else:
        t, bot, l, r = pad
        xp = np.zeros((bsz, cin, h + t + bot, wd + l + r), np.float32)
        xp[:, :, t:t + h, l:l + wd] = x
        wmat = w.reshape(cout, cin * k * k)
        rows = max(1, min(ho, WORKSPACE_BYTES // (4 * cin * k * k * wo)))
        col = np.empty((cin, k, k, rows, wo), np.float32)
        transposed = cout <= TRANSPOSED_GEMM_MAX_COUT and rows * wo >= TRANSPOSED_GEMM_MIN_POSITIONS
        res = np.empty((rows * wo, cout) if transposed else (cout, rows * wo), np.float32)
        for n in range(bsz):
            for r0 in range(0, ho, rows):
                r1 = min(ho, r0 + rows)
                cb = col[:, :, :, :r1 - r0]
                for i in range(k):
                    for j in range(k):
                        cb[:, i, j] = xp[n, :, r0 * stride + i:(r1 - 1) * stride + i + 1:stride,
                                         j:(wo - 1) * stride + j + 1:stride]
                c2 = (cb if r1 - r0 == rows else np.ascontiguousarray(cb)).reshape(cin * k * k, -1)
                if transposed:
                    np.matmul(c2.T, wmat.T, out=res[:c2.shape[1]])
                    out[n, :, r0:r1] = res[:c2.shape[1]].T.reshape(cout, r1 - r0, wo)
                else:
                    np.matmul(wmat, c2, out=res[:, :c2.shape[1]])
                    out[n, :, r0:r1] = res[:, :c2.shape[1]].reshape(cout, r1 - r0, wo)
    if b is not None:
        out += b[None, :, None, None]
    return out


def attention_f32(q, k, v, heads, causal=False):
    """softmax(Q K^T / sqrt(d)) V, one (batch, head) at a time over blocks of queries whose
    scores (at most ATTENTION_BLOCK_BYTES) stay in cache: the full score matrix never exists.

    Per block: one BLAS matmul of the pre-scaled queries with a contiguous K^T, then the softmax
    numerator exp(s - rowmax) in place with NumPy's SIMD float32 ufuncs, one matmul with V, and
    the division by the row sums on the (rows, d) output rather than the (rows, Nk) scores (as
    FlashAttention does). The (batch, head) pairs are spread over one thread per core, each
    calling BLAS single-threaded (many small multi-threaded BLAS calls mostly spin); each pair is
    computed by one thread in a fixed order, so results do not depend on the thread count."""
    bsz, nq, c = q.shape
    nk = k.shape[1]
    d = c // heads
    n = bsz * heads
    qh = np.empty((n, nq, d), np.float32)
    np.multiply(q.reshape(bsz, nq, heads, d).transpose(0, 2, 1, 3), np.float32(1.0 / math.sqrt(d)),
                out=qh.reshape(bsz, heads, nq, d))
    kt = np.ascontiguousarray(k.reshape(bsz, nk, heads, d).transpose(0, 2, 3, 1)).reshape(n, d, nk)
    vh = np.ascontiguousarray(v.reshape(bsz, nk, heads, d).transpose(0, 2, 1, 3)).reshape(n, nk, d)
    out = np.empty((bsz, nq, heads, d), np.float32)
    out_h = out.transpose(0, 2, 1, 3)  # (B, heads, Nq, d) view: blocks land in place
    rows = max(1, min(nq, ATTENTION_BLOCK_BYTES // (4 * nk)))
    masked = np.triu(np.ones((nq, nk), bool), k=1) if causal else None

    def run(pairs):
        scores = np.empty((rows, nk), np.float32)
        row_max = np.empty((rows, 1), np.float32)
        row_sum = np.empty((rows, 1), np.float32)
        block = np.empty((rows, d), np.float32)
        for p in pairs:
            for q0 in range(0, nq, rows):
                q1 = min(nq, q0 + rows)
                s, m, t, o = scores[:q1 - q0], row_max[:q1 - q0], row_sum[:q1 - q0], block[:q1 - q0]
                np.matmul(qh[p, q0:q1], kt[p], out=s)
                if causal:
                    s[masked[q0:q1]] = -np.inf
                np.max(s, axis=1, keepdims=True, out=m)
                np.subtract(s, m, out=s)
                np.exp(s, out=s)
                np.sum(s, axis=1, keepdims=True, out=t)
                np.matmul(s, vh[p], out=o)
                np.divide(o, t, out=out_h[p // heads, p % heads, q0:q1])

    workers = min(n, _CORES)
    if workers > 1 and _BLAS.available and nq * nk * d * n >= THREADED_ATTENTION_WORK:
        with _BLAS.single_threaded():
            list(_pool().map(run, [range(i, n, workers) for i in range(workers)]))
    else:
        run(range(n))
    return out.reshape(bsz, nq, c)


def sinusoidal_embedding(t, dim, flip_sin_to_cos, shift, dtype=np.float32, max_period=10000):
    """Sinusoidal timestep embedding, as diffusers' get_timestep_embedding (scale 1), computed
    in `dtype` (float32 as the model runs it; float64 as the kernels' reference)."""
    t = np.asarray(t, dtype=dtype).reshape(-1)
    half = dim // 2
    exponent = -math.log(max_period) * np.arange(half, dtype=dtype)
    freqs = np.exp(exponent / dtype(half - shift)).astype(dtype)
    args = t[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = np.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(dtype)
