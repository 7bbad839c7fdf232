"""Where a long command is: a line on stderr as each phase starts, and a bar per loop.

Off unless stderr is a terminal (as tqdm's `disable=None`), or when asked to be quiet; it never
writes to stdout, so `--format json` output stays one JSON object.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Phase lines and loop bars on `file` (default: stderr) when `enabled` (None: only if that
    file is a terminal). Lines are written with tqdm.write so they land above an active bar."""

    def __init__(self, enabled: bool | None = None, prefix: str = "", file=None):
        self.file = sys.stderr if file is None else file
        if enabled is None:
            enabled = bool(getattr(self.file, "isatty", lambda: False)())
        self.enabled, self.prefix, self.start = enabled, prefix, time.perf_counter()

    def phase(self, what: str) -> None:
        """Say that `what` starts now, with the seconds since this Progress was made."""
        if self.enabled:
            tqdm.write(f"{self.prefix}{what} [{time.perf_counter() - self.start:.1f} s]",
                       file=self.file)

    def bar(self, iterable, desc: str, unit: str):
        """`iterable` wrapped in a tqdm bar (a plain pass-through when disabled)."""
        return tqdm(iterable, desc=desc, unit=unit, file=self.file, disable=not self.enabled)
