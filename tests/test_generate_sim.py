"""The kernel plan in NumPy (--backend sim) against a device with native half arithmetic: the tiny
model, text to image, the same image within 1/255 for both plans and both half arithmetics."""

import json
import warnings

import numpy as np
import pytest

from conftest import needs_half
from sdsim.lower.options import parse_opt
from sdsim.model.pipeline import StableDiffusion


def _sd():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return StableDiffusion.random("tiny", seed=3, precision="fp16")


def _image(sd):
    return sd("a red cube", steps=2, scheduler="ddim", seed=5, progress=False)


@needs_half
@pytest.mark.opencl
@pytest.mark.parametrize("opt", ["paper", "none"])
def test_simulated_plan_is_the_half_device_image(half_rt, half_exp_differs, opt):
    from sdsim.kernels import tuning

    if half_exp_differs:   # every attention and the fused GroupNorm's SiLU take half exps
        pytest.skip(half_exp_differs)
    with tuning.use(tuning.DEFAULTS["cpu"]):   # the tiling the CPU device runs
        device, sim = _sd(), _sd()
        device.use_opencl(half_rt, parse_opt(opt))
        sim.use_sim(parse_opt(opt), half_rt.arith)
        a, b = _image(device), _image(sim)
    assert a.std() > 10
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_generate_cli_sim_backend(tmp_path, capsys):
    from sdsim.cli import main

    out = tmp_path / "x.png"
    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
                 "--backend", "sim", "--precision", "fp16", "--arith", "fp16acc",
                 "--tuning", "cpu", "--no-progress", "--out", str(out), "--format",
                 "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["backend"], got["arith"], got["opt"]) == ("sim", "fp16acc", "paper")
    assert out.stat().st_size > 0
    assert main(["generate", "--random-weights", "--preset", "tiny", "--steps", "1",
                 "--backend", "sim", "--no-progress", "--out", str(out)]) != 0
    assert "--precision fp16" in capsys.readouterr().err
