"""Kernel variants: one record per way of running an op, holding everything known about it.

A *variant* is one way to run a model op (e.g. conv2d by Winograd F(4x4,3x3)); it is made of one or
more *dispatches* (kernel launches), each with its own `KernelCost`. Each family module
(conv, gemm, norm, gelu, attention, elementwise) holds, for each of its variants, one `Variant`
record: its cost formula, its OpenCL launcher, its operands and weight preparation, its float64
reference and tolerance, its bench and calibration shapes, and the `--opt` switch value that
selects it. The lowering (sdsim/lower), the OpenCL backend, `sdsim bench`, calibration and
validation all read these records; nobody else types a variant's name, a tile size or a FLOP
formula. Importing the family modules needs no pyopencl (launchers take a runtime object).
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from sdsim.precision import BYTES  # noqa: F401  (re-exported: bytes per stored element)

#: efficiency classes a device profile gives a factor for (see device_profiles/README.md)
KERNEL_CLASSES = ("gemm", "conv", "winograd_transform", "reduction", "elementwise", "attention")


@dataclass(frozen=True)
class Launch:
    """A dispatch's launch geometry, as the launcher enqueues it: global size (rounded up to the
    local size), local size, serial steps each work-group walks (k-tiles of a GEMM, key tiles of
    FlashAttention, input-channel taps of a direct conv, strided sweeps of a reduction...) and the
    share of launched lanes doing useful work after tile padding."""

    global_size: tuple
    local_size: tuple
    steps: int = 1
    active: float = 1.0
    # times each work-group reads its data: a second sweep finds it in the cache only while the
    # dispatch's data fits there (the cache term of sdsim/cost/waves.py)
    sweeps: int = 1
    # bytes later work-groups read again after earlier ones (a GEMM's B, walked by every row of
    # tiles): the cache term's footprint where set, in place of the dispatch's DRAM bytes
    reread: float = 0.0
    # the most of a work-item's concurrent row streams whose addresses are equal modulo 4 KiB
    # (a CPU micro-kernel's A rows at a pitch of a multiple of 4 KiB): one L1 set holds them
    # all, and past the cache's ways they evict each other every step (sdsim/cost/waves.py)
    conflict: int = 0
    # the share of work-groups that take a slower path: the CPU micro-kernel's last, partial
    # column block loads B one element at a time (opencl/gemm.cl `fullN`), and on PoCL its step
    # costs twice a full block's; a GPU Winograd GEMM's work-group that is the first to read its
    # panel of the transformed input finds none of it in the cache (the edge term of
    # sdsim/cost/waves.py)
    edge: float = 0.0
    # what that slower path is, as a prediction's explanation names it
    path: str = ""
    # the cache lines a work-item's row of B touches, over the fewest its width needs: the CPU
    # micro-kernel's 16 fp32 columns fill one 64-byte line where B's pitch is a multiple of it
    # and straddle two in 3 rows of 4 at a pitch of 3500 floats, so a B past the cache is
    # fetched 1.75 times over (the cache term of sdsim/cost/waves.py)
    lines: float = 1.0

    @classmethod
    def grid(cls, work: tuple, local: tuple, steps: int = 1, useful: float | None = None,
             sweeps: int = 1):
        """The launch covering `work` items per dimension with work-groups of `local`; `useful`
        lanes (default: the work items) out of the launched ones are active."""
        glob = tuple(-(-int(w) // int(l)) * int(l) for w, l in zip(work, local))
        launched = math.prod(glob)
        useful = math.prod(int(w) for w in work) if useful is None else useful
        return cls(glob, tuple(int(x) for x in local), max(1, int(steps)),
                   min(1.0, useful / launched) if launched else 0.0, sweeps)

    @property
    def work_groups(self) -> int:
        return math.prod(g // l for g, l in zip(self.global_size, self.local_size))

    @property
    def group_size(self) -> int:
        return math.prod(self.local_size)

    def enqueue(self, rt, kernel, *args, wait_for=None):
        """Launch `kernel` with this geometry on runtime `rt`; returns the event."""
        return rt.launch(kernel, self.global_size, self.local_size, *args, wait_for=wait_for)


@dataclass(frozen=True)
class KernelCost:
    """One dispatch: what it computes and moves, and how it is launched. FLOPs count 2 per
    multiply-add and include transforms and elementwise math actually executed; bytes are DRAM
    traffic of the dispatch as tiled (re-reads of an operand that does not stay on chip are
    counted)."""

    kernel: str          # e.g. "wino_input_transform_f4"
    kernel_class: str    # one of KERNEL_CLASSES
    flops: float
    bytes_read: float
    bytes_written: float
    workspace: int = 0   # bytes of intermediate global buffers this dispatch writes for a later one
    launch: Launch | None = None
    model: str = ""      # the timing model's key (one per OpenCL kernel body); default: `kernel`
    # its arithmetic has a half build (ARITH in its opencl/*.cl file): at fp16 storage on a device
    # with native half it runs at the fp16 rate; kernels without one (float statistics passes,
    # the softmax's row max, the timestep embedding, data movement) compute in float
    half_arith: bool = False
    # the key timed in `model`'s place by a profile calibrated before `model` had points of its
    # own (a build the sweep did not measure apart then)
    model_alt: str = ""

    @property
    def dram_bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def model_key(self) -> str:
        return self.model or self.kernel


@dataclass(frozen=True)
class Variant:
    """Everything about one kernel variant of an op family.

    - cost(**shape, precision) -> [KernelCost], one per dispatch, in launch order;
    - launch(rt, shape, ins, params, out, precision) -> [events], the same dispatches enqueued on
      device buffers (`ins` activation buffers in op argument order, `params` weights by role);
    - operands(shape) -> (element counts of ins, {role: element count of weights}, output count);
    - prepare(rt, shape, params, precision) -> params: load-time weight transform, done once;
    - make_inputs(shape, rng) -> {"ins": [host arrays], "params": {role: host array}} for bench
      and calibration: float32 arrays go up in the storage precision, float64 ones as fp32
      (timesteps), integer ones as int32 (token ids) (`sdsim.cl.bench.upload`);
    - reference(shape, inputs, precision) -> float64 array: independent NumPy math on the inputs
      as the device stores them; `tolerance[precision]` = (atol, rel to max|ref|);
    - bench[quick|full] and calibrate[quick|full]: shapes (op attrs) it is benched and calibrated on;
    - option: (switch, value) of `--opt` that selects it, or None when no switch governs it;
    - simulate(shape, ins, params, arith) -> float16 array: the dispatches at fp16 storage in
      NumPy, rounding where the kernels round in `arith` (sdsim/sim) under the active tuning, on
      host arrays as stored (weights unprepared): what a device with native half must compute.
    """

    family: str
    name: str
    cost: Callable[..., list[KernelCost]]
    launch: Callable
    operands: Callable
    make_inputs: Callable
    reference: Callable
    tolerance: dict
    bench: dict = field(default_factory=dict)
    calibrate: dict = field(default_factory=dict)
    option: tuple[str, str] | None = None
    prepare: Callable | None = None
    simulate: Callable | None = None
    # the most half ulps a device's output may differ from `simulate`'s, for a documented cause
    # (a library exp or erf that the simulation cannot mirror); 0: bit for bit
    sim_ulps: int = 0

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def costs(self, precision: str, **shape) -> list[KernelCost]:
        """The dispatches at `shape` (op attrs; keys the formula does not take are ignored)."""
        return self.cost(**accepted_args(self.cost, dict(shape, precision=precision)))


def sweep(make: Callable[..., dict], count: int, /, seed: int = 0, **axes) -> list[dict]:
    """`count` shapes `make(**point)` drawn without replacement from the product of `axes` (lists of
    values), in a fixed pseudo-random order: calibration sweeps that span work-group counts,
    serial steps and sizes without walking the whole grid. Points `make` rejects (returns None)
    are skipped."""
    import itertools
    import random

    names = list(axes)
    grid = list(itertools.product(*(axes[a] for a in names)))
    random.Random(seed).shuffle(grid)
    out = []
    for values in grid:
        shape = make(**dict(zip(names, values)))
        if shape is not None and shape not in out:
            out.append(shape)
        if len(out) == count:
            break
    return out


def shape_key(shape: dict) -> tuple:
    """A hashable, order-independent key of a shape dict (lists and tuples as nested tuples):
    what makes two shapes the same work."""
    def h(v):
        return tuple(h(x) for x in v) if isinstance(v, (list, tuple)) else v
    return tuple(sorted((k, h(v)) for k, v in shape.items()))


def accepted_args(fn, kwargs: dict) -> dict:
    """The items of `kwargs` that `fn` takes (all of them if it takes **kwargs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


_REGISTRY: dict[tuple[str, str], Variant] = {}


def register(*records: Variant) -> None:
    """Add records to the registry (each family module calls this once at import)."""
    for r in records:
        if (r.family, r.name) in _REGISTRY:
            raise ValueError(f"kernel variant {r.key} registered twice")
        _REGISTRY[(r.family, r.name)] = r


def get(family: str, name: str) -> Variant:
    """The record of `family`/`name` (KeyError listing the known names if absent)."""
    _load_families()
    try:
        return _REGISTRY[(family, name)]
    except KeyError:
        known = sorted(n for f, n in _REGISTRY if f == family)
        raise KeyError(f"no kernel variant {family}/{name}; known for {family}: "
                       f"{', '.join(known) or 'none'}") from None


def records(family: str | None = None) -> list[Variant]:
    """Every record (of one family if given), sorted by family and name."""
    _load_families()
    return [_REGISTRY[k] for k in sorted(_REGISTRY) if family is None or k[0] == family]


def costs(family: str, name: str, precision: str = "fp32", **shape) -> list[KernelCost]:
    """The dispatches of `family`/`name` at the given shape, with their costs."""
    return get(family, name).costs(precision, **shape)


def variants(family: str | None = None) -> list[tuple[str, str]]:
    """Registered (family, name) pairs."""
    return [(r.family, r.name) for r in records(family)]


def options() -> dict[str, list[tuple[str, Variant]]]:
    """{switch: [(value, record), ...]}: the `--opt` choices each record declares."""
    out: dict[str, list[tuple[str, Variant]]] = {}
    for r in records():
        if r.option:
            out.setdefault(r.option[0], []).append((r.option[1], r))
    return out


def chosen(family: str, switch: str, value: str) -> Variant:
    """The record of `family` that `switch=value` selects."""
    for r in records(family):
        if r.option == (switch, value):
            return r
    raise KeyError(f"no {family} variant is selected by {switch}={value}")


def default(family: str) -> Variant:
    """The one record of `family` that no switch selects (how the family runs by default)."""
    found = [r for r in records(family) if r.option is None]
    if len(found) != 1:
        raise KeyError(f"{family} has {len(found)} records no switch selects; expected one")
    return found[0]


_loaded = False


def _load_families():
    """Import every family module once (each registers its records on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
