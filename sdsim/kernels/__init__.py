"""What each kernel variant costs: the one place that owns FLOP, DRAM-byte and workspace formulas.

A *variant* is one way to run a model op (e.g. conv2d by Winograd F(4x4,3x3)); it is made of one or
more *dispatches* (kernel launches), each with its own `KernelCost`. The cost model (sdsim/cost),
the lowering (sdsim/lower) and `sdsim bench` all read these numbers; nobody re-derives them.

Family modules (conv, gemm, norm, gelu, attention, elementwise) register their variants with
`@variant(family, name)`; a registered function takes the op's shape arguments plus
`precision` ("fp32" | "fp16": bytes per stored element 4 or 2) and returns a list of KernelCost.
These modules are pure Python: importing them must not need pyopencl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

BYTES = {"fp32": 4, "fp16": 2}

#: efficiency classes a device profile gives a factor for (see device_profiles/README.md)
KERNEL_CLASSES = ("gemm", "conv", "winograd_transform", "reduction", "elementwise", "attention")


@dataclass(frozen=True)
class KernelCost:
    """One dispatch: what it computes and moves. FLOPs count 2 per multiply-add and include
    transforms and elementwise math actually executed; bytes are DRAM traffic of the dispatch
    as tiled (re-reads of an operand that does not stay on chip are counted)."""

    kernel: str          # e.g. "wino_input_transform_f4"
    kernel_class: str    # one of KERNEL_CLASSES
    flops: float
    bytes_read: float
    bytes_written: float
    workspace: int = 0   # bytes of intermediate global buffers this dispatch writes for a later one

    @property
    def dram_bytes(self) -> float:
        return self.bytes_read + self.bytes_written


_REGISTRY: dict[tuple[str, str], Callable[..., list[KernelCost]]] = {}


def variant(family: str, name: str):
    """Register the cost function of one variant of an op family."""

    def deco(fn):
        _REGISTRY[(family, name)] = fn
        return fn

    return deco


def lookup(family: str, name: str) -> Callable[..., list[KernelCost]]:
    """The cost function of `family`/`name` (KeyError listing the known names if absent)."""
    _load_families()
    try:
        return _REGISTRY[(family, name)]
    except KeyError:
        known = sorted(n for f, n in _REGISTRY if f == family)
        raise KeyError(f"no kernel variant {family}/{name}; known for {family}: {known}") from None


def costs(family: str, name: str, **shape) -> list[KernelCost]:
    """The dispatches of `family`/`name` at the given shape, with their costs."""
    return lookup(family, name)(**shape)


def variants(family: str | None = None) -> list[tuple[str, str]]:
    """Registered (family, name) pairs."""
    _load_families()
    return sorted(k for k in _REGISTRY if family is None or k[0] == family)


_loaded = False


def _load_families():
    """Import every family module once (each registers its variants on import)."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _loaded = True
