"""The spine against facts of the real SD1.4 model (parameter counts of the released checkpoints,
FLOPs as PyTorch's FLOP counter reports them on the diffusers models, op counts)."""

import json
import subprocess
import sys

import pytest

from sdsim.backends import trace
from sdsim.backends.trace import trace_component, trace_pipeline
from sdsim.errors import SdsimError
from sdsim.model.clip import CLIPTextModel
from sdsim.model.presets import PRESETS, load_model_config
from sdsim.model.unet import UNet2DConditionModel
from sdsim.model.vae import AutoencoderKL

SD14 = PRESETS["sd14"]


def test_parameter_counts_match_the_released_checkpoints():
    assert UNet2DConditionModel(SD14.unet).num_params() == 859_520_964
    vae = AutoencoderKL(SD14.vae)
    assert vae.num_params() == 83_653_863
    assert sum(p.numel for _, p in vae.decoder_params()) == 49_490_199
    assert CLIPTextModel(SD14.text_encoder).num_params() == 123_060_480


def test_parameter_names_follow_diffusers():
    names = {n for n, _ in UNet2DConditionModel(SD14.unet).named_params()}
    for n in ["conv_in.weight", "time_embedding.linear_1.weight",
              "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
              "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
              "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.bias",
              "down_blocks.0.downsamplers.0.conv.weight", "up_blocks.0.resnets.2.conv_shortcut.weight",
              "up_blocks.2.upsamplers.0.conv.weight", "mid_block.attentions.0.proj_in.weight",
              "conv_norm_out.weight", "conv_out.bias"]:
        assert n in names, n
    assert len(names) == 686  # the number of tensors in SD1.4's unet/diffusion_pytorch_model.safetensors
    vae = {n for n, _ in AutoencoderKL(SD14.vae).named_params()}
    assert "decoder.mid_block.attentions.0.to_out.0.weight" in vae
    assert "encoder.down_blocks.0.downsamplers.0.conv.weight" in vae
    clip = {n for n, _ in CLIPTextModel(SD14.text_encoder).named_params()}
    assert "text_model.embeddings.token_embedding.weight" in clip
    assert "text_model.encoder.layers.11.mlp.fc2.weight" in clip


def _share(g, kind):
    return sum(op.flops for op in g.ops if op.kind == kind) / g.flops


def test_unet_flops_at_512():
    g1 = trace_component("unet", SD14, 512, batch=1)
    g2 = trace_component("unet", SD14, 512, batch=2)
    assert g1.flops == pytest.approx(803.27e9, rel=0.005)
    assert g2.flops == pytest.approx(1606.55e9, rel=0.005)
    assert _share(g1, "conv2d") == pytest.approx(0.553, abs=0.001)
    assert _share(g1, "linear") == pytest.approx(0.290, abs=0.001)
    assert _share(g1, "attention") == pytest.approx(0.157, abs=0.001)


def test_vae_decoder_and_text_encoder_flops():
    assert trace_component("vae_decoder", SD14, 512, batch=2).flops == pytest.approx(2514.5e9, rel=0.005)
    assert trace_component("text_encoder", SD14, 512, batch=1).flops == pytest.approx(13.3e9, rel=0.01)


def test_unet_op_counts():
    g = trace_component("unet", SD14, 512, batch=2)
    assert g.count("conv2d") == 98
    assert g.count("attention") == 32
    assert g.count("group_norm") == 61
    assert g.count("layer_norm") == 48
    assert g.count("geglu") == 16
    self_attn = [op for op in g.ops if op.kind == "attention" and op.scope.endswith("attn1")]
    cross = [op for op in g.ops if op.kind == "attention" and op.scope.endswith("attn2")]
    assert len(self_attn) == len(cross) == 16
    assert {op.attrs["head_dim"] for op in g.ops if op.kind == "attention"} == {40, 80, 160}
    assert {op.attrs["nk"] for op in cross} == {77}
    assert max(op.attrs["nq"] for op in self_attn) == 4096


def test_shapes_and_eps_of_the_unet():
    g = trace_component("unet", SD14, 512, batch=2)
    assert g.outputs[0].shape == (2, 4, 64, 64)
    gn = [op for op in g.ops if op.kind == "group_norm"]
    assert {op.attrs["eps"] for op in gn if op.scope.endswith(".norm") and "attentions" in op.scope} == {1e-6}
    assert {op.attrs["eps"] for op in gn if "resnets" in op.scope} == {1e-5}
    assert all(op.attrs["act"] == "silu" for op in gn if "resnets" in op.scope)
    dec = trace_component("vae_decoder", SD14, 512, batch=2)
    assert dec.outputs[0].shape == (1, 3, 512, 512)
    enc = trace_component("vae_encoder", SD14, 512, batch=2)
    assert enc.outputs[0].shape == (1, 8, 64, 64)


def test_tiny_and_sd14_trace_through_the_same_code(monkeypatch):
    """Both presets go through TraceBackend's ops and the same model classes."""
    seen = {}
    orig = trace.TraceBackend._record

    def spy(self, kind, *a, **k):
        seen.setdefault(self._preset, set()).add(kind)
        return orig(self, kind, *a, **k)

    monkeypatch.setattr(trace.TraceBackend, "_record", spy)
    for name in ("tiny", "sd14"):
        monkeypatch.setattr(trace.TraceBackend, "_preset", name, raising=False)
        graphs = trace_pipeline(PRESETS[name], resolution=64 if name == "tiny" else 512)
        assert set(graphs) == {"text_encoder", "unet", "vae_decoder"}
    assert seen["tiny"] == seen["sd14"]


def test_sd2_style_config_loads(tmp_path):
    """SD 2.x: linear projections, 1024-dim context, per-level head counts."""
    for sub, cfg in {"unet": {"attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
                              "cross_attention_dim": 1024},
                     "vae": {}, "text_encoder": {"hidden_size": 1024, "num_hidden_layers": 23,
                                                 "num_attention_heads": 16, "intermediate_size": 4096,
                                                 "hidden_act": "gelu"}}.items():
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "config.json").write_text(json.dumps(cfg))
    cfg = load_model_config(str(tmp_path))
    assert UNet2DConditionModel(cfg.unet).num_params() == 865_910_724  # stabilityai/stable-diffusion-2-1
    g = trace_component("unet", cfg, 512)
    assert {op.attrs["head_dim"] for op in g.ops if op.kind == "attention"} == {64}


@pytest.mark.parametrize("cfg,msg", [
    ({"unet": {"down_block_types": ["FancyDownBlock", "DownBlock2D", "DownBlock2D", "DownBlock2D"]}},
     "FancyDownBlock"),
    ({"unet": {"class_embed_type": "timestep"}}, "class_embed_type"),
])
def test_unsupported_config_names_the_field(tmp_path, cfg, msg):
    for sub in ("unet", "vae", "text_encoder"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "config.json").write_text(json.dumps(cfg.get(sub, {})))
    with pytest.raises(SdsimError, match=msg):
        load_model_config(str(tmp_path))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sdsim", *args], capture_output=True, text=True)


def test_info_json():
    r = _cli("info", "--model", "sd14", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["components"]
    assert d["unet"]["params"] == 859_520_964
    assert d["unet"]["flops"] == pytest.approx(1606.55e9, rel=0.005)
    assert set(d) == {"text_encoder", "unet", "vae_decoder"}


@pytest.mark.parametrize("setup,needle", [
    (lambda p: None, "unknown model"),
    (lambda p: p.mkdir(), "config.json"),
])
def test_info_bad_model_is_one_clear_line(tmp_path, setup, needle):
    target = tmp_path / "model"
    setup(target)
    r = _cli("info", "--model", str(target))
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_no_arguments_prints_help():
    r = _cli()
    assert r.returncode == 0
    assert "usage: sdsim" in r.stdout and "info" in r.stdout
