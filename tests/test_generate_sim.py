"""The kernel plan in NumPy (--backend sim) against a device with native half arithmetic: the tiny
model, text to image, the same image within 1/255 for both plans and both half arithmetics."""

import json
import warnings

import numpy as np
import pytest

from conftest import HALF, needs_half
from sdsim.lower.options import parse_opt
from sdsim.model.pipeline import StableDiffusion
from sdsim.sim.half import HalfLibrary


def _sd():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return StableDiffusion.random("tiny", seed=3, precision="fp16")


def _image(sd):
    return sd("a red cube", steps=2, scheduler="ddim", seed=5, progress=False)


@needs_half
@pytest.mark.opencl
@pytest.mark.parametrize("opt", ["paper", "none"])
def test_simulated_plan_is_the_half_device_image(half_rt, half_library, opt):
    from sdsim.kernels import tuning
    from sdsim.sim.half import library

    # the tiling the CPU device runs; every attention and GroupNorm's SiLU take its half exp
    with tuning.use(tuning.DEFAULTS["cpu"]), library(half_library):
        device, sim = _sd(), _sd()
        device.use_opencl(half_rt, parse_opt(opt))
        sim.use_sim(parse_opt(opt), half_rt.arith)
        a, b = _image(device), _image(sim)
    assert a.std() > 10
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


@needs_half
@pytest.mark.opencl
def test_generate_cli_sim_takes_the_half_of_a_device(tmp_path, capsys, half_library):
    """--half-of PLATFORM: the simulation computes with that device's half exp and subnormal
    fma (the JSON says which); --half-of and --cl-device outside --backend sim are refused."""
    from sdsim.cli import main

    out = tmp_path / "x.png"
    base = ["generate", "--random-weights", "--preset", "tiny", "--steps", "1", "--height", "64",
            "--no-progress", "--out", str(out)]
    assert main(base + ["--backend", "sim", "--precision", "fp16", "--half-of", HALF[0],
                        "--cl-device", HALF[1], "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["half_library"] == half_library.describe()
    assert main(base + ["--half-of", HALF[0]]) != 0
    assert "--half-of applies to --backend sim" in capsys.readouterr().err
    assert main(base + ["--backend", "sim", "--precision", "fp16", "--cl-device", "0"]) != 0
    assert "add --half-of" in capsys.readouterr().err
    import pyopencl as cl
    plain = [p.name for p in cl.get_platforms()
             if all("cl_khr_fp16" not in d.extensions for d in p.get_devices())]
    if plain:   # PoCL's CPU device: no half arithmetic to read
        assert main(base + ["--backend", "sim", "--precision", "fp16", "--half-of",
                            plain[0]]) != 0
        assert "has no cl_khr_fp16" in capsys.readouterr().err


def test_generate_cli_sim_backend(tmp_path, capsys):
    from sdsim.cli import main

    out = tmp_path / "x.png"
    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
                 "--backend", "sim", "--precision", "fp16", "--arith", "fp16acc",
                 "--tuning", "cpu", "--no-progress", "--out", str(out), "--format",
                 "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["backend"], got["arith"], got["opt"]) == ("sim", "fp16acc", "paper")
    assert got["half_library"] == HalfLibrary().describe()
    assert out.stat().st_size > 0
    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
                 "--backend", "sim", "--no-progress", "--out", str(out)]) != 0
    assert "--precision fp16" in capsys.readouterr().err
