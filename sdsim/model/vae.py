"""The SD VAE (diffusers' AutoencoderKL): encoder + quant_conv, post_quant_conv + decoder."""

from __future__ import annotations

from sdsim.model.config import VAEConfig
from sdsim.model.module import Conv2d, GroupNorm, Linear, Module
from sdsim.model.unet import Downsample2D, ResnetBlock2D, Upsample2D

EPS = 1e-6  # every GroupNorm in the SD VAE


class VAEAttention(Module):
    """Single-head self-attention over all pixels, with its own GroupNorm and a residual."""

    def __init__(self, c, groups):
        self.group_norm = GroupNorm(groups, c, EPS)
        self.to_q, self.to_k, self.to_v = Linear(c, c), Linear(c, c), Linear(c, c)
        self.to_out = [Linear(c, c)]

    def forward(self, F, x):
        _, _, h, w = x.shape
        y = F.nchw_to_nlc(self.group_norm(F, x))
        q, k, v = self.to_q(F, y), self.to_k(F, y), self.to_v(F, y)
        y = self.to_out[0](F, F.attention(q, k, v, heads=1))
        return F.add(F.nlc_to_nchw(y, h, w), x)


class VAEMidBlock(Module):
    def __init__(self, c, groups):
        self.attentions = [VAEAttention(c, groups)]
        self.resnets = [ResnetBlock2D(c, c, groups, EPS) for _ in range(2)]

    def forward(self, F, x):
        x = self.resnets[0](F, x)
        x = self.attentions[0](F, x)
        return self.resnets[1](F, x)


class DownEncoderBlock2D(Module):
    def __init__(self, cin, cout, n, groups, add_down):
        self.resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, groups, EPS) for j in range(n)]
        # diffusers pads (0, 1, 0, 1) then convolves with stride 2 and no padding
        self.downsamplers = [Downsample2D(cout, padding=(0, 1, 0, 1))] if add_down else []

    def forward(self, F, x):
        for r in self.resnets:
            x = r(F, x)
        for d in self.downsamplers:
            x = d(F, x)
        return x


class UpDecoderBlock2D(Module):
    def __init__(self, cin, cout, n, groups, add_up):
        self.resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, groups, EPS) for j in range(n)]
        self.upsamplers = [Upsample2D(cout)] if add_up else []

    def forward(self, F, x):
        for r in self.resnets:
            x = r(F, x)
        for u in self.upsamplers:
            x = u(F, x)
        return x


class Encoder(Module):
    def __init__(self, cfg: VAEConfig):
        ch, g, n = cfg.block_out_channels, cfg.norm_num_groups, cfg.layers_per_block
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3)
        self.down_blocks = [DownEncoderBlock2D(ch[max(i - 1, 0)], ch[i], n, g, i < len(ch) - 1)
                            for i in range(len(ch))]
        self.mid_block = VAEMidBlock(ch[-1], g)
        self.conv_norm_out = GroupNorm(g, ch[-1], EPS)
        self.conv_out = Conv2d(ch[-1], 2 * cfg.latent_channels, 3)

    def forward(self, F, x):
        x = self.conv_in(F, x)
        for b in self.down_blocks:
            x = b(F, x)
        x = self.mid_block(F, x)
        return self.conv_out(F, self.conv_norm_out(F, x, act="silu"))


class Decoder(Module):
    def __init__(self, cfg: VAEConfig):
        rev, g, n = cfg.block_out_channels[::-1], cfg.norm_num_groups, cfg.layers_per_block + 1
        self.conv_in = Conv2d(cfg.latent_channels, rev[0], 3)
        self.mid_block = VAEMidBlock(rev[0], g)
        self.up_blocks = [UpDecoderBlock2D(rev[max(i - 1, 0)], rev[i], n, g, i < len(rev) - 1)
                          for i in range(len(rev))]
        self.conv_norm_out = GroupNorm(g, rev[-1], EPS)
        self.conv_out = Conv2d(rev[-1], cfg.out_channels, 3)

    def forward(self, F, z):
        x = self.mid_block(F, self.conv_in(F, z))
        for b in self.up_blocks:
            x = b(F, x)
        return self.conv_out(F, self.conv_norm_out(F, x, act="silu"))


class AutoencoderKL(Module):
    def __init__(self, cfg: VAEConfig):
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.bind()

    def decode(self, F, z):
        """Latents (already divided by the scaling factor) to an image in about [-1, 1]."""
        return self.decoder(F, self.post_quant_conv(F, z))

    def encode(self, F, x):
        """Image to the moments (mean, logvar) of the latent distribution, (B, 2*latent, h, w)."""
        return self.quant_conv(F, self.encoder(F, x))

    def decoder_params(self):
        """(name, Param) of what decoding needs: post_quant_conv and the decoder."""
        for name, p in self.named_params():
            if name.startswith(("decoder.", "post_quant_conv.")):
                yield name, p
