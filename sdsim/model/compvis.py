"""Names of an SD1.x single-file (CompVis / ldm) checkpoint, mapped to diffusers' component names.

`compvis_to_diffusers(keys)` returns, for each diffusers component (unet, vae, text_encoder), the
diffusers parameter name -> the CompVis key holding it, with a flag for the tensors whose shape
differs: the VAE mid-block attention q/k/v/proj_out are 1x1 convolutions (C, C, 1, 1) in CompVis
and linear layers (C, C) in diffusers. The UNet transformers' proj_in/proj_out stay 1x1 convs in
SD1 (diffusers' use_linear_projection=False), so they keep their shape.

Training checkpoints also hold EMA copies of the UNet (ldm's LitEma): `model_ema.` + the UNet key
after `model.` with its dots removed, e.g. `model_ema.diffusion_modelinput_blocks00weight` for
`model.diffusion_model.input_blocks.0.0.weight` (as diffusers' convert_ldm_unet_checkpoint reads
them with extract_ema). They are the weights the original scripts sample with, so they are chosen
when present unless `ema=False`. Other keys (the ldm noise schedule buffers) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdsim.errors import SdsimError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
EMA_PREFIX = "model_ema."
_EMA_BUFFERS = ("model_ema.decay", "model_ema.num_updates")  # LitEma's own state, not weights

_UNET_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
                ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."),
                ("skip_connection.", "conv_shortcut."))
_UNET_FIXED = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
               "input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out."}
_VAE_FIXED = {"encoder.norm_out.": "encoder.conv_norm_out.", "decoder.norm_out.": "decoder.conv_norm_out."}
_VAE_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


@dataclass(frozen=True)
class Source:
    """Where a diffusers tensor lives in the CompVis file; `reshape`: drop the trailing 1x1 of a conv."""

    key: str
    reshape: bool = False

    def apply(self, array):
        """The CompVis tensor in the diffusers shape ((C, C, 1, 1) -> (C, C) when `reshape`)."""
        if not self.reshape:
            return array
        if array.ndim > 2 and all(d == 1 for d in array.shape[2:]):
            return array.reshape(array.shape[:2])
        raise SdsimError(f"tensor {self.key}: expected a 1x1 convolution weight (C, C, 1, 1), got {array.shape}")


def _replace_prefix(name: str, table) -> str:
    for old, new in table:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _unet_blocks_per_level(names: list[str]) -> int:
    """layers_per_block + 1: the input-block stride between levels (a downsampler closes each level)."""
    ins = {int(m.group(1)) for n in names if (m := re.match(r"input_blocks\.(\d+)\.", n))}
    downs = sorted(int(m.group(1)) for n in names if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.", n)))
    if downs:
        return downs[0]
    return max(ins)  # a single level: every input block after conv_in is one layer of it


def _unet_name(name: str, stride: int) -> str:
    for old, new in _UNET_FIXED.items():
        if name.startswith(old):
            return new + name[len(old):]
    if m := re.match(r"input_blocks\.(\d+)\.(\d+)\.(.*)", name):
        i, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        level, layer = (i - 1) // stride, (i - 1) % stride
        if part == 0 and rest.startswith("op."):
            return f"down_blocks.{level}.downsamplers.0.conv.{rest[3:]}"
        if part == 0:
            return f"down_blocks.{level}.resnets.{layer}.{_replace_prefix(rest, _UNET_RESNET)}"
        if part == 1:
            return f"down_blocks.{level}.attentions.{layer}.{rest}"
    elif m := re.match(r"middle_block\.(\d)\.(.*)", name):
        part, rest = int(m.group(1)), m.group(2)
        if part in (0, 2):
            return f"mid_block.resnets.{part // 2}.{_replace_prefix(rest, _UNET_RESNET)}"
        if part == 1:
            return f"mid_block.attentions.0.{rest}"
    elif m := re.match(r"output_blocks\.(\d+)\.(\d+)\.(.*)", name):
        i, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        level, layer = i // stride, i % stride
        if part == 0:
            return f"up_blocks.{level}.resnets.{layer}.{_replace_prefix(rest, _UNET_RESNET)}"
        if rest.startswith("conv.") and part in (1, 2):  # the upsampler follows the resnet (and attention)
            return f"up_blocks.{level}.upsamplers.0.{rest}"
        if part == 1:
            return f"up_blocks.{level}.attentions.{layer}.{rest}"
    raise SdsimError(f"tensor {UNET_PREFIX}{name}: not a Stable Diffusion 1.x UNet parameter name")


def _vae_source(name: str, n_up: int) -> tuple[str, bool]:
    if name in ("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"):
        return name, False
    for old, new in _VAE_FIXED.items():
        if name.startswith(old):
            return new + name[len(old):], False
    if re.match(r"(encoder|decoder)\.(conv_in|conv_out)\.", name):
        return name, False
    m = re.match(r"(encoder|decoder)\.(.*)", name)
    if m:
        part, rest = m.group(1), m.group(2)
        if mm := re.match(r"down\.(\d+)\.block\.(\d+)\.(.*)", rest):
            res = mm.group(3).replace("nin_shortcut.", "conv_shortcut.")
            return f"{part}.down_blocks.{mm.group(1)}.resnets.{mm.group(2)}.{res}", False
        if mm := re.match(r"down\.(\d+)\.downsample\.conv\.(.*)", rest):
            return f"{part}.down_blocks.{mm.group(1)}.downsamplers.0.conv.{mm.group(2)}", False
        if mm := re.match(r"up\.(\d+)\.block\.(\d+)\.(.*)", rest):
            res = mm.group(3).replace("nin_shortcut.", "conv_shortcut.")
            return f"{part}.up_blocks.{n_up - 1 - int(mm.group(1))}.resnets.{mm.group(2)}.{res}", False
        if mm := re.match(r"up\.(\d+)\.upsample\.conv\.(.*)", rest):
            return f"{part}.up_blocks.{n_up - 1 - int(mm.group(1))}.upsamplers.0.conv.{mm.group(2)}", False
        if mm := re.match(r"mid\.block_([12])\.(.*)", rest):
            res = mm.group(2).replace("nin_shortcut.", "conv_shortcut.")
            return f"{part}.mid_block.resnets.{int(mm.group(1)) - 1}.{res}", False
        if mm := re.match(r"mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$", rest):
            layer, kind = mm.groups()
            return f"{part}.mid_block.attentions.0.{_VAE_ATTN[layer]}.{kind}", layer != "norm" and kind == "weight"
    raise SdsimError(f"tensor {VAE_PREFIX}{name}: not a Stable Diffusion 1.x VAE parameter name")


def ema_key(key: str) -> str:
    """The key of the EMA copy of UNet tensor `key` (`model.` dropped, then every dot)."""
    return EMA_PREFIX + key[len("model."):].replace(".", "")


def has_ema(keys) -> bool:
    """Whether a checkpoint's keys include EMA weights (not just LitEma's decay/num_updates)."""
    return any(k.startswith(EMA_PREFIX) and k not in _EMA_BUFFERS for k in keys)


def compvis_to_diffusers(keys, ema: bool = True) -> dict[str, dict[str, Source]]:
    """{component: {diffusers name: Source}} for the unet, vae and text_encoder keys of an SD1.x
    file; the UNet's Sources are its EMA copies when the file has them and `ema` is True."""
    keys = list(keys)
    use_ema = ema and has_ema(keys)
    present = set(keys) if use_ema else ()
    unet = [k[len(UNET_PREFIX):] for k in keys if k.startswith(UNET_PREFIX)]
    vae = [k[len(VAE_PREFIX):] for k in keys if k.startswith(VAE_PREFIX)]
    text = [k[len(TEXT_PREFIX):] for k in keys if k.startswith(TEXT_PREFIX)]
    if not unet:
        raise SdsimError(f"checkpoint has no '{UNET_PREFIX}*' tensors: not an SD1.x CompVis single-file checkpoint")
    out: dict[str, dict[str, Source]] = {"unet": {}, "vae": {}, "text_encoder": {}}
    stride = _unet_blocks_per_level(unet)
    for name in unet:
        key = UNET_PREFIX + name
        if use_ema:
            key = ema_key(key)
            if key not in present:
                raise SdsimError(f"tensor {key} (the EMA copy of {UNET_PREFIX}{name}) is missing: the "
                                 "EMA weights are incomplete; load with ema=False for the non-EMA weights")
        out["unet"][_unet_name(name, stride)] = Source(key)
    n_up = 1 + max((int(m.group(1)) for n in vae if (m := re.match(r"decoder\.up\.(\d+)\.", n))), default=0)
    for name in vae:
        target, reshape = _vae_source(name, n_up)
        out["vae"][target] = Source(VAE_PREFIX + name, reshape)
    for name in text:  # transformers' CLIPTextModel names; very old files lack the text_model level
        target = name if name.startswith("text_model.") else "text_model." + name
        out["text_encoder"][target] = Source(TEXT_PREFIX + name)
    return out
