"""A stand-in for a Runtime that runs kernel launchers without building, allocating or launching
anything, and records the programs (source file, build options) they ask for, in all and per
case. The calibration starts building those at once (`Runtime.building`: on a GPU in
processes) and measures each case as soon as its own programs are built: NVIDIA's OpenCL
compiler takes seconds per register-tiled GEMM build; one after another, as the sweep first
reached each, they took 223 of an H200 calibration's 330 s, 164-203 s in threads of one process
(the driver overlaps them only in part), and 100 s of 434 in processes before the sweep began."""

from __future__ import annotations

from sdsim.cl.runtime import Runtime


class _Kernel:
    def get_work_group_info(self, *args) -> int:
        return 1 << 30      # no kernel limit: the device's own limits still apply


class _Program:
    def __getattr__(self, name: str) -> _Kernel:
        return _Kernel()


class _Buffer:
    size = 0


class _Event:
    def wait(self) -> None:
        pass


class DryRun(Runtime):
    """`rt`'s device, limits and tuning; programs recorded in `self.programs` instead of built."""

    def __init__(self, rt: Runtime):   # noqa: super().__init__ would open a context
        self.__dict__.update(rt.__dict__)
        self._programs, self._kernels, self._constants = {}, {}, {}
        self.programs: set = set()

    def program(self, family: str, options: tuple = ()):
        self.programs.add((family, tuple(options)))
        return _Program()

    def launch(self, kernel, global_size, local_size, *args, wait_for=None):
        return _Event()

    def alloc(self, n_elems: int, precision: str = "fp32", what: str = "buffer"):
        return _Buffer()

    def to_device(self, array, precision: str = "fp32", what: str = "buffer"):
        return _Buffer()

    def finish(self) -> None:
        pass

    def flush_caches(self, keep=()) -> None:
        pass


def programs(rt: Runtime, cases, precision: str) -> tuple[set, int]:
    """((family, options) of every program the (record, shape) `cases` launch at `precision`
    storage under the active tuning, how many cases the dry run could not follow: those build
    as the sweep reaches them)."""
    needs = case_programs(rt, cases, precision)
    return set().union(*(n for n in needs if n is not None)), needs.count(None)


def case_programs(rt: Runtime, cases, precision: str) -> list:
    """Per (record, shape) case, the set of (family, options) programs it launches at
    `precision` storage under the active tuning; None for a case the dry run could not follow
    (a launcher that needs real buffers)."""
    out = []
    for record, shape in cases:
        dry = DryRun(rt)
        ins, params, _ = record.operands(shape)
        buffers = ([_Buffer() for _ in ins], {k: _Buffer() for k in params}, _Buffer())
        try:
            if record.prepare is not None:
                buffers = (buffers[0], record.prepare(dry, shape, buffers[1], precision),
                           buffers[2])
            record.launch(dry, shape, *buffers, precision)
        except Exception:   # noqa: BLE001 - a launcher that needs real buffers: built later
            out.append(None)
            continue
        out.append(frozenset(dry.programs))
    return out
