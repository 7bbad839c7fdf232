"""Tiny text-to-image end to end: sdsim's pipeline vs diffusers' StableDiffusionPipeline.

Same random components (saved by diffusers/transformers as safetensors, loaded by sdsim), same
initial latents, same scheduler and guidance. Tokenization is taken out of the comparison (it has
its own cross-check): both sides get the same token ids, diffusers through prompt_embeds computed
by its own text encoder. Final uint8 images must agree within 1/255.
"""

import json

import numpy as np
import pytest

from test_crosscheck_models import TINY_CLIP, TINY_UNET, TINY_VAE, randomize

from sdsim.model.pipeline import StableDiffusion
from sdsim.model.presets import load_model_config
from sdsim.model.weights import load_weights

pytestmark = pytest.mark.crosscheck

SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
              "dpmpp2m": "DPMSolverMultistepScheduler"}
SD14_SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                  clip_sample=False, skip_prk_steps=True)


@pytest.fixture(scope="module")
def saved_pipe(tmp_path_factory):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_sd")
    unet = randomize(torch, diffusers.UNet2DConditionModel(**TINY_UNET), 10)
    vae = randomize(torch, diffusers.AutoencoderKL(**TINY_VAE), 11)
    te = randomize(torch, transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY_CLIP)), 12)
    for name, m in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        m.save_pretrained(folder / name, safe_serialization=True)
    return torch, diffusers, folder, unet, vae, te


@pytest.mark.parametrize("scheduler,height,width", [(s, 16, 16) for s in SCHEDULERS]
                         + [("euler", 24, 40)])
def test_tiny_pipeline_matches_diffusers(saved_pipe, scheduler, height, width):
    torch, diffusers, folder, unet, vae, te = saved_pipe
    ids = {"a prompt": np.r_[998, np.arange(5, 20), np.full(61, 999)],
           "": np.r_[998, np.full(76, 999)]}
    sched = getattr(diffusers, SCHEDULERS[scheduler]).from_config(SD14_SCHED)
    latents = np.random.default_rng(4).standard_normal((1, 4, height // 2, width // 2),
                                                       dtype=np.float32)

    ref = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=None, unet=unet,
                                            scheduler=sched, safety_checker=None,
                                            feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    with torch.no_grad():
        emb = {k: te(torch.from_numpy(v[None])).last_hidden_state for k, v in ids.items()}
        want = ref(prompt_embeds=emb["a prompt"], negative_prompt_embeds=emb[""],
                   num_inference_steps=4, guidance_scale=7.5, height=height, width=width,
                   latents=torch.from_numpy(latents), output_type="np").images[0]
    want = (want * 255).round().astype(np.uint8)

    ours = StableDiffusion(load_model_config(str(folder)), load_weights(folder), ids.__getitem__,
                           json.loads(json.dumps(dict(sched.config))))
    got = ours("a prompt", "", steps=4, guidance=7.5, scheduler=scheduler, latents=latents,
               height=height, width=width, progress=False)
    assert got.shape == want.shape == (height, width, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.unique(want).size > 20  # a real image, not saturated to a constant
