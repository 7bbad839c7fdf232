"""`sdsim generate` end to end on the tiny preset, and its user errors."""

import re

import numpy as np
import pytest
from PIL import Image

from sdsim.cli import main

TINY = ["generate", "--random-weights", "--preset", "tiny", "--steps", "2", "--no-progress"]


def test_writes_png_and_same_seed_gives_same_bits(tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(TINY + ["--prompt", "a cat", "--seed", "5", "--out", str(a)]) == 0
    assert main(TINY + ["--prompt", "a cat", "--seed", "5", "--out", str(b)]) == 0
    img = np.asarray(Image.open(a))
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert np.array_equal(img, np.asarray(Image.open(b)))
    err = capsys.readouterr().err
    assert "warning: random weights and no tokenizer" in err
    assert not list(tmp_path.glob(".*tmp"))


def test_latents_file_is_used(tmp_path):
    lat = tmp_path / "lat.npy"
    np.save(lat, np.random.default_rng(5).standard_normal((1, 4, 8, 8)).astype(np.float32))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(TINY + ["--latents", str(lat), "--seed", "1", "--out", str(a)]) == 0
    assert main(TINY + ["--seed", "1", "--out", str(b)]) == 0
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


@pytest.mark.parametrize("extra,msg", [
    (["--out", "x.jpg"], "expected a .png"),
    (["--latents", "{tmp}/missing.npy", "--out", "{tmp}/x.png"], "missing.npy: cannot read latents"),
    (["--latents", "{tmp}/bad.npy", "--out", "{tmp}/x.png"], r"bad.npy: latents have shape \(1, 4, 3, 3\), expected \(1, 4, 8, 8\)"),
])
def test_user_errors_are_one_line(tmp_path, capsys, extra, msg):
    np.save(tmp_path / "bad.npy", np.zeros((1, 4, 3, 3), np.float32))
    assert main(TINY + [e.format(tmp=tmp_path) for e in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sdsim generate: error:")
    assert re.search(msg, err)


def test_model_folder_errors_name_the_path(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert "nope" in capsys.readouterr().err
    (tmp_path / "m.ckpt").write_bytes(b"x")
    assert main(["generate", "--model", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "x.png")]) == 2
    assert "refusing to unpickle" in capsys.readouterr().err


@pytest.mark.slow
def test_sd14_random_weights_two_steps_write_512_png(tmp_path):
    """Smoke run: the full sd14 preset, every op, 3 UNet calls at batch 2 + VAE decode."""
    out = tmp_path / "x.png"
    assert main(["generate", "--random-weights", "--steps", "2", "--no-progress", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.size == (512, 512) and img.mode == "RGB"
    assert np.asarray(img).std() > 0
