"""Built-in model configurations (`sd14`, `sd15`, `sd21-base`, `tiny`) and loading them from a
diffusers-style folder.

Every preset's checkpoint ships diffusers' PNDMScheduler with SD14_CONFIG's fields (scaled_linear
betas 0.00085-0.012, steps_offset 1, skip_prk_steps, prediction_type epsilon), which is what
`make_scheduler` uses when no scheduler_config.json is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdsim.errors import SdsimError
from sdsim.model.components import FOLDERS
from sdsim.model.config import CLIPTextConfig, ModelConfig, UNetConfig, VAEConfig

PRESETS = {
    # Stable Diffusion 1.4 (CompVis/stable-diffusion-v1-4): the defaults of the config dataclasses.
    "sd14": ModelConfig(name="sd14"),
    # Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5): SD1.4's architecture, retrained weights.
    # Its unet/config.json (attention_head_dim 8, cross_attention_dim 768, use_linear_projection
    # false) and scheduler/scheduler_config.json (PNDM, fields of SD14_CONFIG) are as SD1.4's;
    # checked against copies in KiritoFD/dreambooth_ (stable-diffusion-v1-5/unet/config.json) and
    # Chinmay6824/AutoMedVis-Text-to-Video-Ad-Generation (stable-diffusion-v1-5/scheduler/).
    "sd15": ModelConfig(name="sd15"),
    # Stable Diffusion 2.1-base (stabilityai/stable-diffusion-2-1-base, 512x512, epsilon prediction;
    # the 768 model stable-diffusion-2-1 predicts v). Values from the checkpoint's config.json files
    # (copies in Wakals/GASCOL, stable-diffusion-2-1-base/{unet,text_encoder,vae}/config.json;
    # scheduler_config.json as in huggingface.co/glowforge-dev/stable-diffusion-2-1-img2img-jonathan2,
    # "Duplicate from stabilityai/stable-diffusion-2-1-base": PNDMScheduler, SD14_CONFIG's fields):
    # - unet: attention_head_dim [5, 10, 20, 20] (head counts: head dim 64 in every block),
    #   use_linear_projection true, cross_attention_dim 1024, upcast_attention false;
    # - text_encoder: OpenCLIP ViT-H/14 as a CLIPTextModel: hidden_act gelu, hidden_size 1024,
    #   intermediate_size 4096, 16 heads, 23 layers (the penultimate layer of the 24, baked in),
    #   projection_dim 512 (unused: last_hidden_state feeds the UNet);
    # - vae: SD1's; its config says sample_size 768.
    "sd21-base": ModelConfig(
        name="sd21-base",
        text_encoder=CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                    num_attention_heads=16, hidden_act="gelu"),
        unet=UNetConfig(cross_attention_dim=1024, heads=(5, 10, 20, 20), use_linear_projection=True),
        vae=VAEConfig(sample_size=768),
    ),
    # A few-MB model with every block type of SD1.4, for tests and cross-checks.
    "tiny": ModelConfig(
        name="tiny",
        text_encoder=CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=37,
                                    num_hidden_layers=2, num_attention_heads=4),
        unet=UNetConfig(block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                        cross_attention_dim=32, heads=(2, 2), norm_num_groups=8, sample_size=8),
        vae=VAEConfig(block_out_channels=(32, 64), layers_per_block=1,
                      down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=16),
    ),
}


def native_resolution(cfg: ModelConfig) -> int:
    """The image size a model makes by default (diffusers' too): the UNet's sample size times
    the VAE factor, 512 for SD1.x and SD2.1-base."""
    return cfg.unet.sample_size * cfg.vae.downscale


def resolve_resolution(args) -> int:
    """`args.resolution`, or the model's native size when the option was not given."""
    if args.resolution is None:
        args.resolution = native_resolution(load_model_config(args.model))
    return args.resolution


def load_model_config(name_or_path: str) -> ModelConfig:
    """A preset by name, or the config.json files of a diffusers-style folder (a path, or a
    repo id already in the Hugging Face cache)."""
    from sdsim.model.hub import resolve_model

    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.exists() and "/" in str(name_or_path):
        try:
            path = resolve_model(name_or_path)
        except SdsimError as e:
            raise SdsimError(f"unknown model '{name_or_path}': not a preset "
                             f"({', '.join(PRESETS)}); {e}") from None
    if not path.exists():
        raise SdsimError(f"unknown model '{name_or_path}': not a preset ({', '.join(PRESETS)}) "
                         "and no such folder")
    if not path.is_dir():
        raise SdsimError(f"{path}: expected a diffusers-style folder "
                         f"({', '.join(f'{sub}/' for sub in FOLDERS)} with config.json each) "
                         "or a preset name")
    parts = {}
    for sub, folder in FOLDERS.items():
        cfg_file = path / sub / "config.json"
        if not cfg_file.is_file():
            raise SdsimError(f"{cfg_file}: missing; a diffusers-style folder needs {sub}/config.json")
        try:
            data = json.loads(cfg_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SdsimError(f"{cfg_file}: cannot read JSON ({e})") from None
        if not isinstance(data, dict):
            raise SdsimError(f"{cfg_file}: expected a JSON object")
        try:
            parts[sub] = folder.config_class.from_dict(data, source=str(cfg_file))
        except (TypeError, ValueError) as e:
            raise SdsimError(f"{cfg_file}: bad value ({e})") from None
    return ModelConfig(name=str(path), **parts)
