"""CLIP text encoder (transformers' CLIPTextModel): pre-LN, causal self-attention, an MLP with
`hidden_act` (quick_gelu in SD1's CLIP ViT-L/14, erf gelu in SD2's OpenCLIP ViT-H/14); returns
last_hidden_state (B, 77, hidden_size) after the final LayerNorm."""

from __future__ import annotations

from sdsim.model.config import CLIPTextConfig
from sdsim.model.module import LayerNorm, Linear, Module, Param


class Embedding(Module):
    def __init__(self, num, dim):
        self.weight = Param((num, dim))


class CLIPAttention(Module):
    def __init__(self, dim, heads):
        self.k_proj, self.v_proj = Linear(dim, dim), Linear(dim, dim)
        self.q_proj, self.out_proj = Linear(dim, dim), Linear(dim, dim)
        self.heads = heads

    def forward(self, F, x):
        q, k, v = self.q_proj(F, x), self.k_proj(F, x), self.v_proj(F, x)
        return self.out_proj(F, F.attention(q, k, v, self.heads, causal=True))


class CLIPMLP(Module):
    def __init__(self, dim, hidden, act):
        self.fc1, self.fc2 = Linear(dim, hidden), Linear(hidden, dim)
        self.act = act

    def forward(self, F, x):
        h = self.fc1(F, x)
        h = F.quick_gelu(h) if self.act == "quick_gelu" else F.gelu(h)
        return self.fc2(F, h)


class CLIPEncoderLayer(Module):
    def __init__(self, cfg: CLIPTextConfig):
        d = cfg.hidden_size
        self.self_attn = CLIPAttention(d, cfg.num_attention_heads)
        self.layer_norm1 = LayerNorm(d, cfg.layer_norm_eps)
        self.mlp = CLIPMLP(d, cfg.intermediate_size, cfg.hidden_act)
        self.layer_norm2 = LayerNorm(d, cfg.layer_norm_eps)

    def forward(self, F, x):
        x = F.add(x, self.self_attn(F, self.layer_norm1(F, x)))
        return F.add(x, self.mlp(F, self.layer_norm2(F, x)))


class CLIPEmbeddings(Module):
    def __init__(self, cfg: CLIPTextConfig):
        self.token_embedding = Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, F, ids):
        # position ids are 0..N-1: the op adds the first N rows of the position table
        return F.embedding(ids, self.token_embedding.weight, self.position_embedding.weight)


class CLIPEncoder(Module):
    def __init__(self, cfg: CLIPTextConfig):
        self.layers = [CLIPEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers)]

    def forward(self, F, x):
        for layer in self.layers:
            x = layer(F, x)
        return x


class CLIPTextTransformer(Module):
    def __init__(self, cfg: CLIPTextConfig):
        self.embeddings = CLIPEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, F, ids):
        return self.final_layer_norm(F, self.encoder(F, self.embeddings(F, ids)))


class CLIPTextModel(Module):
    """Parameter names as in transformers: text_model.embeddings.token_embedding.weight, ..."""

    def __init__(self, cfg: CLIPTextConfig):
        self.config = cfg
        self.text_model = CLIPTextTransformer(cfg)
        self.bind()

    def forward(self, F, input_ids):
        return self.text_model(F, input_ids)
