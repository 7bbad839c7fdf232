"""Run every OpenCL kernel variant once at tiny shapes, for a device simulator (Oclgrind) to check.

`python -m sdsim.testing.oclgrind [--platform NAME] [--shard I/N]` builds the cases below, runs
each once on the chosen platform, checks it against its record's float64 reference and prints one
line per case; exit status 1 if any result is wrong. tests/test_oclgrind.py runs it with the
Oclgrind ICD and its checks switched on and fails on any diagnostic Oclgrind logs.

The shapes are each record's "tiny" bench shapes (sdsim/kernels), far below its "quick" ones
because Oclgrind interprets every work-item: they are chosen so each kernel still meets partial
tiles, partial work-groups, odd sizes and (for attention) the causal mask, which is where
out-of-bounds and race bugs live. Launcher, reference and tolerance are the record's. The families
whose kernel builds are tuned per device run under both the GPU and the CPU default builds. The
fused GroupNorm splits slices longer than GN_CHUNK elements here (16,384 in use), so its tiny
shapes (slices of 30 and 18) run both its forms: partial sums then normalize, and one dispatch.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

PRECISIONS = ("fp32", "fp16")
#: the fused GroupNorm's chunk under the simulator (see the module docstring)
GN_CHUNK = 20


def tiny_cases() -> list:
    """Every kernel variant at its records' tiny bench shapes, in both storage precisions."""
    from sdsim.cl.bench import all_cases

    return all_cases("tiny", precisions=PRECISIONS)


#: families whose kernel builds depend on the device tuning (GEMM tiles, FlashAttention work-group)
TUNED_FAMILIES = ("linear", "conv2d", "attention")


def runs(cases) -> list:
    """(case, device type of the kernel builds) to run: the tuned families under both the GPU
    and the CPU default builds (Oclgrind reports itself as both, so neither body may go
    unchecked), every other case once."""
    return [(c, t) for c in cases
            for t in (("gpu", "cpu") if c.family in TUNED_FAMILIES else ("gpu",))]


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
    from sdsim.kernels import norm

    norm.CHUNK = GN_CHUNK
    rt = runtime(args.platform, args.unoptimised)
    if args.selftest:
        run_broken(rt)
        return 0
    i, n = (int(s) for s in args.shard.split("/"))
    cases = select(tiny_cases(), args.precision, args.skip)
    if args.calibration and i == 0:
        run_calibration_kernels(rt)
        print("ok  calibration microbenchmarks", flush=True)
    from sdsim.kernels import tuning

    bad = 0
    for case, builds in runs(cases)[i::n]:
        t0 = time.perf_counter()
        inputs = case.make_inputs(np.random.default_rng(0))
        with tuning.use(tuning.DEFAULTS[builds]):
            out, _ = case.run(rt, inputs)
            rt.finish()
        err, ok = case.check(out, case.reference(inputs))
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {case.family}/{case.variant} {case.precision} "
              f"{builds} builds {case.shape} err={err:.3g} {time.perf_counter() - t0:.1f}s",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
