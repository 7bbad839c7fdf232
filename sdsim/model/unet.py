"""The SD UNet (diffusers' UNet2DConditionModel): resnets with timestep embedding, spatial
transformers with self- and cross-attention and a GEGLU feed-forward, skip connections."""

from __future__ import annotations

from sdsim.model.config import UNetConfig
from sdsim.model.module import Conv2d, GroupNorm, LayerNorm, Linear, Module


class TimestepEmbedding(Module):
    def __init__(self, cin, dim):
        self.linear_1, self.linear_2 = Linear(cin, dim), Linear(dim, dim)

    def forward(self, F, x):
        return self.linear_2(F, F.silu(self.linear_1(F, x)))


class ResnetBlock2D(Module):
    """GroupNorm+SiLU, conv, + projected time embedding, GroupNorm+SiLU, conv, + shortcut."""

    def __init__(self, cin, cout, groups, eps, temb_channels=None):
        self.norm1 = GroupNorm(groups, cin, eps)
        self.conv1 = Conv2d(cin, cout, 3)
        self.time_emb_proj = Linear(temb_channels, cout) if temb_channels else None
        self.norm2 = GroupNorm(groups, cout, eps)
        self.conv2 = Conv2d(cout, cout, 3)
        self.conv_shortcut = Conv2d(cin, cout, 1) if cin != cout else None
        self.cout = cout

    def forward(self, F, x, temb=None):
        h = self.conv1(F, self.norm1(F, x, act="silu"))
        if self.time_emb_proj is not None:
            t = self.time_emb_proj(F, F.silu(temb))
            h = F.add(h, F.reshape(t, (t.shape[0], self.cout, 1, 1)))
        h = self.conv2(F, self.norm2(F, h, act="silu"))
        skip = self.conv_shortcut(F, x) if self.conv_shortcut is not None else x
        return F.add(skip, h)


class Attention(Module):
    """Multi-head attention with diffusers' names (to_q, to_k, to_v, to_out.0)."""

    def __init__(self, dim, heads, context_dim=None, qkv_bias=False):
        context_dim = context_dim or dim
        self.to_q = Linear(dim, dim, bias=qkv_bias)
        self.to_k = Linear(context_dim, dim, bias=qkv_bias)
        self.to_v = Linear(context_dim, dim, bias=qkv_bias)
        self.to_out = [Linear(dim, dim)]
        self.heads = heads

    def forward(self, F, x, context=None):
        context = x if context is None else context
        q, k, v = self.to_q(F, x), self.to_k(F, context), self.to_v(F, context)
        return self.to_out[0](F, F.attention(q, k, v, self.heads))


class GEGLU(Module):
    def __init__(self, dim, inner):
        self.proj = Linear(dim, 2 * inner)

    def forward(self, F, x):
        return F.geglu(self.proj(F, x))


class FeedForward(Module):
    """net.0 = GEGLU(dim -> 4*dim), net.2 = Linear(4*dim -> dim) (net.1 is dropout)."""

    def __init__(self, dim):
        self.net = [GEGLU(dim, 4 * dim), _Absent(), Linear(4 * dim, dim)]

    def forward(self, F, x):
        return self.net[2](F, self.net[0](F, x))


class _Absent(Module):
    """A parameter-free slot (dropout) that keeps diffusers' list indices."""


class BasicTransformerBlock(Module):
    def __init__(self, dim, heads, context_dim):
        self.norm1, self.attn1 = LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = LayerNorm(dim), Attention(dim, heads, context_dim)
        self.norm3, self.ff = LayerNorm(dim), FeedForward(dim)

    def forward(self, F, x, context):
        x = F.add(x, self.attn1(F, self.norm1(F, x)))
        x = F.add(x, self.attn2(F, self.norm2(F, x), context))
        return F.add(x, self.ff(F, self.norm3(F, x)))


class Transformer2DModel(Module):
    """GroupNorm (eps 1e-6), proj_in (1x1 conv, or linear in SD2), transformer blocks, proj_out, + input."""

    def __init__(self, channels, heads, context_dim, groups, layers=1, linear_proj=False):
        self.norm = GroupNorm(groups, channels, 1e-6)
        self.proj_in = Linear(channels, channels) if linear_proj else Conv2d(channels, channels, 1)
        self.transformer_blocks = [BasicTransformerBlock(channels, heads, context_dim) for _ in range(layers)]
        self.proj_out = Linear(channels, channels) if linear_proj else Conv2d(channels, channels, 1)
        self.linear_proj = linear_proj

    def forward(self, F, x, context):
        _, _, h, w = x.shape
        y = self.norm(F, x)
        if self.linear_proj:
            y = self.proj_in(F, F.nchw_to_nlc(y))
        else:
            y = F.nchw_to_nlc(self.proj_in(F, y))
        for block in self.transformer_blocks:
            y = block(F, y, context)
        if self.linear_proj:
            y = F.nlc_to_nchw(self.proj_out(F, y), h, w)
        else:
            y = self.proj_out(F, F.nlc_to_nchw(y, h, w))
        return F.add(y, x)


class Downsample2D(Module):
    def __init__(self, channels, padding=1):
        self.conv = Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, F, x):
        return self.conv(F, x)


class Upsample2D(Module):
    def __init__(self, channels):
        self.conv = Conv2d(channels, channels, 3)

    def forward(self, F, x, size=None):
        return self.conv(F, F.upsample_nearest2x(x, size))


class DownBlock(Module):
    """DownBlock2D or CrossAttnDownBlock2D; returns the output and the skip tensors it adds."""

    def __init__(self, cin, cout, cfg: UNetConfig, i, temb, add_down):
        cross = cfg.down_block_types[i] == "CrossAttnDownBlock2D"
        n, g = cfg.layers_per_block, cfg.norm_num_groups
        self.resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, g, cfg.norm_eps, temb) for j in range(n)]
        self.attentions = [Transformer2DModel(cout, cfg.heads[i], cfg.cross_attention_dim, g,
                                              cfg.transformer_layers_per_block[i], cfg.use_linear_projection)
                           for _ in range(n)] if cross else []
        self.downsamplers = [Downsample2D(cout)] if add_down else []

    def forward(self, F, x, temb, context):
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(F, x, temb)
            if self.attentions:
                x = self.attentions[j](F, x, context)
            skips.append(x)
        for down in self.downsamplers:
            x = down(F, x)
            skips.append(x)
        return x, skips


class UpBlock(Module):
    """UpBlock2D or CrossAttnUpBlock2D: each resnet first concatenates one skip tensor."""

    def __init__(self, prev, cout, cskip_in, cfg: UNetConfig, i, temb, add_up):
        cross = cfg.up_block_types[i] == "CrossAttnUpBlock2D"
        n, g = cfg.layers_per_block + 1, cfg.norm_num_groups
        heads = cfg.heads[::-1][i]
        layers = cfg.transformer_layers_per_block[::-1][i]
        self.resnets = [ResnetBlock2D((prev if j == 0 else cout) + (cskip_in if j == n - 1 else cout),
                                      cout, g, cfg.norm_eps, temb) for j in range(n)]
        self.attentions = [Transformer2DModel(cout, heads, cfg.cross_attention_dim, g, layers,
                                              cfg.use_linear_projection) for _ in range(n)] if cross else []
        self.upsamplers = [Upsample2D(cout)] if add_up else []

    def forward(self, F, x, skips, temb, context):
        for j, resnet in enumerate(self.resnets):
            x = resnet(F, F.concat([x, skips.pop()], axis=1), temb)
            if self.attentions:
                x = self.attentions[j](F, x, context)
        # the next block's first skip sets the size (odd where the latents are)
        size = tuple(skips[-1].shape[-2:]) if skips else None
        for up in self.upsamplers:
            x = up(F, x, size)
        return x


class UNetMidBlock2DCrossAttn(Module):
    def __init__(self, c, cfg: UNetConfig, temb):
        g = cfg.norm_num_groups
        self.attentions = [Transformer2DModel(c, cfg.heads[-1], cfg.cross_attention_dim, g,
                                              cfg.transformer_layers_per_block[-1], cfg.use_linear_projection)]
        self.resnets = [ResnetBlock2D(c, c, g, cfg.norm_eps, temb) for _ in range(2)]

    def forward(self, F, x, temb, context):
        x = self.resnets[0](F, x, temb)
        x = self.attentions[0](F, x, context)
        return self.resnets[1](F, x, temb)


class UNet2DConditionModel(Module):
    def __init__(self, cfg: UNetConfig):
        self.config = cfg
        ch = cfg.block_out_channels
        temb = 4 * ch[0]
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = [DownBlock(ch[max(i - 1, 0)], ch[i], cfg, i, temb, i < len(ch) - 1)
                            for i in range(len(ch))]
        self.mid_block = UNetMidBlock2DCrossAttn(ch[-1], cfg, temb)
        rev = ch[::-1]
        self.up_blocks = [UpBlock(rev[max(i - 1, 0)], rev[i], rev[min(i + 1, len(ch) - 1)], cfg, i, temb,
                                  i < len(ch) - 1) for i in range(len(ch))]
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, ch[0], cfg.norm_eps)
        self.conv_out = Conv2d(ch[0], cfg.out_channels, 3)
        self.bind()

    def forward(self, F, sample, timestep, encoder_hidden_states):
        cfg = self.config
        t = F.timestep_embedding(timestep, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        temb = self.time_embedding(F, t)
        x = self.conv_in(F, sample)
        skips = [x]
        for block in self.down_blocks:
            x, s = block(F, x, temb, encoder_hidden_states)
            skips += s
        x = self.mid_block(F, x, temb, encoder_hidden_states)
        for block in self.up_blocks:
            x = block(F, x, skips, temb, encoder_hidden_states)
        return self.conv_out(F, self.conv_norm_out(F, x, act="silu"))
