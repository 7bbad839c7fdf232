"""Activation memory planning: one buffer per tensor (naive) or shared buffers, greedy by size.

A tensor is live from the step that writes it to the last step that reads it (graph inputs from
step 0, graph outputs to the end). Two tensors whose live ranges are disjoint may share a buffer.

`greedy_by_size` is the shared-object strategy of TFLite's GPU delegate: take tensors largest
first; give each the smallest existing buffer that is free over its whole live range and already
big enough, else the largest free one (grown to fit), else a new buffer. The plan's size is the
sum of its buffers. It is a heuristic (optimal sharing is NP-hard) but never worse than naive.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Live:
    """One tensor to place: its size in bytes and the first and last step it is live (inclusive)."""

    key: object
    size: int
    first: int
    last: int


def naive(tensors: list[Live]) -> int:
    """Bytes with one dedicated buffer per tensor."""
    return sum(t.size for t in tensors)


@dataclass
class _Buffer:
    size: int
    ranges: list = field(default_factory=list)   # disjoint (first, last), sorted
    members: list = field(default_factory=list)  # the Live tensors placed in it

    def free_over(self, t: Live) -> bool:
        i = bisect.bisect_left(self.ranges, (t.first, t.first))
        if i < len(self.ranges) and self.ranges[i][0] <= t.last:
            return False
        return i == 0 or self.ranges[i - 1][1] < t.first

    def take(self, t: Live):
        bisect.insort(self.ranges, (t.first, t.last))
        self.members.append(t)


def greedy_by_size(tensors: list[Live]) -> int:
    """Bytes with shared buffers assigned greedy by size (see module docstring)."""
    return sum(size for size, _ in greedy_buffers(tensors))


def greedy_buffers(tensors: list[Live]) -> list[tuple[int, list[Live]]]:
    """The greedy-by-size plan: (buffer size, tensors sharing it) per buffer."""
    buffers: list[_Buffer] = []
    for t in sorted(tensors, key=lambda t: (-t.size, t.first)):
        free = [b for b in buffers if b.free_over(t)]
        fits = [b for b in free if b.size >= t.size]
        if fits:
            buf = min(fits, key=lambda b: b.size)
        elif free:
            buf = max(free, key=lambda b: b.size)
            buf.size = t.size
        else:
            buf = _Buffer(t.size)
            buffers.append(buf)
        buf.take(t)
    return [(b.size, b.members) for b in buffers]


def peak_live(tensors: list[Live]) -> int:
    """The largest total size live at one step: a lower bound for any plan."""
    if not tensors:
        return 0
    events = {}
    for t in tensors:
        events[t.first] = events.get(t.first, 0) + t.size
        events[t.last + 1] = events.get(t.last + 1, 0) - t.size
    cur = best = 0
    for step in sorted(events):
        cur += events[step]
        best = max(best, cur)
    return best
