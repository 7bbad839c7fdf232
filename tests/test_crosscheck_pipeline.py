"""Tiny text-to-image end to end: sdsim's pipeline vs diffusers' StableDiffusionPipeline.

Same random components (saved by diffusers/transformers as safetensors, loaded by sdsim), same
initial latents, same scheduler and guidance. Tokenization is taken out of the comparison (it has
its own cross-check): both sides get the same token ids, diffusers through prompt_embeds computed
by its own text encoder. Final uint8 images must agree within 1/255. The same for an SD2.x-style
model (OpenCLIP-style text encoder read at its penultimate layer, linear projections, head counts
per block, v-prediction).
"""

import json

import numpy as np
import pytest

from test_crosscheck_models import TINY_CLIP, TINY_UNET, TINY_VAE, randomize
from test_presets_sd2 import TINY_SD2_UNET

from sdsim.model.pipeline import StableDiffusion
from sdsim.model.presets import load_model_config
from sdsim.model.weights import load_weights

pytestmark = pytest.mark.crosscheck

SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
              "dpmpp2m": "DPMSolverMultistepScheduler"}
SD14_SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                  clip_sample=False, skip_prk_steps=True)


def _libraries():
    """torch, diffusers and transformers (the test is skipped without them)."""
    return tuple(pytest.importorskip(m) for m in ("torch", "diffusers", "transformers"))


def _save(folder, **models) -> None:
    """Each model as a diffusers folder's sub-folder of its name, in safetensors."""
    for name, m in models.items():
        m.save_pretrained(folder / name, safe_serialization=True)


@pytest.fixture(scope="module")
def saved_pipe(tmp_path_factory):
    torch, diffusers, transformers = _libraries()
    folder = tmp_path_factory.mktemp("tiny_sd")
    unet = randomize(torch, diffusers.UNet2DConditionModel(**TINY_UNET), 10)
    vae = randomize(torch, diffusers.AutoencoderKL(**TINY_VAE), 11)
    te = randomize(torch, transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY_CLIP)), 12)
    _save(folder, unet=unet, vae=vae, text_encoder=te)
    return torch, diffusers, folder, unet, vae, te


def diffusers_image(torch, diffusers, unet, vae, te, sched, emb, latents, steps, height, width):
    """diffusers' StableDiffusionPipeline image (uint8) from prompt embeddings `emb` (keys "a
    prompt" and "", the negative prompt), guidance 7.5."""
    ref = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=None, unet=unet,
                                            scheduler=sched, safety_checker=None,
                                            feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    with torch.no_grad():
        want = ref(prompt_embeds=emb["a prompt"], negative_prompt_embeds=emb[""],
                   num_inference_steps=steps, guidance_scale=7.5, height=height, width=width,
                   latents=torch.from_numpy(latents), output_type="np").images[0]
    return (want * 255).round().astype(np.uint8)


def assert_same_image(folder, cfg, ids, sched, want, scheduler, latents, steps, height, width):
    """sdsim's pipeline on the saved `folder` (config `cfg`, token ids `ids`, diffusers' scheduler
    config) gives `want` within 1/255, and `want` is a real image, not a constant."""
    ours = StableDiffusion(cfg, load_weights(folder), ids.__getitem__,
                           json.loads(json.dumps(dict(sched.config))))
    got = ours("a prompt", "", steps=steps, guidance=7.5, scheduler=scheduler, latents=latents,
               height=height, width=width, progress=False)
    assert got.shape == want.shape == (height, width, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.unique(want).size > 20


@pytest.mark.parametrize("scheduler,height,width", [(s, 16, 16) for s in SCHEDULERS]
                         + [("euler", 24, 40)])
def test_tiny_pipeline_matches_diffusers(saved_pipe, scheduler, height, width):
    torch, diffusers, folder, unet, vae, te = saved_pipe
    ids = {"a prompt": np.r_[998, np.arange(5, 20), np.full(61, 999)],
           "": np.r_[998, np.full(76, 999)]}
    sched = getattr(diffusers, SCHEDULERS[scheduler]).from_config(SD14_SCHED)
    latents = np.random.default_rng(4).standard_normal((1, 4, height // 2, width // 2),
                                                       dtype=np.float32)

    with torch.no_grad():
        emb = {k: te(torch.from_numpy(v[None])).last_hidden_state for k, v in ids.items()}
    want = diffusers_image(torch, diffusers, unet, vae, te, sched, emb, latents, 4, height, width)
    assert_same_image(folder, load_model_config(str(folder)), ids, sched, want, scheduler,
                      latents, 4, height, width)


# SD2.x at toy size: the UNet of test_presets_sd2 (a head count per block, linear proj_in /
# proj_out, a 48-wide context), an OpenCLIP-style text encoder (erf GELU, 48 wide) whose
# checkpoint keeps all but its last layer, and v-prediction (SD2.1's scheduler config is SD1.4's
# fields with prediction_type v_prediction)
SD2_OPENCLIP = dict(TINY_CLIP, hidden_size=48, hidden_act="gelu", num_hidden_layers=4)
SD2_SCHED = dict(SD14_SCHED, prediction_type="v_prediction")


@pytest.fixture(scope="module")
def saved_sd2_pipe(tmp_path_factory):
    """SD2 conditions on OpenCLIP's penultimate layer (through the final layer norm); diffusers'
    checkpoint bakes that in as a text encoder one layer shorter with the same weights, as the
    conversion of stabilityai's checkpoints does (23 of ViT-H/14's 24 layers)."""
    torch, diffusers, transformers = _libraries()
    folder = tmp_path_factory.mktemp("tiny_sd2")
    unet = randomize(torch, diffusers.UNet2DConditionModel(**TINY_SD2_UNET), 20)
    vae = randomize(torch, diffusers.AutoencoderKL(**TINY_VAE), 21)
    openclip = randomize(torch, transformers.CLIPTextModel(
        transformers.CLIPTextConfig(**SD2_OPENCLIP)), 22)
    layers = SD2_OPENCLIP["num_hidden_layers"]
    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        **dict(SD2_OPENCLIP, num_hidden_layers=layers - 1))).eval()
    missing, unexpected = te.load_state_dict(openclip.state_dict(), strict=False)
    assert not missing and unexpected
    assert all(f"encoder.layers.{layers - 1}." in k for k in unexpected)   # the last layer only
    _save(folder, unet=unet, vae=vae, text_encoder=te)
    return torch, diffusers, folder, unet, vae, te, openclip


@pytest.mark.parametrize("scheduler,height,width", [(s, 16, 16) for s in SCHEDULERS]
                         + [("ddim", 24, 40)])
def test_tiny_sd2_pipeline_matches_diffusers(saved_sd2_pipe, scheduler, height, width):
    """SD2.x end to end: diffusers gets OpenCLIP's penultimate hidden state (final layer norm
    applied) as prompt_embeds, sdsim the shortened checkpoint and the same token ids; the UNet
    has per-block head counts and linear projections; every scheduler predicts v."""
    torch, diffusers, folder, unet, vae, te, openclip = saved_sd2_pipe
    # OpenCLIP's tokenizer pads with id 0 ("!"), not with the end token as CLIP's does
    ids = {"a prompt": np.r_[998, np.arange(5, 20), 999, np.zeros(60, np.int64)],
           "": np.r_[998, 999, np.zeros(75, np.int64)]}
    sched = getattr(diffusers, SCHEDULERS[scheduler]).from_config(SD2_SCHED)
    assert sched.config.prediction_type == "v_prediction"
    latents = np.random.default_rng(5).standard_normal((1, 4, height // 2, width // 2),
                                                       dtype=np.float32)

    with torch.no_grad():
        emb = {}
        for k, v in ids.items():
            x = torch.from_numpy(v[None])
            hidden = openclip(input_ids=x, output_hidden_states=True).hidden_states
            final = getattr(openclip, "text_model", openclip).final_layer_norm  # by version
            emb[k] = final(hidden[-2])
            # the shortened checkpoint's output is that penultimate state
            torch.testing.assert_close(te(input_ids=x).last_hidden_state, emb[k])
    want = diffusers_image(torch, diffusers, unet, vae, te, sched, emb, latents, 3, height, width)

    cfg = load_model_config(str(folder))
    assert cfg.unet.use_linear_projection and tuple(cfg.unet.heads) == (2, 4, 8)
    assert cfg.unet.cross_attention_dim == cfg.text_encoder.hidden_size == 48
    assert cfg.text_encoder.hidden_act == "gelu"
    assert cfg.text_encoder.num_hidden_layers == SD2_OPENCLIP["num_hidden_layers"] - 1
    assert_same_image(folder, cfg, ids, sched, want, scheduler, latents, 3, height, width)
