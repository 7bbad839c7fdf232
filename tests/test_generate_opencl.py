"""Text to image through the OpenCL kernel plan gives the NumPy reference's image.

The tiny preset with seeded random weights runs every op family of SD1.4 (CLIP, every UNet and
VAE block type), so each scheduler's loop and each --opt plan is checked end to end: fp32 storage
within 2/255 of the reference, fp16 storage within the tolerance documented in the README.
"""

import json
import warnings

import numpy as np
import pytest

from sdsim import schemas
from sdsim.errors import SdsimError
from sdsim.lower.options import parse_opt
from sdsim.model.pipeline import StableDiffusion
from sdsim.model.schedulers import SCHEDULERS, make_scheduler

#: max |OpenCL - NumPy| in 1/255 steps: fp32 storage; fp16 storage (each op's output rounded to
#: half on both sides, the kernels' float arithmetic and reduction order differ from NumPy's)
FP32_TOL, FP16_TOL = 2, 8


def _sd(precision="fp32"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return StableDiffusion.random("tiny", seed=3, precision=precision)


@pytest.fixture(scope="module")
def reference():
    """NumPy images per (scheduler, precision), computed once."""
    cache = {}

    def get(scheduler, precision="fp32", **kw):
        key = (scheduler, precision, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = _sd(precision)("a red cube", steps=2, scheduler=scheduler, seed=5,
                                        progress=False, **kw)
        return cache[key]
    return get


def _opencl(rt, opt, precision="fp32"):
    sd = _sd(precision)
    sd.use_opencl(rt, parse_opt(opt))
    return sd


def _diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("opt", ["paper", "none"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_opencl_image_equals_numpy_fp32(rt, reference, scheduler, opt):
    sd = _opencl(rt, opt)
    img = sd("a red cube", steps=2, scheduler=scheduler, seed=5, progress=False)
    ref = reference(scheduler)
    assert img.shape == ref.shape == (16, 16, 3)
    assert ref.std() > 10                      # not a flat image: the comparison can fail
    assert _diff(img, ref) <= FP32_TOL
    times = sd.stages.times
    calls = sd.stages.runners
    assert times["unet"].calls == len(times["unet"].per_call) >= 2
    assert times["text_encoder"].calls == times["vae_decoder"].calls == 1
    assert all(t.kernel_s > 0 for t in times.values())
    assert len(calls) == 3                     # one runner (weights uploaded once) per component


@pytest.mark.parametrize("opt", ["paper", "none"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_opencl_image_equals_numpy_fp16_storage(rt, reference, scheduler, opt):
    sd = _opencl(rt, opt, "fp16")
    img = sd("a red cube", steps=2, scheduler=scheduler, seed=5, progress=False)
    assert sd.nonfinite_report() is None
    assert _diff(img, reference(scheduler, "fp16")) <= FP16_TOL


@pytest.mark.parametrize("opt", ["paper", "none"])
@pytest.mark.parametrize("height,width", [(16, 24), (18, 22)])
def test_non_square_and_odd_sizes(rt, reference, opt, height, width):
    """--height/--width, same image on both backends: 16x24 (tiny preset: latents of 8x12) and
    18x22 (latents of 9x11, which the UNet rounds up on the way down, 5x6, and crops back on the
    way up: the OpenCL upsample's cropped output); a size that makes no whole latents is refused
    before any work."""
    sd = _opencl(rt, opt)
    img = sd("a red cube", steps=2, scheduler="ddim", seed=5, height=height, width=width,
             progress=False)
    ref = reference("ddim", height=height, width=width)
    assert img.shape == ref.shape == (height, width, 3)
    assert _diff(img, ref) <= FP32_TOL
    with pytest.raises(SdsimError, match="16x17: the width must be a positive multiple of 2"):
        sd("x", steps=1, height=16, width=17, progress=False)


def test_generate_cli_prints_times_beside_the_prediction(tmp_path, capsys):
    from sdsim.cli import main

    out = tmp_path / "x.png"
    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "2",
                 "--backend", "opencl", "--device", "pocl-cpu", "--no-progress",
                 "--format", "json", "--out", str(out)]) == 0
    obj = json.loads(capsys.readouterr().out)
    schemas.validate("generate", obj)
    assert out.is_file() and obj["backend"] == "opencl" and obj["profile"] == "pocl-cpu"
    rows = {r["component"]: r for r in obj["times"]}
    assert set(rows) == {"text_encoder", "unet", "vae_decoder", "total"}
    # PNDM runs one more UNet call than steps (its first step is a PLMS warm-up); predict counts
    # the same calls
    assert rows["unet"]["calls"] == make_scheduler("pndm").unet_calls(2) == 3
    for r in rows.values():
        assert r["predicted_s"] > 0 and r["kernel_s"] > 0
        assert r["error_pct"] == pytest.approx(100 * (r["predicted_s"] / r["kernel_s"] - 1))
    assert rows["total"]["kernel_s"] == pytest.approx(
        sum(rows[c]["kernel_s"] for c in ("text_encoder", "unet", "vae_decoder")))


def test_progress_names_each_components_set_up_once(rt, reference):
    """With progress on, each component says when its kernels are built and weights uploaded:
    once, at its first call (PNDM runs the UNet three times for two steps), between the
    pipeline's phases; the image is the one without progress."""
    import io
    import re

    from sdsim.progress import Progress

    out = io.StringIO()
    sd = _sd()
    progress = Progress(True, file=out)
    sd.use_opencl(rt, parse_opt("paper"), progress=progress)
    img = sd("a red cube", steps=2, seed=5, progress=progress)
    assert _diff(img, reference("pndm")) <= FP32_TOL
    lines = [re.sub(r" \[[\d.]+ s\]$", "", ln) for ln in out.getvalue().splitlines()
             if ln.endswith(" s]")]
    device = rt.device.name.strip()
    setup = [f"{c}: lowering, building kernels and uploading weights on {device}"
             for c in ("text_encoder", "unet", "vae_decoder")]
    assert lines == ["encoding the prompt (text encoder)", setup[0],
                     "denoising: 3 UNet calls (pndm)", setup[1],
                     "decoding the latents (VAE decoder)", setup[2]]


@pytest.mark.parametrize("argv, words", [
    (["--opt", "none"], "--opt applies to --backend opencl"),
    (["--backend", "opencl", "--opt", "attention=nope"], "attention=nope"),
    (["--device", "pocl-cpu"], "--device applies to --backend opencl"),
])
def test_generate_cli_bad_options(tmp_path, capsys, argv, words):
    from sdsim.cli import main

    rc = main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
               "--no-progress", "--out", str(tmp_path / "x.png"), *argv])
    assert rc != 0 and words in capsys.readouterr().err


def test_find_overflow_names_the_op_numpy_names(rt):
    """A conv whose weights are scaled x1e5 overflows half storage: the watched OpenCL run names
    the same op as the NumPy backend, and an unwatched run still says which component."""
    from sdsim.model.components import FOLDERS
    from sdsim.model.pipeline import FallbackTokenizer
    from sdsim.model.presets import PRESETS
    from sdsim.model.weights import RandomWeights

    cfg = PRESETS["tiny"]
    weights = {c: dict(RandomWeights(f.build(cfg), 3)) for c, f in FOLDERS.items()}
    name = "down_blocks.0.resnets.0.conv1.weight"
    weights["unet"][name] = weights["unet"][name] * np.float32(1e5)

    def run(backend, watch=False):
        sd = StableDiffusion(cfg, weights, FallbackTokenizer(cfg.text_encoder.vocab_size), None,
                             "fp16")
        if backend == "opencl":
            sd.use_opencl(rt, parse_opt("paper"), watch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sd("x", steps=1, seed=5, progress=False)
        return sd.nonfinite_report()

    expect = "unet: conv2d in down_blocks.0.resnets.0.conv1"
    assert run("numpy") == expect
    assert run("opencl", watch=True) == expect
    assert run("opencl") == "unet: its output (rerun with --find-overflow to name the op)"


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_sd2_style_model_through_opencl(rt, scheduler):
    """SD2.x's differences at toy size, through the kernel plan: per-block head counts, linear
    proj_in/proj_out, an erf-GELU (OpenCLIP) text encoder and v-prediction."""
    import dataclasses

    from sdsim.model.components import FOLDERS
    from sdsim.model.config import UNetConfig
    from sdsim.model.pipeline import FallbackTokenizer
    from sdsim.model.presets import PRESETS
    from sdsim.model.weights import RandomWeights

    tiny = PRESETS["tiny"]
    cfg = dataclasses.replace(
        tiny, name="tiny-sd2",
        text_encoder=dataclasses.replace(tiny.text_encoder, hidden_size=48, hidden_act="gelu"),
        unet=UNetConfig.from_dict(dict(
            sample_size=8, block_out_channels=(32, 64, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=48, attention_head_dim=(2, 4, 8), use_linear_projection=True,
            norm_num_groups=8)))
    weights = {c: RandomWeights(f.build(cfg), 3) for c, f in FOLDERS.items()}
    sched = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1, "prediction_type": "v_prediction",
             "set_alpha_to_one": False, "clip_sample": False}

    def image(backend):
        sd = StableDiffusion(cfg, weights, FallbackTokenizer(cfg.text_encoder.vocab_size), sched)
        if backend:
            sd.use_opencl(rt, parse_opt("paper"))
        return sd("x", steps=2, scheduler=scheduler, seed=5, progress=False)

    ref = image(None)
    assert ref.shape == (16, 16, 3) and ref.std() > 10
    assert _diff(image("opencl"), ref) <= FP32_TOL
