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


def test_trace_pipeline_gives_each_component_as_the_model_is_built():
    """`sdsim.trace_pipeline`, as the README shows it: one graph per component of a
    text-to-image run, with SD1.4's architecture (12 CLIP layers, 16 transformer blocks of two
    attentions each, one attention in the VAE's mid block), a (height, width) resolution, and
    the VAE decoder at half the guidance batch."""
    from sdsim.model.presets import load_model_config

    graphs = sdsim.trace_pipeline(load_model_config("sd14"), resolution=(512, 384), batch=2,
                                  precision="fp16")
    assert list(graphs) == ["text_encoder", "unet", "vae_decoder"]
    assert [g.count("attention") for g in graphs.values()] == [12, 32, 1]
    assert graphs["text_encoder"].ops[-1].output.shape == (2, 77, 768)
    assert graphs["unet"].ops[-1].output.shape == (2, 4, 64, 48)
    assert graphs["vae_decoder"].ops[-1].output.shape == (1, 3, 512, 384)
