"""Component configurations, built from diffusers / transformers `config.json` dicts.

Only the fields that change the computation are kept; a field value the model cannot build
(an unknown block type, a class embedding, ...) raises SdsimError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from sdsim.errors import SdsimError

UNET_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
UNET_UP = ("CrossAttnUpBlock2D", "UpBlock2D")
UNET_MID = ("UNetMidBlock2DCrossAttn",)
VAE_DOWN = ("DownEncoderBlock2D",)
VAE_UP = ("UpDecoderBlock2D",)


def _per_block(value, n, name, source):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise SdsimError(f"{source}: field {name}: expected {n} values (one per block), "
                             f"got {len(value)}")
        return tuple(value)
    return (value,) * n


def _check(kind, types, allowed, fieldname, source):
    for t in types:
        if t not in allowed:
            raise SdsimError(f"{source}: {fieldname} has unsupported {kind} '{t}'; supported: {', '.join(allowed)}")


def _unsupported(d, source, checks):
    for key, ok in checks.items():
        if key in d and not ok(d[key]):
            raise SdsimError(f"{source}: unsupported value {key}={d[key]!r}")


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple = (320, 640, 1280, 1280)
    down_block_types: tuple = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    mid_block_type: str = "UNetMidBlock2DCrossAttn"
    layers_per_block: int = 2
    cross_attention_dim: int = 768
    heads: tuple = (8, 8, 8, 8)  # diffusers' `attention_head_dim` is the head count in SD configs
    use_linear_projection: bool = False
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    transformer_layers_per_block: tuple = (1, 1, 1, 1)
    sample_size: int = 64

    @classmethod
    def from_dict(cls, d: dict, source: str = "unet/config.json") -> "UNetConfig":
        n = len(d.get("block_out_channels", cls.block_out_channels))
        down = tuple(d.get("down_block_types", cls.down_block_types))
        up = tuple(d.get("up_block_types", cls.up_block_types))
        mid = d.get("mid_block_type", cls.mid_block_type)
        _check("block type", down, UNET_DOWN, "down_block_types", source)
        _check("block type", up, UNET_UP, "up_block_types", source)
        _check("block type", [mid], UNET_MID, "mid_block_type", source)
        _unsupported(d, source, {
            "class_embed_type": lambda v: v is None, "addition_embed_type": lambda v: v is None,
            "num_class_embeds": lambda v: v is None, "dual_cross_attention": lambda v: not v,
            "only_cross_attention": lambda v: not v, "act_fn": lambda v: v == "silu",
            "center_input_sample": lambda v: not v, "time_embedding_type": lambda v: v == "positional",
            "encoder_hid_dim": lambda v: v is None, "resnet_time_scale_shift": lambda v: v == "default",
        })
        if len(down) != n or len(up) != n:
            raise SdsimError(f"{source}: down_block_types/up_block_types must have {n} entries like block_out_channels")
        heads = d.get("num_attention_heads") or d.get("attention_head_dim", 8)
        return cls(
            in_channels=d.get("in_channels", 4), out_channels=d.get("out_channels", 4),
            block_out_channels=tuple(d.get("block_out_channels", cls.block_out_channels)),
            down_block_types=down, up_block_types=up, mid_block_type=mid,
            layers_per_block=d.get("layers_per_block", 2),
            cross_attention_dim=d.get("cross_attention_dim", 768),
            heads=_per_block(heads, n, "attention_head_dim", source),
            use_linear_projection=bool(d.get("use_linear_projection", False)),
            norm_num_groups=d.get("norm_num_groups", 32), norm_eps=d.get("norm_eps", 1e-5),
            flip_sin_to_cos=d.get("flip_sin_to_cos", True), freq_shift=d.get("freq_shift", 0),
            transformer_layers_per_block=_per_block(d.get("transformer_layers_per_block", 1), n,
                                                    "transformer_layers_per_block", source),
            sample_size=d.get("sample_size", 64),
        )


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple = (128, 256, 512, 512)
    down_block_types: tuple = ("DownEncoderBlock2D",) * 4
    up_block_types: tuple = ("UpDecoderBlock2D",) * 4
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    sample_size: int = 512

    @classmethod
    def from_dict(cls, d: dict, source: str = "vae/config.json") -> "VAEConfig":
        down = tuple(d.get("down_block_types", cls.down_block_types))
        up = tuple(d.get("up_block_types", cls.up_block_types))
        _check("block type", down, VAE_DOWN, "down_block_types", source)
        _check("block type", up, VAE_UP, "up_block_types", source)
        _unsupported(d, source, {"act_fn": lambda v: v == "silu", "mid_block_add_attention": lambda v: v,
                                 "use_quant_conv": lambda v: v, "use_post_quant_conv": lambda v: v})
        return cls(
            in_channels=d.get("in_channels", 3), out_channels=d.get("out_channels", 3),
            latent_channels=d.get("latent_channels", 4),
            block_out_channels=tuple(d.get("block_out_channels", cls.block_out_channels)),
            down_block_types=down, up_block_types=up,
            layers_per_block=d.get("layers_per_block", 2), norm_num_groups=d.get("norm_num_groups", 32),
            scaling_factor=d.get("scaling_factor", 0.18215), sample_size=d.get("sample_size", 512),
        )

    @property
    def downscale(self) -> int:
        """Pixels per latent pixel (8 for SD)."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"

    @classmethod
    def from_dict(cls, d: dict, source: str = "text_encoder/config.json") -> "CLIPTextConfig":
        act = d.get("hidden_act", "quick_gelu")
        if act not in ("quick_gelu", "gelu"):
            raise SdsimError(f"{source}: unsupported hidden_act '{act}'; supported: quick_gelu, gelu")
        known = {f.name for f in fields(cls)}
        return cls(**{k: d[k] for k in known if k in d})


@dataclass(frozen=True)
class ModelConfig:
    """The three components of a Stable Diffusion checkpoint."""

    name: str
    text_encoder: CLIPTextConfig = field(default_factory=CLIPTextConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
