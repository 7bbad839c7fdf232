"""benchmarks/winograd_transform_groups.py on a CPU device: every work-group shape's transform
is the 8 x 8 one's bit for bit (the benchmark stops otherwise), and each is timed and reported."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KERNEL_PLATFORM

pytestmark = pytest.mark.opencl
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
groups = pytest.importorskip("benchmarks.winograd_transform_groups")


def test_every_group_shape_is_timed_and_agrees(tmp_path, monkeypatch):
    # 10 x 10 pixels: 3 x 3 tiles, so every group shape pads rows and columns of tiles
    monkeypatch.setattr(groups, "SHAPES", (("unet", 2, 5, 10),))
    out = tmp_path / "groups"
    argv = ["--precision", "fp16", "--repeat", "1", "--out", str(out)]
    assert groups.main(argv + (["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else [])) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    shapes = {(r["transform"], r["group"]) for r in data["rows"]}
    assert shapes == {(t, f"{a}x{b}") for t in ("input", "output") for a, b in groups.GROUPS}
    assert all(np.isfinite(r["ms"]) and r["ms"] > 0 for r in data["rows"])


def test_a_group_shape_that_changes_the_output_stops_it(tmp_path, monkeypatch):
    """The check can fail: a launch that leaves part of the output unwritten differs."""
    monkeypatch.setattr(groups, "SHAPES", (("unet", 1, 3, 10),))
    monkeypatch.setattr(groups, "GROUPS", ((8, 8), (2, 2)))
    real = groups.Runtime.launch

    def short(self, kernel, global_size, local_size, *args, **kw):   # (2, 2): half the tiles
        if tuple(local_size[:2]) == (2, 2):
            global_size = (2, 2, global_size[2])
        return real(self, kernel, global_size, local_size, *args, **kw)

    monkeypatch.setattr(groups.Runtime, "launch", short)
    argv = ["--precision", "fp32", "--repeat", "1", "--out", str(tmp_path / "g")]
    with pytest.raises(SystemExit, match="group \\(2, 2\\) differs"):
        groups.main(argv + (["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else []))
