"""The predictor's sequence term: the part of a dispatch's time the dispatch before it hides.

    hidden(prev) = hidden x min(1, prev / over)
    t_i = t(call i) - max(0, hidden(t_{i-1}) - hidden(lead)),  at most half of t(call i)

`t(call)` is the geometry model (sdsim/cost/waves.py), fitted on dispatches timed behind the
calibration's lead of small dispatches (each `lead` long), so a call is priced by how much more
of it its own predecessor hides than a lead dispatch would. A GPU readies the next dispatch
while one runs: on an H100 and an H200, a small dispatch right after a long one takes 1-3 us less
than deep in a stream of small ones. `hidden`, `over` and `lead` come from the calibration's
launch-overlap probe (sdsim/calibration/overlap.py); a profile without them (older calibrations,
specification-only profiles) has no such term. The first dispatch of a component follows none.

Only the first dispatch of an op is priced so. A calibration case runs one op's dispatches back
to back behind the lead, so a later dispatch of an op (a split GEMM's reduction, the Winograd
GEMM after its input transform) was timed right behind the same predecessor it follows in a
pipeline: what that predecessor hides is already in its fitted time. Priced again, the H100's
split-K reductions after their GEMMs came out 40-50% short.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Overlap:
    hidden: float   # s, the most of a dispatch its predecessor hides
    over: float     # s, the predecessor length from which all of `hidden` is hidden
    lead: float     # s, one calibration lead dispatch

    @classmethod
    def from_section(cls, section: dict | None) -> "Overlap | None":
        """The term of a profile's `overlap` section (None without one, or a zero term)."""
        if not section or not section.get("hidden_us"):
            return None
        return cls(section["hidden_us"] * 1e-6, section["over_us"] * 1e-6,
                   section["lead_us"] * 1e-6)

    def hidden_after(self, prev_s: float) -> float:
        """Seconds hidden behind a predecessor of `prev_s`, beyond what a lead dispatch hides."""
        return self.hidden * (min(1.0, prev_s / self.over) - min(1.0, self.lead / self.over))


def hide(times: list, overlap: "Overlap | None", starts: list | None = None) -> list:
    """KernelTimes of a component's dispatches in plan order, each that starts an op (`starts`,
    one bool per dispatch; default: every one) less what its predecessor hides (module doc);
    unchanged without a term."""
    if overlap is None:
        return list(times)
    starts = starts or [True] * len(times)
    out = times[:1]
    for prev, t, start in zip(times, times[1:], starts[1:]):
        cut = min(overlap.hidden_after(prev.total_s), 0.5 * t.total_s) if start else 0.0
        if cut <= 0:
            out.append(t)
            continue
        out.append(dataclasses.replace(
            t, total_s=t.total_s - cut,
            why=f"{t.why}, less {cut * 1e6:.2g} us hidden behind the previous dispatch "
                f"({prev.total_s * 1e6:.3g} us)"))
    return out
