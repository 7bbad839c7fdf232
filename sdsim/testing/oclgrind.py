"""Run every OpenCL kernel variant once at tiny shapes, for a device simulator (Oclgrind) to check.

`python -m sdsim.testing.oclgrind [--platform NAME] [--shard I/N]` builds the cases below, runs
each once on the chosen platform, checks it against its family's float64 reference and prints one
line per case; exit status 1 if any result is wrong. tests/test_oclgrind.py runs it with the
Oclgrind ICD and its checks switched on and fails on any diagnostic Oclgrind logs.

The shapes are far below the families' `bench_cases(quick=True)` because Oclgrind interprets every
work-item: they are chosen so each kernel still meets partial tiles, partial work-groups, odd
sizes and (for attention) the causal mask, which is where out-of-bounds and race bugs live.
The cases come from each family's own BenchCase builder, so reference and tolerance are theirs.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

PRECISIONS = ("fp32", "fp16")


def tiny_cases() -> list:
    """Every kernel variant of every family at tiny shapes, in both storage precisions."""
    from sdsim.cl import attention, conv, gelu, gemm, norm

    cases = []
    for p in PRECISIONS:
        square = dict(batch=1, cin=3, cout=5, h=7, w=6, k=3, stride=1, padding=1)
        cases += [conv._case(v, square, p) for v in conv.VARIANTS]
        strided = dict(batch=2, cin=2, cout=3, h=6, w=5, k=3, stride=2, padding=(0, 1, 0, 1))
        pointwise = dict(batch=1, cin=3, cout=4, h=5, w=3, k=1, stride=1, padding=0)
        cases += [conv._case(v, s, p) for s in (strided, pointwise)
                  for v in ("direct", "im2col_gemm")]
        cases += [gemm._linear_case(5, 7, 9, g, p) for g in (False, True)]
        cases.append(gemm._matmul_case(2, 5, 3, 7, p))
        for shape in ((1, 2, 5, 7, 8, False), (1, 1, 6, 6, 16, True)):
            cases += [attention._case(v, *shape, p) for v in attention.VARIANTS]
        for shape in ((1, 8, 3, 5, 4, "silu"), (2, 12, 2, 3, 4, None)):
            cases += [norm._gn_case(v, *shape, p) for v in norm.VARIANTS]
        cases += [norm._ln_case(5, 12, p), norm._ln_case(3, 33, p)]
        cases += [gelu._ff_case(v, 5, 6, 10, p) for v in gelu.GEGLU_VARIANTS]
        cases += [gelu._act_case(kind, 37, p) for kind in gelu.ACTIVATIONS]
        cases += data_movement_cases(p)
    return cases


def _r(a, precision):
    """Inputs as the kernel sees them: rounded to the storage precision, in float64."""
    return np.asarray(a, np.float16 if precision == "fp16" else np.float32).astype(np.float64)


def _timestep_ref(t, dim, flip, shift):
    """diffusers' get_timestep_embedding in float64 (an odd dim leaves the last column 0)."""
    half = dim // 2
    args = np.asarray(t, np.float64)[:, None] * np.exp(
        -np.log(10000.0) * np.arange(half) / (half - shift))[None]
    parts = [np.cos(args), np.sin(args)] if flip else [np.sin(args), np.cos(args)]
    return np.pad(np.concatenate(parts, axis=1), ((0, 0), (0, dim % 2)))


def data_movement_cases(p: str) -> list:
    """opencl/elementwise.cl (via sdsim.cl.elementwise) and opencl/backend_ops.cl (via the OpenCL
    backend's runners) at tiny shapes, each against float64 NumPy written here."""
    from sdsim.backends.opencl import elementwise as be
    from sdsim.cl import elementwise as ew
    from sdsim.cl.bench import BenchCase

    exact, rounded = (0.0, 0.0), (0.0, 1e-3 if p == "fp16" else 1e-6)

    def case(variant, shapes, run, ref, tol=exact):
        def make(rng):
            return {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}

        return BenchCase("data_movement", variant, {"shapes": shapes}, p, make,
                         lambda rt, i: run(rt, *i.values()),
                         lambda i: ref(*(_r(v, p) for v in i.values())), tol)

    def backend(rt, variant, attrs, arrays, out_shape, out_precision=None):
        op = out_precision or p
        ins = [rt.to_device(a, "fp32" if variant == "timestep_embedding" else p, "in")
               for a in arrays]
        out = rt.alloc(int(np.prod(out_shape)), op, "out")
        ev = be.run(rt, variant, dict(attrs, out_shape=out_shape,
                                      in_shapes=[a.shape for a in arrays]), ins, {}, out, op)
        return rt.from_device(out, out_shape, op, wait_for=ev), ev

    ids = np.array([[0, 6, 3, 3, 1], [2, 5, 4, 0, 6]], np.int32)
    t = np.array([1.0, 981.0], np.float32)
    return [
        case("add_broadcast", [(2, 3, 4, 5), (1, 3, 1, 1)],
             lambda rt, a, b: ew.add_host(rt, a, b, precision=p), lambda a, b: a + b, rounded),
        case("upsample_nearest2x", [(1, 2, 3, 5)], lambda rt, x: ew.upsample_host(rt, x, precision=p),
             lambda x: x.repeat(2, axis=2).repeat(2, axis=3)),
        case("concat2", [(2, 2, 3, 1), (2, 3, 3, 1)],
             lambda rt, a, b: ew.concat_host(rt, [a, b], precision=p),
             lambda a, b: np.concatenate([a, b], axis=1)),
        case("concat3", [(1, 2, 3), (1, 1, 3), (1, 4, 3)],
             lambda rt, a, b, c: ew.concat_host(rt, [a, b, c], precision=p),
             lambda a, b, c: np.concatenate([a, b, c], axis=1)),
        case("nchw_to_nlc", [(2, 3, 4, 5)], lambda rt, x: ew.nchw_to_nlc_host(rt, x, precision=p),
             lambda x: x.reshape(2, 3, 20).transpose(0, 2, 1)),
        case("nlc_to_nchw", [(2, 20, 3)],
             lambda rt, x: ew.nlc_to_nchw_host(rt, x, 4, 5, precision=p),
             lambda x: x.transpose(0, 2, 1).reshape(2, 3, 4, 5)),
        case("embedding", [(7, 6), (5, 6)],
             lambda rt, tab, pos: ew.embedding_host(rt, ids, tab, pos, precision=p),
             lambda tab, pos: tab[ids] + pos[None], rounded),
        case("timestep_embedding", [(1,)],
             lambda rt, _: ew.timestep_embedding_host(rt, t, 9, True, 1.0),
             lambda _: _timestep_ref(t, 9, True, 1.0), (2e-4, 0.0)),
        case("backend_concat2", [(1, 3, 2, 2), (1, 2, 2, 2)],
             lambda rt, a, b: backend(rt, "concat", {"axis": 1}, [a, b], (1, 5, 2, 2)),
             lambda a, b: np.concatenate([a, b], axis=1)),
        case("backend_timestep_embedding", [(1,)],
             lambda rt, _: backend(rt, "timestep_embedding", {"flip_sin_to_cos": False,
                                                              "shift": 0.0}, [t], (2, 7)),
             lambda _: _timestep_ref(t, 7, False, 0.0), (2e-4 if p == "fp32" else 1e-3, 0.0)),
    ]


def run_calibration_kernels(rt) -> None:
    """opencl/calibrate.cl's microbenchmarks (sdsim.calibration.microbench) at tiny sizes."""
    from sdsim.calibration import microbench as mb

    mb.bandwidth(rt, 4096, repeat=1)
    for p in PRECISIONS:
        mb.arithmetic_rate(rt, p, work_items=100, iters=2, repeat=1)
    mb.launch_overhead(rt, n=2)


#: kernels with one known bug each, and the words of the Oclgrind diagnostic it must produce
BROKEN = {
    "out_of_bounds": ("Invalid write", r"""
        __kernel void out_of_bounds(__global float* y, int n)
        { y[get_global_id(0) + 1] = 1.0f; }"""),
    "local_race": ("data race", r"""
        __kernel void local_race(__global float* y, int n)
        { __local float t; t = (float)get_local_id(0); barrier(CLK_LOCAL_MEM_FENCE);
          y[get_global_id(0)] = t; }"""),
    "barrier_divergence": ("divergence", r"""
        __kernel void barrier_divergence(__global float* y, int n)
        { if (get_local_id(0) < 2) barrier(CLK_LOCAL_MEM_FENCE); y[get_global_id(0)] = 0.0f; }"""),
    "uninitialised": ("Uninitialized", r"""
        __kernel void uninitialised(__global float* y, int n)
        { __local float t[16]; if (t[get_local_id(0)] > 0.0f) y[get_global_id(0)] = 1.0f; }"""),
}


def runtime(platform: str, unoptimised: bool):
    """A Runtime on `platform`. With `unoptimised`, for OCLGRIND_UNINITIALIZED=1, two workarounds
    for Oclgrind 19.10's uninitialised-value checker: programs are built with -cl-opt-disable
    (the checker aborts on LLVM's `freeze` instruction, which the optimiser emits), and no buffer
    is released during the run (after a release, a new buffer at the recycled address is reported
    as uninitialised even where a kernel wrote it: a false report, gone when buffers are kept)."""
    from sdsim.cl.runtime import Runtime

    class Unoptimised(Runtime):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.kept = []

        def build_options(self, precision="fp32", defines=None):
            return super().build_options(precision, defines) + ("-cl-opt-disable",)

        def alloc(self, *a, **k):
            self.kept.append(super().alloc(*a, **k))
            return self.kept[-1]

        def to_device(self, *a, **k):
            self.kept.append(super().to_device(*a, **k))
            return self.kept[-1]

    return (Unoptimised if unoptimised else Runtime)(platform)


def run_broken(rt) -> None:
    """Launch each BROKEN kernel once (16 work-items, one work-group) on a 16-float buffer."""
    import pyopencl as cl

    n = 16
    for name, (_, src) in BROKEN.items():
        prog = cl.Program(rt.ctx, src).build(options=["-cl-opt-disable"])
        y = cl.Buffer(rt.ctx, cl.mem_flags.READ_WRITE, 4 * n)
        getattr(prog, name)(rt.queue, (n,), (n,), y, np.int32(n))
        rt.queue.finish()
        print(f"ran {name}", flush=True)


def select(cases, precision=None, skip=()) -> list:
    """`cases` of `precision` (None: all), without those named FAMILY/VARIANT[/PRECISION] in skip."""
    skip = set(skip)
    return [c for c in cases if precision in (None, c.precision)
            and not {f"{c.family}/{c.variant}", f"{c.family}/{c.variant}/{c.precision}"} & skip]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default="oclgrind", help="OpenCL platform name substring")
    ap.add_argument("--shard", default="0/1", help="run cases I, I+N, I+2N, ... (I/N)")
    ap.add_argument("--unoptimised", action="store_true",
                    help="build with -cl-opt-disable (for OCLGRIND_UNINITIALIZED=1)")
    ap.add_argument("--precision", choices=PRECISIONS, help="only this storage precision")
    ap.add_argument("--skip", nargs="*", default=[], metavar="FAMILY/VARIANT[/PRECISION]",
                    help="cases to leave out")
    ap.add_argument("--calibration", action="store_true",
                    help="also run the calibration microbenchmark kernels (first shard only)")
    ap.add_argument("--selftest", action="store_true",
                    help="run the deliberately broken kernels instead (each must be reported)")
    args = ap.parse_args(argv)
    rt = runtime(args.platform, args.unoptimised)
    if args.selftest:
        run_broken(rt)
        return 0
    i, n = (int(s) for s in args.shard.split("/"))
    cases = select(tiny_cases(), args.precision, args.skip)
    if args.calibration and i == 0:
        run_calibration_kernels(rt)
        print("ok  calibration microbenchmarks", flush=True)
    bad = 0
    for case in cases[i::n]:
        t0 = time.perf_counter()
        inputs = case.make_inputs(np.random.default_rng(0))
        out, _ = case.run(rt, inputs)
        rt.finish()
        err, ok = case.check(out, case.reference(inputs))
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {case.family}/{case.variant} {case.precision} "
              f"{case.shape} err={err:.3g} {time.perf_counter() - t0:.1f}s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
