"""The components of Stable Diffusion, listed once for trace, predict, the OpenCL runner, the
NumPy pipeline, config loading and the test fixtures.

Two levels, because a checkpoint and a run cut the model differently:

- `FOLDERS`: the folders of a diffusers checkpoint (text_encoder/, unet/, vae/), each with its
  config class (also the ModelConfig field of the same name), its model class and the weights
  file diffusers writes there.
- `COMPONENTS`: the calls a run makes (text_encoder, unet, vae_decoder, vae_encoder), each naming
  its folder, the model method that runs it, the weights that call reads, and its graph inputs
  at a given resolution, batch and prompt length.

`batch` is the classifier-free-guidance batch the text encoder and the UNet run at; the VAE
works on the images, `max(1, batch // 2)` of them (one image for the UNet's batch of 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sdsim.errors import SdsimError
from sdsim.model.clip import CLIPTextModel
from sdsim.model.config import CLIPTextConfig, ModelConfig, UNetConfig, VAEConfig
from sdsim.model.unet import UNet2DConditionModel
from sdsim.model.vae import AutoencoderKL


@dataclass(frozen=True)
class Folder:
    """One folder of a diffusers checkpoint; `name` is also the ModelConfig field of its config."""

    name: str
    config_class: type
    model_class: type
    weights_file: str      # the file diffusers' save_pretrained writes (single shard)

    def config(self, model_cfg: ModelConfig):
        """This folder's part of `model_cfg` (a CLIPTextConfig, UNetConfig or VAEConfig)."""
        return getattr(model_cfg, self.name)

    def build(self, model_cfg: ModelConfig):
        """The model object of this folder (parameters named as in its checkpoint)."""
        return self.model_class(self.config(model_cfg))


FOLDERS = {f.name: f for f in (
    Folder("text_encoder", CLIPTextConfig, CLIPTextModel, "model.safetensors"),
    Folder("unet", UNetConfig, UNet2DConditionModel, "diffusion_pytorch_model.safetensors"),
    Folder("vae", VAEConfig, AutoencoderKL, "diffusion_pytorch_model.safetensors"),
)}


@dataclass(frozen=True)
class GraphInput:
    """One input of a component call; dtype None is the run's storage precision."""

    name: str
    shape: tuple
    dtype: str | None = None


def image_hw(resolution) -> tuple[int, int]:
    """(height, width) in pixels of a resolution given as one int (square) or (height, width)."""
    if isinstance(resolution, int):
        return resolution, resolution
    h, w = resolution
    return int(h), int(w)


# (shape, dtype) of each input of a call, in `Component.input_names` order
def _text_encoder_inputs(cfg: ModelConfig, resolution: int, batch: int, seq_len: int):
    return [((batch, seq_len), "int32")]


def _unet_inputs(cfg: ModelConfig, resolution, batch: int, seq_len: int):
    h, w = (s // cfg.vae.downscale for s in image_hw(resolution))
    return [((batch, cfg.unet.in_channels, h, w), None), ((batch,), "fp32"),
            ((batch, seq_len, cfg.unet.cross_attention_dim), None)]


def _vae_decoder_inputs(cfg: ModelConfig, resolution, batch: int, seq_len: int):
    h, w = (s // cfg.vae.downscale for s in image_hw(resolution))
    return [((max(1, batch // 2), cfg.vae.latent_channels, h, w), None)]


def _vae_encoder_inputs(cfg: ModelConfig, resolution, batch: int, seq_len: int):
    return [((max(1, batch // 2), cfg.vae.in_channels, *image_hw(resolution)), None)]


@dataclass(frozen=True)
class Component:
    """One model call of a run: what it builds, calls, reads and takes as input."""

    name: str
    folder: str                 # key of FOLDERS: where its config and weights live
    entry: str                  # method of the model object that runs it
    weight_prefixes: tuple      # the folder's parameters this call reads; () = all of them
    input_names: tuple          # the entry's arguments after the backend, in order
    input_shapes: Callable      # (ModelConfig, resolution or (h, w), batch, seq_len) -> [(shape, dtype)]
    spatial: bool               # inputs scale with the image resolution
    in_loop: bool = False       # runs once per scheduler evaluation, not once per image
    opencl: bool = False        # the OpenCL backend (sdsim.backends.opencl) can run it

    def build(self, model_cfg: ModelConfig):
        """The model object and the callable `fn(F, *inputs)` that runs this call on backend F."""
        model = FOLDERS[self.folder].build(model_cfg)
        return model, getattr(model, self.entry)

    def params(self, model) -> list:
        """(name, Param) of the weights this call reads, in declaration order."""
        return [(n, p) for n, p in model.named_params()
                if not self.weight_prefixes or n.startswith(self.weight_prefixes)]

    def inputs(self, model_cfg: ModelConfig, resolution: int, batch: int,
               seq_len: int | None = None) -> list[GraphInput]:
        """The call's inputs; seq_len defaults to the text encoder's max_position_embeddings."""
        shapes = self.input_shapes(model_cfg, resolution, batch,
                                   seq_len or model_cfg.text_encoder.max_position_embeddings)
        return [GraphInput(n, shape, dtype) for n, (shape, dtype) in zip(self.input_names, shapes)]


COMPONENTS = {c.name: c for c in (
    Component("text_encoder", "text_encoder", "__call__", (), ("input_ids",),
              _text_encoder_inputs, spatial=False, opencl=True),
    Component("unet", "unet", "__call__", (), ("sample", "timestep", "encoder_hidden_states"),
              _unet_inputs, spatial=True, in_loop=True, opencl=True),
    Component("vae_decoder", "vae", "decode", ("decoder.", "post_quant_conv."), ("latents",),
              _vae_decoder_inputs, spatial=True, opencl=True),
    Component("vae_encoder", "vae", "encode", ("encoder.", "quant_conv."), ("image",),
              _vae_encoder_inputs, spatial=True),
)}

#: the calls of a text-to-image run, in order
TEXT_TO_IMAGE = ("text_encoder", "unet", "vae_decoder")
#: the components the OpenCL backend runs (`sdsim validate --component`)
OPENCL = tuple(name for name, c in COMPONENTS.items() if c.opencl)


def get(name: str, among=tuple(COMPONENTS)) -> Component:
    """The component `name`, if it is one of `among`; else an error listing them."""
    if name in among:
        return COMPONENTS[name]
    if name in COMPONENTS:
        raise SdsimError(f"component '{name}' is not supported here; expected one of "
                         f"{', '.join(among)}")
    raise SdsimError(f"unknown component '{name}'; known: {', '.join(among)}")
