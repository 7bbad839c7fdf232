"""The predictor's write-back term: what a dispatch pays for the dirty cache lines the dispatch
before it left.

    extra_i = min(written_{i-1}, dirty) x per_byte x min(1, memory_s / total_s)

The geometry model (sdsim/cost/waves.py) is fitted on dispatches timed with their inputs read
into the caches, clean (`Runtime.flush_caches`); in a pipeline those inputs were just written by
the dispatch before, and a dispatch that streams through the cache writes the dirty lines it
evicts to memory while it reads. `dirty` (the most dirty bytes a dispatch finds left) and
`per_byte` come from the calibration's write-back probe (sdsim/calibration/writeback.py); the
dispatch pays them in proportion to its memory share (its DRAM bytes at the device's bandwidth
over its time): a GEMM bound by its arithmetic writes them back behind its steps. A profile
without the probe's section has no such term.

Only the first dispatch of an op is priced so: a calibration case runs an op's dispatches back to
back, so a later one (the Winograd GEMM after its input transform) was timed behind the same
dirty lines it finds in a pipeline (sdsim/cost/overlap.py says the same of the launch overlap).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Writeback:
    dirty: float      # bytes, the most dirty bytes a dispatch finds left by the one before
    per_byte: float   # s, the time each of them costs a memory-bound dispatch

    @classmethod
    def from_section(cls, section: dict | None) -> "Writeback | None":
        """The term of a profile's `writeback` section (None without one, or a zero term)."""
        if not section or not section.get("dirty_mb") or not section.get("us_per_mb"):
            return None
        return cls(section["dirty_mb"] * 1e6, section["us_per_mb"] * 1e-12)

    def after(self, written: float, t) -> float:
        """Seconds a dispatch of KernelTime `t` pays behind one that wrote `written` bytes."""
        if t.total_s <= 0:
            return 0.0
        return min(written, self.dirty) * self.per_byte * min(1.0, t.memory_s / t.total_s)


def charge(times: list, written: list, term: "Writeback | None", starts: list) -> list:
    """KernelTimes of a component's dispatches in plan order, each that starts an op (`starts`)
    plus the write-back of what the dispatch before it wrote (`written`, bytes per dispatch);
    unchanged without a term."""
    if term is None:
        return list(times)
    out = times[:1]
    for w, t, start in zip(written, times[1:], starts[1:]):
        extra = term.after(w, t) if start else 0.0
        if extra <= 0:
            out.append(t)
            continue
        out.append(dataclasses.replace(
            t, total_s=t.total_s + extra,
            why=f"{t.why}, plus {extra * 1e6:.2g} us writing back the "
                f"{min(w, term.dirty) / 1e6:.3g} MB the previous dispatch left dirty"))
    return out
