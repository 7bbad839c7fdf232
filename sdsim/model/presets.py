"""Built-in model configurations (`sd14`, `tiny`) and loading them from a diffusers-style folder."""

from __future__ import annotations

import json
from pathlib import Path

from sdsim.errors import SdsimError
from sdsim.model.components import FOLDERS
from sdsim.model.config import CLIPTextConfig, ModelConfig, UNetConfig, VAEConfig

PRESETS = {
    # Stable Diffusion 1.4 (CompVis/stable-diffusion-v1-4): the defaults of the config dataclasses.
    "sd14": ModelConfig(name="sd14"),
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


def load_model_config(name_or_path: str) -> ModelConfig:
    """A preset by name, or the config.json files of a diffusers-style folder."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
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
