"""`sdsim generate` end to end on the tiny preset, and its user errors."""

import io
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from sdsim import schemas
from sdsim.cli import main
from sdsim.progress import Progress

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


#: the phase lines of a NumPy run, in order
PHASES = ("making seeded random weights", "encoding the prompt", "denoising: 3 UNet calls",
          "decoding the latents")


def test_progress_reports_phases_only_when_on():
    on, off, auto = io.StringIO(), io.StringIO(), io.StringIO()   # StringIO: not a terminal
    for out, enabled in ((on, True), (off, False), (auto, None)):
        p = Progress(enabled, "x: ", file=out)
        p.phase("loading")
        assert list(p.bar(range(3), "steps", "step")) == [0, 1, 2]
    assert re.match(r"x: loading \[\d+\.\d s\]\n", on.getvalue()) and "3/3" in on.getvalue()
    assert off.getvalue() == auto.getvalue() == ""


def test_every_phase_on_a_terminal_and_json_stays_pure(tmp_path, capsys, monkeypatch):
    """On a terminal, stderr says when each phase starts (and shows the denoising bar); with
    --format json it stays quiet but for warnings unless --progress asks, and stdout is the
    JSON object alone either way."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = ["generate", "--random-weights", "--preset", "tiny", "--steps", "2",
            "--out", str(tmp_path / "x.png")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    where = [err.find(f"sdsim generate: {p}") for p in PHASES]
    assert -1 not in where and where == sorted(where), err
    assert "denoising: 100%" in err
    assert main(argv + ["--format", "json"]) == 0
    out, err = capsys.readouterr()
    schemas.validate("generate", json.loads(out))
    assert not any(p in err for p in PHASES) and "denoising" not in err
    assert main(argv + ["--no-progress"]) == 0
    assert "denoising" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert main(argv + ["--format", "json", "--progress"]) == 0   # forced on, off a terminal
    out, err = capsys.readouterr()
    schemas.validate("generate", json.loads(out))
    assert all(f"sdsim generate: {p}" in err for p in PHASES), err


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


def test_checkpoint_choices_reach_the_loader(tmp_path, capsys, monkeypatch):
    """--variant fp16 reads *.fp16.safetensors, a repo id resolves in the Hugging Face cache,
    --no-ema takes a CompVis file's training weights: three different images from one seed,
    each equal to the image of the weights it says it used."""
    from safetensors.numpy import load_file, save_file
    from test_load_formats import cache_repo, write_compvis

    from sdsim.model.components import FOLDERS
    from sdsim.model.presets import PRESETS
    from sdsim.testing.fixtures import component_modules, write_tiny_model

    model = write_tiny_model(tmp_path / "m", seed=0)
    other = write_tiny_model(tmp_path / "o", seed=1)
    for comp, f in FOLDERS.items():   # the fp16 variant holds the seed-1 weights
        save_file({k: v.astype(np.float16) for k, v in
                   load_file(str(other / comp / f.weights_file)).items()},
                  str(model / comp / f.weights_file.replace(".safetensors", ".fp16.safetensors")))
    run = ["generate", "--steps", "1", "--no-progress", "--seed", "3"]

    def image(*argv):
        out = tmp_path / f"{len(list(tmp_path.glob('*.png')))}.png"
        assert main(run + [*argv, "--out", str(out)]) == 0
        return np.asarray(Image.open(out))

    plain, fp16 = image("--model", str(model)), image("--model", str(model), "--variant", "fp16")
    assert not np.array_equal(plain, fp16)
    assert np.abs(fp16.astype(int) - image("--model", str(other)).astype(int)).max() <= 2
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    cache_repo(tmp_path / "cache", "someone/tiny-sd", model, "c" * 40)
    assert np.array_equal(image("--model", "someone/tiny-sd"), plain)
    assert f"weights: {tmp_path / 'cache'}" in capsys.readouterr().out

    ckpt = write_compvis(tmp_path / "sd.safetensors", component_modules("tiny"), ema_seed=7)
    # a single CompVis file is read with the SD1.4 config: let it be the tiny one here
    monkeypatch.setitem(PRESETS, "sd14", PRESETS["tiny"])
    ema, train = image("--model", str(ckpt)), image("--model", str(ckpt), "--no-ema")
    assert "(EMA UNet weights)" in capsys.readouterr().out
    assert not np.array_equal(ema, train)


def test_variant_and_no_ema_refused_with_random_weights(tmp_path, capsys):
    assert main(TINY + ["--variant", "fp16", "--out", str(tmp_path / "x.png")]) == 2
    assert "do not apply to --random-weights" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_every_format_predict_has_parses(tmp_path, capsys, fmt):
    """generate offers predict's --format choices, and each output parses: JSON by the schema,
    CSV by the csv module (one row for a NumPy run's image)."""
    import csv

    from test_validate import predict_formats

    assert fmt in predict_formats() and len(predict_formats()) == 4
    out = tmp_path / "x.png"
    assert main(TINY + ["--out", str(out), "--format", fmt]) == 0
    text = capsys.readouterr().out
    if fmt == "json":
        schemas.validate("generate", json.loads(text))
    elif fmt == "csv":
        (row,) = csv.DictReader(io.StringIO(text))
        assert row["image"] == str(out) and (row["width"], row["height"]) == ("16", "16")
    else:
        assert f"wrote {out} (16x16)" in text


@pytest.mark.opencl
def test_opencl_csv_is_the_timing_table(plat, tmp_path, capsys):
    import csv


    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
                 "--no-progress", "--out", str(tmp_path / "x.png"), "--backend", "opencl",
                 "--platform", plat, "--device", "s23ultra", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["component"] for r in rows] == ["text_encoder", "unet", "vae_decoder", "total"]
    assert all(float(r["kernel_s"]) > 0 and float(r["predicted_s"]) > 0 for r in rows)
