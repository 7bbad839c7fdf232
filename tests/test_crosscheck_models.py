"""sdsim's NumPy components vs diffusers / transformers on identical random weights.

Each reference model is built by diffusers/transformers from a hand-written config, given seeded
random weights (every parameter, norms and biases included), saved with save_pretrained as
safetensors, then loaded by sdsim through its own config and weight loaders. Tolerance (fp32):
max |sdsim - torch| <= 1e-4 * std(torch output).
"""

import json

import numpy as np
import pytest

from sdsim.testing.torch_random import randomize

from sdsim.backends.numpy_backend import NumpyBackend
from sdsim.model.clip import CLIPTextModel
from sdsim.model.config import CLIPTextConfig, UNetConfig, VAEConfig
from sdsim.model.unet import UNet2DConditionModel
from sdsim.model.vae import AutoencoderKL
from sdsim.model.weights import load_component

pytestmark = pytest.mark.crosscheck

TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                 layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=2, norm_num_groups=8)
SD14_UNET = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
TINY_VAE = dict(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                latent_channels=4, norm_num_groups=8, sample_size=16)
TINY_CLIP = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu")


def saved(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    return json.loads((folder / "config.json").read_text()), load_component(folder)


def assert_matches(got, want):
    want = want.detach().numpy().astype(np.float64)
    err = np.abs(got.astype(np.float64) - want).max()
    assert got.shape == want.shape
    assert err <= 1e-4 * want.std(), f"max abs diff {err:.3g} > 1e-4 * std {want.std():.3g}"


def run_unet(torch, diffusers, cfg_kwargs, folder, batch, size, seed):
    ref = randomize(torch, diffusers.UNet2DConditionModel(**cfg_kwargs), seed)
    cfg, weights = saved(ref, folder)
    ours = UNet2DConditionModel(UNetConfig.from_dict(cfg))
    r = np.random.default_rng(seed)
    h, w = size if isinstance(size, tuple) else (size, size)
    x = r.standard_normal((batch, 4, h, w), dtype=np.float32)
    t = np.array([981, 1][:batch] if batch <= 2 else [500] * batch, dtype=np.int64)
    ctx = r.standard_normal((batch, 77, cfg["cross_attention_dim"]), dtype=np.float32)
    got = ours(NumpyBackend(weights.check(ours)), x, t.astype(np.float32), ctx)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(ctx)).sample
    del ref
    return got, want


def test_tiny_unet_matches_diffusers(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    got, want = run_unet(torch, diffusers, TINY_UNET, tmp_path, 2, 8, 0)
    assert_matches(got, want)


def test_tiny_unet_at_odd_latents_matches_diffusers(tmp_path):
    """Latents of 7x5 (56x40 pixels): the downsampling conv rounds up to 4x3, and the upsampler
    resizes back to the skip's 7x5 (diffusers' forward_upsample_size), which sdsim does as 2x
    then crop."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    got, want = run_unet(torch, diffusers, TINY_UNET, tmp_path, 2, (7, 5), 3)
    assert got.shape == (2, 4, 7, 5)
    assert_matches(got, want)


def test_tiny_vae_decode_and_encode_match_diffusers(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    ref = randomize(torch, diffusers.AutoencoderKL(**TINY_VAE), 1)
    cfg, weights = saved(ref, tmp_path)
    ours = AutoencoderKL(VAEConfig.from_dict(cfg))
    F = NumpyBackend(weights.check(ours))
    r = np.random.default_rng(1)
    z = r.standard_normal((2, 4, 8, 8), dtype=np.float32)
    img = r.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        want_dec = ref.decode(torch.from_numpy(z)).sample
        want_enc = ref.encode(torch.from_numpy(img)).latent_dist.parameters
    assert_matches(ours.decode(F, z), want_dec)
    assert_matches(ours.encode(F, img), want_enc)


def test_tiny_clip_text_encoder_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ref = randomize(torch, transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY_CLIP)), 2)
    cfg, weights = saved(ref, tmp_path)
    ours = CLIPTextModel(CLIPTextConfig.from_dict(cfg))
    ids = np.random.default_rng(2).integers(0, 1000, (2, 77))
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids)).last_hidden_state
    assert_matches(ours(NumpyBackend(weights.check(ours)), ids), want)


@pytest.mark.slow
def test_full_size_sd14_unet_matches_diffusers(tmp_path):
    """One SD1.4 UNet call at a 64x64 latent (batch 1): 860M random parameters."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    got, want = run_unet(torch, diffusers, SD14_UNET, tmp_path, 1, 64, 3)
    assert_matches(got, want)
