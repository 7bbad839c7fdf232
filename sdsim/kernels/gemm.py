"""The register-tiled GEMM (opencl/gemm.cl) and the linear variants built on it.

The kernel computes a TM x TN block of C per work-group (each work-item a WM x WN block in
registers), K streamed in steps of TK through local memory on GPUs or read straight from global
memory by a SIMD micro-kernel on CPUs. The tile configuration is chosen per call from the active
device tuning (sdsim/kernels/tuning.py: per shape class, measured by `sdsim tune`); the launch
geometry, byte counts and timing-model key ("<caller>.<config>") follow the chosen config, so the
cost model prices the build that runs; the caller (CALLERS: `gemm` for linear layers,
`im2col_gemm`, `wino_gemm`) is part of the key because each lays its operands out differently
and finds a different one cold (linear: B, the weights; im2col: A, the weights; Winograd: 36
separate weight matrices with no reuse between batches), which changes a step's time at the same
geometry. A is read once per column block of C (ceil(n/TN) times), B once per row block
(ceil(m/TM) times); C is written once, the bias once per row block. Operands are addressed by
explicit strides, so the same `gemm` launch serves linear, im2col convolution,
the Winograd batched GEMM (sdsim.kernels.conv) and attention's products.

Two choices per call keep small problems from idling the device, both decided here for the cost
model and the launcher alike (`plan`): a narrow C with fewer columns than rows runs transposed
(C^T = B^T A^T, `transposed`; local-memory builds), so the narrow builds' short tile side meets
the short side of C;
and a call with too few work-groups to fill the device (the tuning's `split_groups`) walks K in
slices, one work-group per tile and slice, writing float partial sums that a second dispatch,
`gemm_split_reduce` (its own timing model), adds up with the bias and the epilogue.

Variants of family "linear" (y (m x n) = x (m x k) @ W^T + b, W (n x k) as in PyTorch; the
weight is transposed once at load time (`prepare`) so every GEMM reads B along its rows):
- tiled: one dispatch;
- tiled_gelu: the exact erf GELU applied in the GEMM's epilogue, chosen by the lowering where a
  GELU follows a linear and reads nothing else (`gelu=fused`; e.g. an OpenCLIP text encoder's MLP).
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

import numpy as np

from sdsim.kernels import KernelCost, Launch, Variant, register, sweep, tuning
from sdsim.kernels.elementwise import GELU_FLOPS, gelu_ref
from sdsim.precision import BYTES, stored

#: the callers of the GEMM kernel, each with its own timing models ("<caller>.<config>"):
#: attention's QK^T (K read across its rows), P.V and the partially fused softmax's P.V (an exp
#: per loaded score) among them
CALLERS = ("gemm", "im2col_gemm", "wino_gemm", "attn_qk", "attn_pv", "attn_pv_softmax")
#: columns of C per work-group of `gemm_split_reduce`
REDUCE_LOCAL = 64
#: the timing models of a split call's reduction: after a linear GEMM, and after a conv's or
#: attention's, which measures about 3 us longer at the same geometry (the H100's fp16 sweep:
#: 5.8-8.8 us against 4.0-5.4 us for reductions of up to 1.3 MB; the H200's alike); one model
#: for both priced SD's linear reductions 13-17% long on the H200. A profile calibrated before
#: the split prices the second by the first (its `model_alt`)
REDUCE_MODEL = "gemm_split_reduce"
REDUCE_MODEL_CONV_ATTN = "gemm_split_reduce.conv_attn"


def gemm_launch(batch: int, m: int, k: int, n: int, cfg=None, split: int = 1) -> Launch:
    """The geometry of one call under `cfg` (default: the active tuning's choice for it), its K
    walked in `split` slices by as many times the work-groups."""
    cfg = cfg or tuning.current().gemm_config(batch, m, n)
    wm, wn = cfg.tm // cfg.rtm, cfg.tn // cfg.rtn
    return Launch.grid((ceil(n / wn), ceil(m / wm), batch * split), (cfg.rtn, cfg.rtm, 1),
                       steps=slice_steps(k, cfg, split), useful=m * n * batch * split / (wm * wn))


def slice_steps(k: int, cfg, split: int) -> int:
    """The k-steps (of TK) each of a call's `split` K slices walks (all of K when 1)."""
    return ceil(ceil(k / cfg.tk) / split)


def slice_length(k: int, cfg, split: int) -> int:
    """The K elements each slice sums: the kernel's `kslice` argument (K when unsplit)."""
    return slice_steps(k, cfg, split) * cfg.tk if split > 1 else k


def k_walk(batch: int, m: int, k: int, n: int, attention: bool = False) -> tuple:
    """How the active tuning's call walks K, in the terms of sdsim.sim.gemm: the slice length
    (None: one slice) and the local-memory build's step, to which each slice is zero-padded
    (None: the CPU micro-kernel, which stops at K). `attention`: one of attention's calls
    (never transposed, `gemm_cost`)."""
    cfg, split, _ = plan(batch, m, k, n, may_swap=not attention)
    return (slice_length(k, cfg, split) if split > 1 else None, cfg.tk if cfg.local else None)


def reduce_launch(batch: int, m: int, n: int, split: int) -> Launch:
    """The geometry of a split call's `gemm_split_reduce`: one work-item per element of C, rows of
    REDUCE_LOCAL columns, the `split` partial sums walked serially."""
    return Launch.grid((n, m, batch), (REDUCE_LOCAL, 1, 1), steps=split)


def transposed(batch: int, m: int, n: int) -> bool:
    """Whether a call runs as C^T = B^T A^T: a narrow C with fewer columns than rows (a
    Winograd GEMM over the few tiles of a small latent), so the narrow builds, whose tiles are
    short in rows, get the short side. Only local-memory builds: they stage either operand
    layout at full speed, while the CPU micro-kernel needs B's rows contiguous (transposed, the
    Winograd GEMMs of a 256x256 UNet ran 1.2-2.4x slower on PoCL)."""
    return (tuning.gemm_class(batch, m, n) == "narrow" and n < m
            and tuning.current().gemm["narrow"].local)


def plan(batch: int, m: int, k: int, n: int, may_swap: bool = True):
    """The active tuning's (config, K slices, transposed) for a call of C (m x n); config and
    slices are those of C^T when transposed (never when not `may_swap`: attention's causal mask
    and score prologue are per row of C)."""
    swap = may_swap and transposed(batch, m, n)
    if swap:
        m, n = n, m
    cfg = tuning.current().gemm_config(batch, m, n)
    return cfg, tuning.current().gemm_split(batch, m, k, n, cfg), swap


#: the suffixes of a bias-less linear GEMM's model key and of one with the GELU epilogue
#: (gemm_cost)
NO_BIAS, GELU = ".nobias", ".gelu"

#: addresses equal modulo this many bytes fall in one L1 set: the span of one way of the L1 data
#: caches of current x86 and Arm cores (32-48 KiB in 8-12 ways), and the cache line
WAY_BYTES, LINE_BYTES = 4096, 64
#: a GPU's cache line (NVIDIA's L1 and L2: 128 bytes in four 32-byte sectors)
LINE_BYTES_GPU = 128


def conflict(rows: int, pitch_bytes: int) -> int:
    """The most of `rows` streams at `pitch_bytes` apart that share one L1 set (Launch.conflict):
    12 rows of a K = 3072 fp32 matrix (12 KiB apart) all share one, and 12 rows of K = 2560
    share one set in pairs of six."""
    sets = [(i * pitch_bytes) % WAY_BYTES // LINE_BYTES for i in range(rows)]
    return max(sets.count(s) for s in set(sets)) if rows else 0


def line_split(pitch_bytes: int, width_bytes: int) -> float:
    """The cache lines a row of `width_bytes` touches on average at `pitch_bytes` between rows
    (from one line-aligned start), over the fewest lines that width needs (Launch.lines): 1 at a
    pitch of a multiple of the line, 1.75 for 64-byte rows at a pitch of 14,000 bytes (offsets
    0, 16, 32 and 48 in turn)."""
    offsets = {(i * pitch_bytes) % LINE_BYTES for i in range(LINE_BYTES)}
    touched = [ceil((o + width_bytes) / LINE_BYTES) for o in offsets]
    return sum(touched) / len(touched) / ceil(width_bytes / LINE_BYTES)


def edge_share(n: int, cfg, strided_b: bool = False) -> float:
    """The share of a CPU micro-kernel call's work-groups that load B one element at a time
    (Launch.edge): every one where B's columns are strided, else those of the last column block
    where it is partial (n not a multiple of the block's width)."""
    if strided_b:
        return 1.0
    wn = cfg.tn // cfg.rtn
    return 1.0 / ceil(n / wn) if n % wn else 0.0


#: the slower paths of Launch.edge, as explanations name them: a GPU build's first reader of a
#: panel of B or a GPU linear GEMM reading rows off the line, the CPU micro-kernel loading a
#: strided B or its last, partial column block
COLD_PATH = "first to read their panel of the input"
OFF_LINE_PATH = "loading rows of A or B off the 128-byte line"
STRIDED_PATH = "loading a strided B one element at a time"
PARTIAL_PATH = "in a partial column block"


def off_line(k: int, n: int, elem_bytes: int) -> bool:
    """Whether a linear GEMM's rows of A (k elements apart) or of B (n apart) start off the
    128-byte line (Launch.edge on GPU builds): an H100's fp16 128 x 128 build steps 7% faster
    where both start on it (m, k and n multiples of 128, as every SD1.4 GEMM has them: its
    fit over such synthetic shapes and others priced them 6% long, median, and 9-13% at 700 to
    1,900 work-groups)."""
    return bool((k * elem_bytes) % LINE_BYTES_GPU or (n * elem_bytes) % LINE_BYTES_GPU)


def cold_share(m: int, cfg, swap: bool) -> float:
    """The share of a local-memory (GPU) call's work-groups that are the first to read their
    panel of B (Launch.edge): one of the ceil(m / tile) work-groups that read each panel, the
    others may find it in the cache that one left (a transposed call reads B^T as its A, the m
    rows of C along its columns). Winograd's GEMMs on an H100 run 9-12% longer with one tile of
    output channels (every work-group a first reader) than with two or four."""
    return 1.0 / ceil(m / (cfg.tn if swap else cfg.tm))


def gemm_cost(kernel: str, batch: int, m: int, k: int, n: int, precision: str,
              bias: bool = False, gelu: bool = False, kernel_class: str = "gemm",
              caller: str = "gemm", attention: bool = False,
              prologue_flops: int = 0, pitch_a: int | None = None,
              strided_b: bool = False, cold_b: bool = False) -> list[KernelCost]:
    """The dispatches of C[b] (m x n) = A[b] (m x k) @ B[b] (k x n) (+bias, GELU): the gemm,
    timed under the model key `caller.<config>` (module doc), and for a split-K call the
    reduction of its partial sums (REDUCE_MODEL, or REDUCE_MODEL_CONV_ATTN after another
    caller's GEMM), which then does the epilogue.
    `attention`: never transposed (`gemm`'s `heads`); `prologue_flops` per
    element of A as loaded (the softmax prologue, which also reads two fp32 row statistics);
    `pitch_a`: elements between A's rows (default k, a dense A); `strided_b`: B's columns are
    not contiguous (K^T of attention's QK^T), which the CPU micro-kernel loads one element at a
    time in every block; `cold_b`: on a GPU, B is a large operand each column of tiles reads
    once (Winograd's transformed input), its first readers slower (`cold_share`)."""
    cfg, split, swap = plan(batch, m, k, n, may_swap=not attention)
    cold = cold_share(m, cfg, swap) if cold_b and cfg.local else 0.0
    # a GPU linear GEMM's other slower path: rows of A or B off the 128-byte line (their
    # pitches, k and n elements, whichever operand the call runs as B)
    off = float(cfg.local and caller == "gemm" and off_line(k, n, BYTES[precision]))
    if swap:
        m, n = n, m
    edge = (cold or off) if cfg.local else edge_share(n, cfg, strided_b)
    path = "" if not edge else COLD_PATH if cold else OFF_LINE_PATH if cfg.local \
        else STRIDED_PATH if strided_b else PARTIAL_PATH
    e = BYTES[precision]
    row_blocks, col_blocks = ceil(m / cfg.tm), ceil(n / cfg.tn)
    mac = 2.0 * batch * m * n * k + batch * m * k * col_blocks * prologue_flops
    epi = batch * m * n * (1 if bias else 0) + batch * m * n * (GELU_FLOPS if gelu else 0)
    read = batch * (m * k * col_blocks + k * n * row_blocks) * e
    read += batch * m * 8 * col_blocks * split if prologue_flops else 0
    bias_read = batch * n * (row_blocks if split == 1 else 1) * e if bias else 0
    out = float(batch * m * n * e)
    # B is walked again by every row of tiles; the CPU micro-kernel streams its WM rows of A
    # side by side (the local-memory builds stage A, and only they transpose) and its work-items'
    # rows of B straddle cache lines where B's pitch is off the line (attention's B is read in
    # place at a head's pitch, and a strided B one element at a time: neither is priced so)
    launch = replace(gemm_launch(batch, m, k, n, cfg, split),
                     reread=float(slice_length(k, cfg, split) * n * e) if row_blocks > 1 else 0.0,
                     conflict=0 if cfg.local else conflict(cfg.tm // cfg.rtm,
                                                           (pitch_a or k) * e),
                     edge=edge, path=path,
                     lines=1.0 if cfg.local or attention or strided_b
                     else line_split(n * e, cfg.tn // cfg.rtn * e))
    # a linear GEMM without bias or GELU is its own build (BIAS=0, attention's projections),
    # and so is one with the GELU epilogue (ACT=1: on PoCL the erf of 13 M outputs doubled a
    # 2500x200x5200 GEMM's 0.1 s), each timed apart so that no build's fit absorbs another's
    # (on PoCL, fp16, SD's bias-less projections stepped 30% slower than their bias twins of the
    # same geometry in one run); a body without coefficients of its own (measurements stored
    # before the record's launcher ran the bias-less build, read as the bias build they timed)
    # is priced by the bias build (`model_alt`)
    model = f"{caller}.{cfg.name}"
    if caller != "gemm":
        suffix = ""
    elif gelu and split == 1:
        suffix = GELU         # a split GEMM leaves its epilogue to the reduction
    else:
        suffix = "" if bias or gelu else NO_BIAS
    keys = dict(model=model + suffix, model_alt=model) if suffix else dict(model=model)
    if split == 1:
        return [KernelCost(kernel, kernel_class, mac + epi, float(read + bias_read), out,
                           launch=launch, half_arith=True, **keys)]
    partial = 4 * batch * split * m * n   # float partial sums
    return [KernelCost(kernel, kernel_class, mac, float(read), float(partial),
                       workspace=partial, launch=launch, half_arith=True, **keys),
            KernelCost(f"{kernel}_reduce", "elementwise", batch * m * n * (split - 1) + epi,
                       float(partial + bias_read), out,
                       launch=reduce_launch(batch, m, n, split),
                       **(dict(model=REDUCE_MODEL) if caller == "gemm" else
                          dict(model=REDUCE_MODEL_CONV_ATTN, model_alt=REDUCE_MODEL)))]


def simulate_gemm(a, b, arith, *, bias=None, bias_mode=0, act=0, alpha=1.0):
    """What `gemm` stores for C = act(alpha * A @ B + bias) at fp16 storage (batched host
    arrays), walking K as the active tuning's call does (sdsim.sim.gemm)."""
    from sdsim.sim import gemm as sim

    kslice, k_step = k_walk(max(a.shape[0], b.shape[0]), a.shape[1], a.shape[2], b.shape[2])
    return sim.gemm(a, b, arith=arith, bias=bias, bias_mode=bias_mode if bias is not None else 0,
                    act=act, alpha=alpha, kslice=kslice, k_step=k_step)


def dummy(rt, precision):
    """A one-element buffer passed where a kernel's optional operand (bias) is absent."""
    return rt.constant(("dummy", precision), lambda: rt.alloc(1, precision, "dummy bias"))


def gemm(rt, a, b, c, m, n, k, *, batch=1, strides_a, strides_b, strides_c, bias=None,
         bias_mode=0, act=0, alpha=1.0, precision="fp32", wait_for=None, heads=None,
         head_strides=(0, 0, 0), stats=None):
    """C[i] = act(alpha * A[i] @ B[i] + bias) for i < batch on device buffers; strides are
    (batch, row, col) in elements; bias_mode 1 adds bias[col], 2 adds bias[row]; act 1 is the
    exact erf GELU, 2 the causal mask. Attention's calls give `heads`: matrix i is head i % heads
    of batch i // heads, at that batch's stride plus the head's (`head_strides`, for A, B, C);
    they are never transposed; `stats` = (row max, reciprocal of the row's sum of exponentials)
    buffers loads each score of A as its softmax probability. Returns the events (two when the
    active tuning splits the call's K)."""
    attention = heads is not None
    cfg, split, swap = plan(batch, m, k, n, may_swap=not attention)
    if swap:   # C^T = B^T A^T: swap the operands, their strides and the bias
        a, b, m, n = b, a, n, m
        (sbb, sbr, sbc), (sab, sar, sac), (scb, scr, scc) = strides_b, strides_a, strides_c
        strides_a, strides_b, strides_c = (sbb, sbc, sbr), (sab, sac, sar), (scb, scc, scr)
        bias_mode = {1: 2, 2: 1}.get(bias_mode, 0)
    defines = dict(cfg.defines, BIAS=bias_mode, ACT=act)
    if attention:
        defines["SOFTMAX_A"] = int(stats is not None)
    hb = np.int32(heads or 1)
    extra = tuple(stats or ())
    i32 = np.int32
    bias = bias if bias is not None else dummy(rt, precision)
    kslice = slice_length(k, cfg, split)
    target = rt.alloc(split * batch * m * n, "fp32", "split-K partial sums") if split > 1 else c
    kern = rt.kernel("gemm", "gemm", precision, dict(defines, SPLIT=int(split > 1)))
    ev = gemm_launch(batch, m, k, n, cfg, split).enqueue(
        rt, kern, a, b, bias, target, i32(m), i32(n), i32(k), i32(kslice), np.float32(alpha),
        *map(i32, strides_a), *map(i32, strides_b), *map(i32, strides_c), hb,
        *map(i32, head_strides), *extra, wait_for=wait_for)
    if split == 1:
        return [ev]
    red = rt.kernel("gemm", "gemm_split_reduce", precision, dict(defines, SPLIT=1))
    return [ev, reduce_launch(batch, m, n, split).enqueue(
        rt, red, target, bias, c, i32(m), i32(n), i32(split), *map(i32, strides_c), hb,
        i32(head_strides[2]), wait_for=[ev])]


def linear(rt, x, wt, bias, m, k, n, *, gelu=False, precision="fp32", out=None, wait_for=None):
    """y (m, n) = x (m, k) @ wt + bias with the weight already transposed (wt is (k, n), see
    `transposed_weight`), GELU'd in the epilogue if `gelu`."""
    out = out if out is not None else rt.alloc(m * n, precision, "linear output")
    return out, gemm(rt, x, wt, out, m, n, k, strides_a=(0, k, 1), strides_b=(0, n, 1),
                     strides_c=(0, n, 1), bias=bias, bias_mode=1 if bias is not None else 0,
                     act=int(gelu), precision=precision, wait_for=wait_for)


def transposed_weight(rt, w, n, k, precision="fp32"):
    """W^T (k, n) of a PyTorch-layout weight W (n, k) on the device: the load-time transform of
    the linear variants (B read along its rows, as vector loads and coalescing want)."""
    from sdsim.kernels.elementwise import transpose

    out, evs = transpose(rt, w, 1, n, k, precision=precision)
    evs[0].wait()
    return out


def linear_host(rt, x, w, bias=None, *, gelu=False, precision="fp32"):
    """Host-array linear with a PyTorch-layout weight w (n, k): returns (y float32 (m, n),
    events)."""
    m, k = x.shape
    n = w.shape[0]
    bb = rt.to_device(bias, precision, "bias") if bias is not None else None
    wt = rt.to_device(np.ascontiguousarray(w.T), precision, "weight")
    out, evs = linear(rt, rt.to_device(x, precision, "x"), wt, bb, m, k, n, gelu=gelu,
                      precision=precision)
    return rt.from_device(out, (m, n), precision), evs


# --- the records -------------------------------------------------------------------------------
def _record(name, gelu, option, bench, cal):
    def cost(m, k, n, bias=True, precision="fp32"):
        return gemm_cost("gemm_gelu" if gelu else ("gemm_bias" if bias else "gemm"), 1, m, k, n,
                         precision, bias=bias, gelu=gelu)

    def launch(rt, a, ins, p, out, precision):
        # a bias-less shape runs the bias-less build (BIAS=0), whatever params it was given
        return linear(rt, ins[0], p["wt"], p.get("b") if a.get("bias", True) else None,
                      a["m"], a["k"], a["n"], gelu=gelu, precision=precision, out=out)[1]

    def prepare(rt, a, params, precision):
        return dict(params, wt=transposed_weight(rt, params["w"], a["n"], a["k"], precision))

    def reference(a, i, precision):
        x, w = stored(i["ins"][0], precision), stored(i["params"]["w"], precision)
        y = x @ w.T
        if "b" in i["params"]:
            y = y + stored(i["params"]["b"], precision)
        return gelu_ref(y) if gelu else y

    def simulate(a, ins, p, arith):
        return simulate_gemm(ins[0].reshape(1, a["m"], a["k"]), p["w"].T[None], arith,
                             bias=p.get("b"), bias_mode=1, act=int(gelu))[0]

    return Variant("linear", name, cost, launch, _operands, _make_inputs, reference,
                   _TOL, bench, cal, option, prepare, simulate, sim_ulps=int(gelu))   # its exp


def _operands(a):
    bias = {"b": a["n"]} if a.get("bias", True) else {}
    return [a["m"] * a["k"]], {"w": a["n"] * a["k"], **bias}, a["m"] * a["n"]


def _make_inputs(a, rng):
    m, k, n = a["m"], a["k"], a["n"]
    params = {"w": (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)}
    if a.get("bias", True):
        params["b"] = rng.standard_normal(n, dtype=np.float32)
    return {"ins": [rng.standard_normal((m, k), dtype=np.float32)], "params": params}


def _lin(m, k, n):
    return dict(m=m, k=k, n=n, bias=True)


# Bench tolerance (atol, rel to max|ref|) for unit-variance inputs. fp32: float accumulation of
# K <= 1280 products gives errors ~sqrt(K)*2^-24*|terms|, far under 1e-4 of the output scale.
# fp16 storage rounds the output to 2^-11 relative: ~5e-4 of the output scale, so 1e-2 leaves a
# 20x margin while still catching any indexing or tiling error (errors O(1)).
_TOL = {"fp32": (1e-5, 1e-4), "fp16": (1e-3, 1e-2)}

# Bench: SD1.4's UNet 64x64 feed-forward (tokens 4096, C 320, FF 1280) and a cross-attention
# projection of the 77 text tokens; calibration: shapes off SD1.4's.
_BENCH = {"tiny": [_lin(5, 7, 9)], "quick": [_lin(77, 96, 130)],
          "full": [_lin(4096, 320, 1280), _lin(4096, 1280, 320), _lin(77, 768, 320)]}

# Calibration sweeps (synthetic, off SD1.4's dimensions): rows from a couple (a timestep
# embedding) to many thousands, so the work-groups span a fraction of one wave to many waves and
# the k-steps span 1 to ~200; shared with every use of the gemm kernel (im2col, Winograd). The
# large class's build also gets the low end of its range (1,100-2,300 blocks of 64 x 64, a few
# hundred of its own work-groups), where SD's feed-forward layers fall and a random draw rarely
# lands; and a draw of its own over thousands of rows by a few hundred to two thousand columns
# and k, the range of SD's projections and 1x1 convs. The pool holds more draws of the first
# kind, for kernel bodies the sweep leaves short of cases (sdsim.calibration.sweep.top_up).
_GRID = dict(m=[1, 3, 8, 60, 150, 500, 1100, 2500, 6000, 10000],
             k=[24, 96, 200, 450, 900, 1800, 2900], n=[40, 100, 300, 700, 1500, 2200, 3500, 5200])
_FIRST = sweep(_lin, 70, seed=5, **_GRID)
_ALIGNED = sweep(_lin, 24, seed=9, m=[384, 1408, 2688, 3456, 5376, 7040],
                 k=[128, 384, 896, 1664, 2432], n=[896, 1664, 2432, 3328, 4480, 6016])
_CAL = {
    "quick": sweep(_lin, 10, seed=5, m=[2, 60, 300], k=[24, 200, 450], n=[40, 300, 700]),
    "full": _FIRST
    + [_lin(m, k, n) for m, n in ((1100, 4000), (500, 9000), (1500, 3000), (2500, 2200),
                                  (700, 9000), (3000, 3000)) for k in (300, 2000)]
    + sweep(_lin, 16, seed=6, m=[1800, 3000, 5000, 7000, 9000], k=[250, 400, 700, 1100, 1600],
            n=[250, 400, 700, 1100, 2000, 2800])
    # a hundred to a few hundred rows by under a thousand k: under one wave of work-groups on
    # a large GPU, split along K where they are fewest (a text encoder's projections)
    + sweep(_lin, 10, seed=7, m=[100, 130, 180, 250], k=[500, 640, 900, 1100],
            n=[500, 900, 2500, 3500])
    # k a multiple of 1,024: rows of A a multiple of 4 KiB apart (fp32; of 2,048 for fp16), which
    # share one L1 set in a CPU micro-kernel (the alias term of sdsim/cost/waves.py), in the
    # small and large classes, beside neighbours that do not (k = 1,000 and 2,000 above)
    + [_lin(m, k, n) for m, n in ((60, 700), (150, 300), (100, 1500), (250, 500))
       for k in (1024, 2048, 3072, 4096)]
    + [_lin(1200, k, 3500) for k in (1024, 2048)]
    # k past the grid's 2,900: hundreds of k-steps over a wave or less of work-groups (a
    # feed-forward output projection walks k = 5,120)
    + sweep(_lin, 8, seed=8, m=[60, 150, 500, 1100], k=[3600, 4500, 6000, 7500],
            n=[300, 700, 1500, 2200])
    # a B of tens of MB walked by tens of rows of tiles: past a CPU's last-level cache
    + [_lin(m, k, 5200) for m, k in ((130, 2900), (250, 1800))]
    # m, k and n multiples of 128: whole tiles and rows of A and B on 128-byte lines, as a
    # network's layers have them (every SD1.4 GEMM) and no draw above does; an H100's 128 x 128
    # fp16 build stepped 4-8% faster at n = 2,000-5,200 with B's rows on 32-byte sectors than
    # the fit of its other points said, and SD's GEMMs came out 8-12% long
    + _ALIGNED
    # the bias-less build (attention's projections) over the first draws of the first sweep
    # and of the aligned ones
    + [dict(s, bias=False) for s in _FIRST[:48] + _ALIGNED[:8]],
    "pool": sweep(_lin, 300, seed=50, **_GRID),
}
_CAL["pool"] += [dict(s, bias=False) for s in _CAL["pool"]]

RECORDS = (
    _record("tiled", False, None, _BENCH, _CAL),
    _record("tiled_gelu", True, ("gelu", "fused"), _BENCH,
            {"quick": _CAL["quick"][:3], "full": _CAL["full"][:10]}),
)
register(*RECORDS)
