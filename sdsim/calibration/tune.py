"""`sdsim tune`: measure every candidate GEMM configuration on synthetic shapes of each shape class
and keep the fastest correct one per class (as CLBlast's tuner does per device); likewise the
FlashAttention build and the Winograd transforms' work-group shape.

The shapes are off SD1.4's dimensions (SD's layers are what validation holds out). Each candidate
(sdsim/kernels/tuning.py CANDIDATES for the device type) runs each shape of a class after a
warm-up; its result is checked against NumPy (a config that fails to build or to compute the
product is dropped, and said so); the class's winner is the config with the smallest geometric
mean of (time / the best time on that shape) over the class's shapes. Each config runs as the
tuned device would run it: K split where it leaves too few work-groups (`split_groups`, a rule of
the device's compute units), narrow C transposed (sdsim/kernels/gemm.py).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from sdsim import provenance
from sdsim.errors import SdsimError
from sdsim.kernels import tuning

#: synthetic (batch, m, k, n) per shape class: full (a GPU, a CPU in minutes) and quick (tests)
SHAPES = {
    "full": {
        "narrow": [(1, 3, 1000, 2200), (1, 2900, 700, 24), (30, 1100, 900, 7)],
        "small": [(1, 200, 450, 900), (1, 700, 1500, 300), (4, 300, 200, 150)],
        "medium": [(1, 1500, 700, 1100), (8, 500, 96, 600), (1, 3000, 1800, 500)],
        "large": [(1, 6000, 900, 2200), (16, 1100, 100, 1100), (1, 10000, 450, 700)],
    },
    "quick": {
        "narrow": [(1, 3, 100, 220), (3, 110, 90, 7)],
        "small": [(1, 200, 45, 90), (2, 70, 150, 130)],
        "medium": [(1, 700, 70, 750), (4, 300, 40, 300)],
        "large": [(1, 2300, 90, 1500), (8, 600, 30, 600)],
    },
}


#: synthetic FlashAttention calls (batch, heads, query rows, keys, head dim) per size
FLASH_SHAPES = {
    "full": [(1, 8, 3000, 3000, 40), (2, 5, 1500, 1500, 64), (1, 8, 3000, 60, 40),
             (2, 4, 700, 700, 96)],
    "quick": [(1, 2, 300, 300, 40), (1, 2, 200, 50, 40)],
}


#: synthetic Winograd F(4x4) transforms (batch, channels, height = width), off SD1.4's channel
#: counts and sizes at 256 to 768; each runs in fp16 and fp32 storage
WINO_SHAPES = {
    "full": [(2, 300, 60), (1, 96, 200), (2, 700, 28), (1, 1100, 14)],
    "quick": [(1, 24, 20), (2, 40, 14)],
}
WINO_M = 4


@dataclass
class Tuned:
    """What a tuning run measured and chose."""

    device: str
    driver: str
    device_type: str
    date: str
    command: str
    size: str
    repeat: int
    times: dict = field(default_factory=dict)     # (class, shape, config name) -> s | None
    failed: dict = field(default_factory=dict)    # config name -> why it was dropped
    chosen: dict = field(default_factory=dict)    # class -> GemmConfig
    scores: dict = field(default_factory=dict)    # (class, config name) -> geometric-mean ratio
    flash_times: dict = field(default_factory=dict)   # (shape, (rows, unroll)) -> s
    flash_scores: dict = field(default_factory=dict)  # (rows, unroll) -> geometric-mean ratio
    flash: tuple = (32, False)                        # the chosen (rows, unroll)
    split_groups: int = 0                             # the split-K target (tuning.split_groups)
    wino_times: dict = field(default_factory=dict)    # (transform, precision, shape, group) -> s
    wino_scores: dict = field(default_factory=dict)   # group -> geometric-mean ratio
    wino: tuple = (8, 8)                              # the chosen Winograd transform work-group
    load_before: float | None = None
    load_after: float | None = None
    commit: str | None = None
    seconds: float = 0.0

    def tuning(self, report: str) -> tuning.Tuning:
        return tuning.Tuning(self.device_type, dict(self.chosen), report, *self.flash,
                             self.split_groups, self.wino)


def _median_s(rt, launch, repeat: int) -> float:
    """Median seconds of `repeat` runs of `launch()` (enqueues, returns its events) after a
    warm-up (the build), with the bench's timing loop."""
    from sdsim.cl.bench import time_events

    time_events(rt, launch, 1)
    return float(np.median(time_events(rt, launch, repeat).sum(axis=1)))


def _run_one(rt, cfg, shape, bufs, repeat, split_groups=0):
    """Median seconds of `repeat` runs of `cfg` on `shape` after a warm-up, and its result; the
    call runs as it would under the tuning (K split towards `split_groups` work-groups)."""
    from sdsim.kernels.gemm import gemm

    batch, m, k, n = shape
    a, b, c = bufs
    every = tuning.Tuning("tune", {cl: cfg for cl in tuning.CLASS_NAMES}, "tune",
                          split_groups=split_groups)
    with tuning.use(every):
        t = _median_s(rt, lambda: gemm(rt, a, b, c, m, n, k, batch=batch,
                                       strides_a=(m * k, k, 1), strides_b=(k * n, n, 1),
                                       strides_c=(m * n, n, 1)), repeat)
    return t, rt.from_device(c, (batch, m, n), "fp32")


def tune(rt, quick: bool = False, repeat: int = 3, command: str = "", progress=True) -> Tuned:
    """Measure the candidates of `rt`'s device type on every class's shapes; choose per class."""
    from tqdm import tqdm

    size = "quick" if quick else "full"
    dtype = tuning.device_type(rt.device)
    cands = tuning.CANDIDATES[dtype]
    out = Tuned(rt.name, rt.device.driver_version.strip(), dtype,
                provenance.now(),
                command, size, repeat, load_before=provenance.load(), commit=provenance.commit(),
                split_groups=tuning.split_groups(dtype, rt.device.max_compute_units))
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    total = sum(len(s) for s in SHAPES[size].values()) * len(cands)
    bar = tqdm(total=total, desc=f"tune {rt.device.name.strip()}", unit="run", file=sys.stderr,
               disable=None if progress else True)
    for cls, shapes in SHAPES[size].items():
        for shape in shapes:
            batch, m, k, n = shape
            a = rng.standard_normal((batch, m, k), dtype=np.float32)
            b = rng.standard_normal((batch, k, n), dtype=np.float32)
            ref = np.einsum("bmk,bkn->bmn", a.astype(np.float64), b.astype(np.float64))
            scale = np.einsum("bmk,bkn->bmn", np.abs(a).astype(np.float64), np.abs(b))
            bufs = (rt.to_device(a, "fp32", "A"), rt.to_device(b, "fp32", "B"),
                    rt.alloc(batch * m * n, "fp32", "C"))
            for cfg in cands:
                bar.set_postfix_str(f"{cls} {cfg.name}")
                bar.update()
                if cfg.name in out.failed:
                    continue
                try:
                    t, c = _run_one(rt, cfg, shape, bufs, repeat, out.split_groups)
                except Exception as e:  # a build or launch the device refuses drops the config
                    out.failed[cfg.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                    continue
                # float32 accumulation of k products: |error| <= (k + 1) u |A||B| (with margin)
                if not np.all(np.abs(c - ref) <= 4 * (k + 1) * 2.0 ** -24 * scale + 1e-6):
                    out.failed[cfg.name] = f"wrong result at {shape}"
                    continue
                out.times[(cls, shape, cfg.name)] = t
    bar.close()
    for cls, shapes in SHAPES[size].items():
        ok = [c for c in cands if c.name not in out.failed]
        best = {s: min(out.times[(cls, s, c.name)] for c in ok) for s in shapes}
        for c in ok:
            out.scores[(cls, c.name)] = math.exp(np.mean(
                [math.log(out.times[(cls, s, c.name)] / best[s]) for s in shapes]))
        out.chosen[cls] = min(ok, key=lambda c: out.scores[(cls, c.name)])
    _tune_flash(rt, out, size, repeat, rng)
    _tune_wino(rt, out, size, repeat)
    out.load_after, out.seconds = provenance.load(), time.perf_counter() - t0
    return out


def _tune_flash(rt, out: Tuned, size: str, repeat: int, rng) -> None:
    """Time FlashAttention at each candidate (work-group size, unrolled key tile); keep the best
    (geometric mean)."""
    from sdsim import kernels
    from sdsim.kernels.attention import attention, reference

    atol, rel = kernels.get("attention", "flash").tolerance["fp32"]

    rows = [c for c in tuning.FLASH[out.device_type] if c[0] <= rt.max_wg]
    for shape in FLASH_SHAPES[size]:
        b, heads, nq, nk, d = shape
        q = rng.standard_normal((b, nq, heads * d), dtype=np.float32)
        k = rng.standard_normal((b, nk, heads * d), dtype=np.float32)
        v = rng.standard_normal((b, nk, heads * d), dtype=np.float32)
        ref = reference(q, k, v, heads)
        bufs = [rt.to_device(a, "fp32", n) for a, n in ((q, "q"), (k, "k"), (v, "v"))]
        o = rt.alloc(b * nq * heads * d, "fp32", "o")
        for r in rows:
            with tuning.use(tuning.Tuning(out.device_type, tuning.current().gemm, "tune", *r)):
                t = _median_s(rt, lambda: attention(rt, *bufs, b, nq, nk, heads, d,
                                                    variant="flash", out=o)[1], repeat)
            got = rt.from_device(o, ref.shape, "fp32")
            if np.abs(got - ref).max() > atol + rel * np.abs(ref).max():   # the record's check
                out.failed[f"flash {_flash_name(r)}"] = f"wrong result at {shape}"
                continue
            out.flash_times[(shape, r)] = t
    ok = [r for r in rows if all((s, r) in out.flash_times for s in FLASH_SHAPES[size])]
    for r in ok:
        out.flash_scores[r] = math.exp(np.mean([
            math.log(out.flash_times[(s, r)] / min(out.flash_times[(s, x)] for x in ok))
            for s in FLASH_SHAPES[size]]))
    out.flash = min(ok, key=lambda r: out.flash_scores[r])


def wino_dispatches(rt, precision: str, n: int, c: int, hw: int) -> dict:
    """The F(4x4) input and output transforms of x (n, c, hw, hw) as `launch(group)` callables
    (each enqueues the transform in work-groups of `group`, tiles along a row x rows, and returns
    its event), with the buffer each writes and its element count: {transform: (launch, out,
    size)}. Inputs are random; the output transform reads a random GEMM result."""
    from sdsim.kernels import conv

    a, t = WINO_M + 2, -(-hw // WINO_M)
    rng = np.random.default_rng(0)
    x = rt.to_device(rng.standard_normal((n, c, hw, hw), np.float32), precision, "input")
    planes = a * a * c * n * t * t
    v = rt.alloc(planes, precision, "transformed input")
    mm = rt.to_device(rng.standard_normal(planes, np.float32), precision, "GEMM output")
    y = rt.alloc(n * c * hw * hw, precision, "output")
    bias = rt.to_device(rng.standard_normal(c, np.float32), precision, "bias")
    at, _, bt = conv._consts(rt, WINO_M)
    i32 = np.int32
    kin = rt.kernel("conv", "wino_input", precision, {"ALPHA": a})
    kout = rt.kernel("conv", "wino_output", precision, {"ALPHA": a})
    work = (t, t, n * c)

    def launcher(kern, *args):
        return lambda group: rt.launch(kern, work, (*group, 1), *args)

    return {"input": (launcher(kin, x, v, bt, i32(n), i32(c), i32(hw), i32(hw), i32(t), i32(t)),
                      v, planes),
            "output": (launcher(kout, mm, bias, y, at, i32(n), i32(c), i32(hw), i32(hw), i32(t),
                                i32(t), i32(1)), y, n * c * hw * hw)}


def written_over_nans(rt, launch, out, size: int, precision: str) -> np.ndarray:
    """What `launch()` writes into `out` (its first `size` elements) over a buffer of NaNs, so
    that an element the launch leaves unwritten shows as one."""
    import pyopencl as cl

    cl.enqueue_fill_buffer(rt.queue, out, np.uint8(0xFF), 0, out.size).wait()
    launch().wait()
    return rt.from_device(out, (size,), precision)


def _tune_wino(rt, out: Tuned, size: str, repeat: int) -> None:
    """Time the Winograd transforms in each candidate work-group shape (fp16 and fp32 storage,
    each launch after a cache flush); a shape whose output differs by one bit from the default
    shape's is dropped; keep the best (geometric mean over transforms, precisions and shapes)."""
    from sdsim.cl.bench import time_events

    cands = tuning.WINO_GROUPS[out.device_type]
    for precision in ("fp16", "fp32"):
        for shape in WINO_SHAPES[size]:
            for which, (launch, buf, n) in wino_dispatches(rt, precision, *shape).items():
                ref = None
                for g in cands:
                    name = f"winograd {tuning.group_name(g)}"
                    if name in out.failed:
                        continue
                    try:
                        got = written_over_nans(rt, partial(launch, g), buf, n, precision)
                    except Exception as e:   # a work-group the device refuses drops the shape
                        out.failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                        continue
                    ref = got if ref is None else ref
                    if not np.array_equal(got.view(np.uint8), ref.view(np.uint8)):
                        out.failed[name] = f"{which} transform differs at {shape} ({precision})"
                        continue
                    out.wino_times[(which, precision, shape, g)] = float(np.median(time_events(
                        rt, lambda g=g, launch=launch: [launch(g)], repeat, cold_keeping=())))
    keys = {k[:3] for k in out.wino_times}
    ok = [g for g in cands if f"winograd {tuning.group_name(g)}" not in out.failed]
    for g in ok:
        out.wino_scores[g] = math.exp(np.mean([
            math.log(out.wino_times[k + (g,)] / min(out.wino_times[k + (x,)] for x in ok))
            for k in keys]))
    if not ok:
        raise SdsimError("no Winograd transform work-group ran correctly on "
                         f"{rt.device.name.strip()}: " + "; ".join(
                             f"{g}: {out.failed[g]}" for g in sorted(out.failed)
                             if g.startswith("winograd ")))
    out.wino = min(ok, key=lambda g: out.wino_scores[g])


def _flash_name(c) -> str:
    return f"{c[0]} rows{', unrolled' if c[1] else ''}"


def report_markdown(t: Tuned, profile: str) -> str:
    """The tuning report: every config's time on every shape, the choice per class."""
    lines = [f"# GEMM tuning: {t.device}", "",
             f"Produced by `{t.command}` on {t.date} (sdsim {t.commit or 'outside git'}); "
             f"device type {t.device_type}, driver {t.driver}; {t.size} shapes, median of "
             f"{t.repeat} runs after a warm-up, {t.seconds:.0f} s; 1-minute load "
             f"{t.load_before} before, {t.load_after} after. The choice per class is recorded "
             f"in `{profile}` (`tuning:`), which the lowering and the launchers read.", "",
             "Score: geometric mean over the class's shapes of time / the best time on that "
             "shape (1.00 = fastest everywhere). GFLOP/s per shape in the table.", "",
             (f"Split K: a GEMM call with at most half of {t.split_groups} work-groups "
              f"({tuning.SPLIT_GROUPS_PER_CU} per compute unit) walks K in as many slices as keep "
              f"it within that many (each at least {tuning.SPLIT_MIN_STEPS} k-steps), their "
              "partial sums added by `gemm_split_reduce`; recorded as `split_groups`."
              if t.split_groups else "Split K: never (CPU cores each walk whole tiles)."), ""]
    cands = tuning.CANDIDATES[t.device_type]
    for cls, shapes in SHAPES[t.size].items():
        lines += [f"## {cls}: chosen `{t.chosen[cls].name}`", "",
                  "| config | score | " + " | ".join("x".join(map(str, s)) for s in shapes)
                  + " |", "|---|---|" + "---|" * len(shapes)]
        ranked = sorted((c for c in cands if (cls, c.name) in t.scores),
                        key=lambda c: t.scores[(cls, c.name)])
        for c in ranked:
            cells = []
            for s in shapes:
                sec = t.times[(cls, s, c.name)]
                cells.append(f"{2 * math.prod(s) / sec / 1e9:.1f}")
            mark = " **chosen**" if c == t.chosen[cls] else ""
            lines.append(f"| `{c.name}`{mark} | {t.scores[(cls, c.name)]:.2f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    shapes = FLASH_SHAPES[t.size]
    lines += [f"## FlashAttention work-group: chosen {_flash_name(t.flash)}", "",
              "| build | score | " + " | ".join("x".join(map(str, s)) for s in shapes) + " |",
              "|---|---|" + "---|" * len(shapes)]
    for r in sorted(t.flash_scores, key=t.flash_scores.get):
        mark = " **chosen**" if r == t.flash else ""
        lines.append(f"| {_flash_name(r)}{mark} | {t.flash_scores[r]:.2f} | "
                     + " | ".join(f"{t.flash_times[(s, r)] * 1e3:.3f} ms" for s in shapes) + " |")
    lines += ["", "Shapes are (batch, heads, query rows, keys, head dim); 'rows' is the work-group "
              "size (one query row per work-item), 'unrolled' the build whose key-tile loops are "
              "unrolled over the whole tile.", ""]
    cols = sorted({k[:3] for k in t.wino_times}, key=lambda k: (k[1], k[2], k[0]))
    lines += [f"## Winograd transform work-group: chosen {tuning.group_name(t.wino)}", "",
              "| group | score | " + " | ".join(f"{w} {p} {'x'.join(map(str, s))}"
                                                for w, p, s in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for g in sorted(t.wino_scores, key=t.wino_scores.get):
        mark = " **chosen**" if g == t.wino else ""
        lines.append(f"| {tuning.group_name(g)}{mark} | {t.wino_scores[g]:.2f} | "
                     + " | ".join(f"{t.wino_times[k + (g,)] * 1e6:.1f} us" for k in cols) + " |")
    lines += ["", f"The F({WINO_M}x{WINO_M}) input and output transforms (opencl/conv.cl), one "
              "work-item per (tile, channel), in work-groups of (tiles along a row) x (rows of "
              "tiles); shapes are (batch, channels, height = width), each launch after a cache "
              "flush, and every group's output is bit for bit the first one's.", ""]
    if t.failed:
        lines += ["## Dropped configurations", ""]
        lines += [f"- `{n}`: {why}" for n, why in sorted(t.failed.items())]
        lines.append("")
    lines += ["Shapes are (batch, m, k, n), none of them an SD1.4 layer. Config names: "
              "`l<TM>x<TN>x<TK>-<RTM>x<RTN>-v<VW>` stages tiles in local memory, `r...` is the "
              "direct SIMD micro-kernel (sdsim/kernels/tuning.py).", ""]
    return "\n".join(lines)


def write(t: Tuned, profile_path, report_path) -> None:
    """Record the choice in an existing profile (`tuning:` and `device_type:`; the rest of the
    file, its leading comment included, is kept) and write the report beside it."""
    from pathlib import Path

    import yaml

    from sdsim import atomic
    from sdsim.calibration.write import _relative
    from sdsim.cost.profile import parse_profile

    profile_path, report_path = Path(profile_path), Path(report_path)
    text = profile_path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True)
                     if line.startswith("#")) if text.startswith("#") else ""
    data = yaml.safe_load(text)
    data["device_type"] = t.device_type
    data["tuning"] = t.tuning(_relative(report_path)).to_yaml(_relative(report_path))
    parse_profile(data, str(profile_path))   # never write a profile that would not load
    atomic.write_text(report_path, report_markdown(t, _relative(profile_path)))
    atomic.write_text(profile_path, header + yaml.safe_dump(data, sort_keys=False, width=200))
