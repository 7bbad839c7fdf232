"""Atomic outputs: a write interrupted by an exception, Ctrl-C or a kill never leaves a truncated file
under the real name (nor, where Python still runs, a temporary one), and every writer in the
package goes through sdsim.atomic."""

from __future__ import annotations

import ast
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sdsim
from sdsim import atomic

PACKAGE = Path(sdsim.__file__).resolve().parent


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "report.md"
    atomic.write_text(target, "old")
    atomic.write_text(target, "new contents")
    assert target.read_text() == "new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_write_leaves_no_file_and_no_temporary(tmp_path, exc):
    target = tmp_path / "image.png"
    with pytest.raises(exc):
        with atomic.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"\x89PNG half an image")
            raise exc()
    assert list(tmp_path.iterdir()) == []


def test_exception_mid_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "profile.yaml"
    target.write_text("name: whole\n")
    with pytest.raises(ValueError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("name: trun")
            raise ValueError("disk full")
    assert target.read_text() == "name: whole\n"
    assert [p.name for p in tmp_path.iterdir()] == ["profile.yaml"]


SLOW_WRITER = r"""
import sys, time
from sdsim import atomic
with atomic.atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        for i in range(600):
            f.write(b"x" * 1000)
            f.flush()
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.01)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_mid_write_leaves_no_truncated_file(tmp_path, sig):
    """SIGINT: Python unwinds and removes the temporary file. SIGKILL: nothing runs, so a hidden
    temporary file may stay, but the real name never holds a partial file."""
    target = tmp_path / "out.json"
    target.write_text('{"previous": "run"}')
    p = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(sig)
    p.wait(timeout=60)
    assert p.returncode != 0
    assert target.read_text() == '{"previous": "run"}'
    others = [q.name for q in tmp_path.iterdir() if q != target]
    if sig == signal.SIGINT:
        assert others == []
    else:
        assert all(n.startswith(".out.json.") and n.endswith(".tmp") for n in others), others


def test_interrupted_generate_leaves_previous_image_intact(tmp_path):
    """A real command: Ctrl-C during `sdsim generate` exits 130 with one line, keeps the image of
    an earlier run byte for byte and leaves nothing else behind."""
    out = tmp_path / "out.png"
    out.write_bytes(b"\x89PNG\r\n\x1a\n an earlier, complete image")
    before = out.read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "sdsim", "generate", "--random-weights", "--preset",
                          "tiny", "--steps", "999", "--progress", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    err = ""
    while time.time() < deadline:  # wait until denoising runs (the progress bar's first line)
        ch = p.stderr.read(1)
        err += ch
        if not ch or "denoising" in err:
            break
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=120)
    text = err + rest  # the progress bar leaves no newline before the message
    assert p.returncode == 130, text
    assert "Traceback" not in text and text.count("sdsim generate: interrupted") == 1, text
    assert text.rstrip().endswith("sdsim generate: interrupted"), text
    assert out.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["out.png"]


# --- every writer goes through sdsim.atomic ---------------------------------------------------
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed",
                 "tofile", "to_csv", "to_json"}


def direct_writes(source: str, filename: str) -> list[str]:
    """Calls that write a file other than a temporary path from `atomic.atomic_path(...)`."""
    tree = ast.parse(source, filename)
    temps = set()  # names bound by `with ...atomic_path(...) as NAME`
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(item.optional_vars, ast.Name)
                        and ast.unparse(call.func).endswith("atomic_path")):
                    temps.add(item.optional_vars.id)

    def is_temp(n) -> bool:
        return isinstance(n, ast.Name) and n.id in temps

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        where = f"{filename}:{node.lineno}: {ast.unparse(node)[:80]}"
        if isinstance(f, ast.Name) and f.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            writes = isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")
            if writes and not (node.args and is_temp(node.args[0])):
                found.append(where)
        elif isinstance(f, ast.Attribute) and f.attr in WRITE_METHODS:
            if isinstance(f.value, ast.Name) and f.value.id == "atomic":
                continue  # atomic.write_text / atomic.write_bytes
            target_is_temp = is_temp(f.value) or (node.args and is_temp(node.args[0]))
            if not target_is_temp:
                found.append(where)
        elif isinstance(f, ast.Attribute) and f.attr in ("dump", "safe_dump") and (
                len(node.args) > 1 or any(k.arg == "stream" for k in node.keywords)):
            found.append(where)
    return found


def test_every_writer_in_the_package_is_atomic():
    """sdsim/testing is left out: it writes the inputs of tests, not outputs for users."""
    found = [w for f in sorted(PACKAGE.rglob("*.py"))
             if f.name != "atomic.py" and f.parent.name != "testing"
             for w in direct_writes(f.read_text(), str(f.relative_to(PACKAGE.parent)))]
    assert not found, "files written without sdsim.atomic:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet,bad", [
    ("open(p, 'w').write(s)", True),
    ("open(p, mode='ab')", True),
    ("Path(p).write_text(s)", True),
    ("fig.savefig(path)", True),
    ("img.save(out, format='PNG')", True),
    ("json.dump(obj, f)", True),
    ("open(p, 'rb').read()", False),
    ("with atomic.atomic_path(p) as tmp:\n    img.save(tmp, format='PNG')", False),
    ("with atomic_path(p) as t:\n    open(t, 'w').write(s)", False),
    ("json.dumps(obj)", False),
    ("atomic.write_text(path, s)", False),
])
def test_writer_scan_is_right_on_snippets(snippet, bad):
    assert bool(direct_writes(snippet, "<s>")) == bad


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_open_would_give_under_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:   # what any other program would make
            f.write("x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.txt") == 0o666 & ~mask
