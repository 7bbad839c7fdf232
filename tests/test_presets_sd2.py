"""The sd15 and sd21-base presets: their configs, `sdsim info` and `sdsim predict` on them, and the
SD2 features (per-block head counts, linear projections, a 1024-dim context, an erf-GELU text
encoder) against diffusers / transformers on tiny random models and at full size (shapes only)."""

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
from test_crosscheck_models import TINY_CLIP, assert_matches, randomize, run_unet, saved

from sdsim.backends.numpy_backend import NumpyBackend
from sdsim.cli import main
from sdsim.errors import SdsimError
from sdsim.model.clip import CLIPTextModel
from sdsim.model.config import CLIPTextConfig
from sdsim.model.presets import PRESETS, load_model_config
from sdsim.model.unet import UNet2DConditionModel

# stabilityai/stable-diffusion-2-1-base's unet/ and text_encoder/config.json, the computing fields
SD21_BASE_UNET = dict(sample_size=64, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                      use_linear_projection=True)
SD21_BASE_CLIP = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                      num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77,
                      hidden_act="gelu", projection_dim=512)
# SD2-style at toy size: a different head count in each block (reversed on the way up, the last
# one in the mid block), linear proj_in/proj_out, a context width unlike any block's
TINY_SD2_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
                     layers_per_block=1,
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                     cross_attention_dim=48, attention_head_dim=(2, 4, 8), use_linear_projection=True,
                     norm_num_groups=8)


def cli_json(*argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(argv)) == 0
    return json.loads(buf.getvalue())


def test_presets_resolve_by_name():
    assert load_model_config("sd15") == dataclasses.replace(PRESETS["sd14"], name="sd15")
    cfg = load_model_config("sd21-base")
    assert cfg.name == "sd21-base"
    assert cfg.unet.heads == (5, 10, 20, 20) and cfg.unet.use_linear_projection
    assert cfg.unet.cross_attention_dim == cfg.text_encoder.hidden_size == 1024
    assert cfg.text_encoder.hidden_act == "gelu" and cfg.text_encoder.num_hidden_layers == 23
    # head dim 64 in every block, as in SD2's original (OpenAI-style) config num_head_channels: 64
    assert {c // h for c, h in zip(cfg.unet.block_out_channels, cfg.unet.heads)} == {64}
    with pytest.raises(SdsimError, match="sd21-base"):  # the error lists the presets
        load_model_config("sd21")


def test_info_counts_sd21_base_parameters():
    info = cli_json("info", "--model", "sd21-base", "--format", "json")["components"]
    # the counts of diffusers' / transformers' models built from the checkpoint's configs (below)
    assert info["unet"]["params"] == 865_910_724
    assert info["text_encoder"]["params"] == 340_387_840
    assert info["unet"]["input_shapes"][2] == [2, 77, 1024]
    assert cli_json("info", "--model", "sd15", "--format", "json")["components"]["unet"][
        "params"] == 859_520_964


def _strings(x):
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


def test_predict_lowers_sd21_base_without_flash_attention():
    """The paper's rule takes FlashAttention only at head dim 40 (SD1's first block); SD2's
    attention has head dim 64 everywhere, so every attention runs the partially fused softmax."""
    d = cli_json("predict", "--device", "s23ultra", "--model", "sd21-base", "--by", "kernel",
                 "--format", "json")
    variants = {s for s in _strings(d) if s.startswith("attention/")}
    assert variants == {"attention/partial_softmax"}
    assert d["components"]["unet"]["calls"] == 21 and d["total_s"] > 0


@pytest.mark.crosscheck
def test_full_size_sd21_base_shapes_match_diffusers_and_transformers():
    """Every parameter name and shape of the preset equals those of the reference models built
    (on the meta device, no memory) from the checkpoint's config fields."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    cfg = PRESETS["sd21-base"]
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**SD21_BASE_UNET)
        clip = transformers.CLIPTextModel(transformers.CLIPTextConfig(**SD21_BASE_CLIP))
    for ours, ref in ((UNet2DConditionModel(cfg.unet), unet), (CLIPTextModel(cfg.text_encoder), clip)):
        want = {k.removeprefix("text_model."): tuple(p.shape) for k, p in ref.named_parameters()}
        got = {k.removeprefix("text_model."): p.shape for k, p in ours.named_params()}
        assert got == want


@pytest.mark.crosscheck
def test_tiny_sd2_style_unet_matches_diffusers(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    got, want = run_unet(torch, diffusers, TINY_SD2_UNET, tmp_path, 2, 8, 4)
    assert_matches(got, want)


@pytest.mark.crosscheck
def test_tiny_gelu_text_encoder_matches_transformers(tmp_path):
    """hidden_act "gelu" (OpenCLIP's erf GELU), not CLIP's quick_gelu."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ref_cfg = transformers.CLIPTextConfig(**dict(TINY_CLIP, hidden_act="gelu", num_hidden_layers=3))
    ref = randomize(torch, transformers.CLIPTextModel(ref_cfg), 5)
    cfg, weights = saved(ref, tmp_path)
    ours = CLIPTextModel(CLIPTextConfig.from_dict(cfg))
    assert ours.config.hidden_act == "gelu"
    ids = np.random.default_rng(5).integers(0, 1000, (2, 77))
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids)).last_hidden_state
    assert_matches(ours(NumpyBackend(weights.check(ours)), ids), want)


def test_generate_runs_the_full_size_sd21_base_preset(tmp_path, capsys):
    """`generate` takes the SD2.1-base preset: its full-size random model (OpenCLIP ViT-H text
    encoder, per-block heads, linear projections, v-prediction) runs one step end to end at
    64x64 and writes a finite image of that size (about 20 s and 5 GB on 2 cores)."""
    from PIL import Image

    out = tmp_path / "sd21.png"
    assert main(["generate", "--random-weights", "--preset", "sd21-base", "--steps", "1",
                 "--height", "64", "--width", "48", "--no-progress", "--out", str(out),
                 "--format", "json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["height"], meta["width"]) == (64, 48)
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 48, 3) and np.unique(image).size > 1
