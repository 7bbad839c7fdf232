"""`sdsim generate --height H --width W` through the CLI (NumPy backend, tiny preset, one step):
the image has the size asked for, and a size that makes no whole latents is one line of error."""

import json

import numpy as np
import pytest
from PIL import Image

from sdsim.cli import main

TINY = ["generate", "--random-weights", "--preset", "tiny", "--steps", "1", "--no-progress"]


@pytest.mark.parametrize("height,width", [(16, 24), (18, 22)])
def test_image_has_the_size_asked_for(tmp_path, capsys, height, width):
    """Non-square, and (18x22 at the tiny preset's VAE factor 2) odd latents, 9x11."""
    out = tmp_path / "x.png"
    assert main(TINY + ["--height", str(height), "--width", str(width), "--format", "json",
                        "--out", str(out)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert (obj["height"], obj["width"]) == (height, width)
    assert np.asarray(Image.open(out)).shape == (height, width, 3)


def test_latents_file_of_the_size_asked_for(tmp_path, capsys):
    """A --latents file is checked against --height/--width, not the default size."""
    lat = tmp_path / "lat.npy"
    np.save(lat, np.random.default_rng(5).standard_normal((1, 4, 8, 12)).astype(np.float32))
    out = tmp_path / "x.png"
    assert main(TINY + ["--height", "16", "--width", "24", "--latents", str(lat),
                        "--out", str(out)]) == 0
    assert Image.open(out).size == (24, 16)
    assert main(TINY + ["--latents", str(lat), "--out", str(out)]) == 2
    assert "expected (1, 4, 8, 8)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--height", "512", "--width", "500"], "512x500: the width must be a positive multiple of 8"),
    (["--height", "100"], "100x100: the height must be a positive multiple of 8"),
    (["--height", "-8"], "the height must be a positive multiple of 8"),
    (["--height", "0"], "0x0: the height must be a positive multiple of 8"),
    (["--height", "64", "--width", "0"], "64x0: the width must be a positive multiple of 8"),
])
def test_size_not_a_multiple_of_8_is_one_line(tmp_path, capsys, argv, words):
    """SD1.4 (VAE factor 8; its random weights are made lazily, so this is quick): exit status 2,
    one error line that names the dimension at fault, no traceback, no image."""
    out = tmp_path / "x.png"
    assert main(["generate", "--random-weights", "--steps", "1", "--no-progress", *argv,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sdsim generate: error: resolution ") and words in last
    assert not out.exists()
