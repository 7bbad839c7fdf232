"""Random PyTorch weights for cross-checks against diffusers/transformers models: every tensor
drawn (not the library's zero biases and unit norm scales), so a weight-mapping slip shows."""

from __future__ import annotations

import math


def randomize(torch, model, seed: int):
    """Every parameter random: norm scales 1 + N(0, 0.1), biases N(0, 0.1), weights
    N(0, 1/fan_in). Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1:
                p.copy_(1 + 0.1 * r if "norm" in name and name.endswith("weight") else 0.1 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))
    return model.eval()
