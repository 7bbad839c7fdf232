"""Where and under what conditions a measurement ran: the sdsim commit and the machine's load,
recorded in every report that states measured figures."""

from __future__ import annotations

import os
import subprocess

from sdsim.paths import ROOT


def commit() -> str | None:
    """The checkout's short commit, with '+' when tracked files differ from it; None outside git.
    SDSIM_COMMIT overrides it where the tree is a copy without its own history (a remote
    machine that receives the files of a commit)."""
    if os.environ.get("SDSIM_COMMIT"):
        return os.environ["SDSIM_COMMIT"]
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")


def load() -> float | None:
    """The machine's 1-minute load average (None where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def now() -> str:
    """The time a report states: UTC, to the minute."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command(name: str, fallback: str) -> str:
    """The command line a report names: `sdsim NAME ...` as typed when this process is the CLI
    running `name`, else `fallback` (a call from Python), spelled as the CLI would be."""
    import shlex
    import sys

    if sys.argv[1:2] == [name]:
        return "sdsim " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return fallback
