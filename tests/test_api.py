"""The documented Python API gives what the CLI prints."""

import json

import pytest

import sdsim
from sdsim.cli import main


def test_predict_api_equals_the_cli(tmp_path, capsys):
    r = sdsim.predict(device="s23ultra", opt="none", steps=10, scheduler="ddim")
    assert main(["predict", "--device", "s23ultra", "--opt", "none", "--steps", "10",
                 "--scheduler", "ddim", "--format", "json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert r.to_json() == cli
    assert r.total_s == cli["total_s"] and r.band_s == (cli["total_s_low"], cli["total_s_high"])
    comp = r.rows("component")
    assert comp[-1]["component"] == "total" and comp[-1]["latency_s"] == r.total_s
    kernels = r.rows("kernel")
    unet = next(c for c in r.prediction.components if c.name == "unet")
    assert sum(1 for k in kernels if k["id"].startswith("unet/")) == len(unet.kernels)
    assert all(k["why"] for k in kernels)
    r.write_trace(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    with pytest.raises(ValueError, match="component, op, kernel"):
        r.rows("layer")


def test_api_names_resolve_lazily():
    assert sdsim.load_profile("s23ultra").gpu == "Adreno 740"
    assert callable(sdsim.trace_pipeline) and sdsim.StableDiffusion.__name__ == "StableDiffusion"
    with pytest.raises(AttributeError):
        sdsim.no_such_thing
