"""Atomic file output: write to a temporary file in the same folder, then rename into place,
so an interrupted run never leaves a truncated file that looks whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from sdsim.errors import SdsimError


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed.
    A folder that cannot be made or a target that cannot be replaced (a folder, a read-only
    place) is an SdsimError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp",
                                   dir=path.parent)
    except OSError as e:
        raise SdsimError(f"{path}: cannot write here ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)  # the data reaches the disk before the name does
        os.chmod(tmp, 0o666 & ~_umask())   # as open() would make it (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename == tmp and e.filename2 is not None:  # os.replace
            raise SdsimError(f"{path}: cannot replace it ({e.strerror})") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(name) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
