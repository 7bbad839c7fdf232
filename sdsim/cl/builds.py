"""Programs that compile while their caller goes on (`Builds`): a calibration measures the cases
whose programs are ready while NVIDIA's compiler, seconds per register-tiled GEMM build, works
through the rest (sdsim/calibration/run.py); `Runtime.build` waits for all of them."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import pyopencl as cl

from sdsim.cl.runtime import _built, platforms


def _binary(where: tuple, program: tuple) -> bytes:
    """The device binary of `program` (family, options) compiled in this process for the device
    `where` (platform name, device index): a `Builds` worker."""
    platform, index = where
    plat = next(p for p in platforms() if p.name == platform)
    ctx = cl.Context([plat.get_devices()[index]])
    return _built(ctx, *program).get_info(cl.program_info.BINARIES)[0]


class Builds:
    """The (family, options) `programs` a Runtime has not built yet, compiling. With `processes`
    (default: on a GPU, for more than one) each compiles in a spawned process of its own (not
    forked: the caller holds a driver's threads) and loads into the runtime from its binary as
    the caller asks for it (`ready`, `wait`), `workers` at a time (default: every core but one,
    left to the caller): NVIDIA's compiler overlaps the builds of one process only in part (an
    H200 calibration's 43 programs took 203 s in 16 threads). Otherwise (a CPU device: seconds
    in all) they build at once, in `workers` threads (default: one per core). A context manager:
    leaving it stops the compiles nobody waited for."""

    def __init__(self, rt, programs, workers: int | None = None, processes: bool | None = None):
        self.rt = rt
        todo = sorted({(f, tuple(o)) for f, o in programs if rt._key(f, o) not in rt._programs})
        self.count = len(todo)
        if processes is None:
            processes = bool(rt.device.type & cl.device_type.GPU) and len(todo) > 1
        # compiles in processes leave a core to the caller, who goes on (feeding a device)
        cores = os.cpu_count() or 1
        workers = min(max(1, len(todo)), workers or (max(1, cores - 1) if processes else cores))
        self._pending, self._pool, self._broken = {}, None, False
        if processes and todo:
            plat = rt.device.platform
            where = (plat.name, [d.int_ptr for d in plat.get_devices()].index(rt.device.int_ptr))
            self._pool = ProcessPoolExecutor(workers,
                                             mp_context=multiprocessing.get_context("spawn"))
            self._pending = {p: self._pool.submit(_binary, where, p) for p in todo}
        elif todo:
            with ThreadPoolExecutor(workers) as pool:
                for p, prog in zip(todo, pool.map(lambda p: rt._compile(*p), todo)):
                    rt._programs[rt._key(*p)] = prog

    def ready(self, programs) -> bool:
        """Whether all of `programs` are built, loading those whose compile has finished."""
        self._load([p for p in programs if p in self._pending and self._pending[p].done()])
        return not any(p in self._pending for p in programs)

    def wait(self, programs=None) -> None:
        """Load `programs` (default: every one), waiting for their compiles."""
        self._load([p for p in (self._pending if programs is None else programs)
                    if p in self._pending])

    def wait_any(self) -> None:
        """Wait until some compile still pending has finished."""
        if self._pending:
            wait(self._pending.values(), return_when=FIRST_COMPLETED)

    def _load(self, programs) -> None:
        for p in programs:
            try:
                binary = self._pending.pop(p).result()
            except BrokenProcessPool:
                # a script without an `if __name__ == "__main__":` guard cannot spawn (its
                # workers would run it again): built here, from source
                if not self._broken:
                    warnings.warn("OpenCL builds: could not start worker processes (a script "
                                  "building many programs needs an `if __name__ == "
                                  "\"__main__\":` guard); building here", stacklevel=3)
                self._broken, binary = True, None
            self.rt._programs[self.rt._key(*p)] = self.rt._compile(*p, binary)

    def __enter__(self) -> "Builds":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
