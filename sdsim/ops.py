"""The op vocabulary the model is written against, and the base every backend extends.

The model (sdsim/model) calls only these ops, at the granularity the paper optimizes, so a backend
can pick one fused kernel for a whole `attention` or `group_norm(act="silu")`.

Conventions shared by every backend:
- image tensors are NCHW; token tensors are (B, N, C);
- weights are passed as `Param` objects (see sdsim/model/module.py); a backend turns them into
  its own tensors with `self.value(param)`;
- `conv2d` padding is an int or a (top, bottom, left, right) tuple;
- `linear` weights are (out, in) as in PyTorch; bias may be None;
- `attention(q, k, v, heads, causal)` takes (B, Nq, C) queries and (B, Nk, C) keys/values, splits C
  into `heads`, scales by 1/sqrt(C/heads) and returns (B, Nq, C);
- `geglu(x)` splits the last dim in two halves (hidden, gate) and returns hidden * gelu(gate),
  with the exact erf GELU, as diffusers' GEGLU does;
- `timestep_embedding(t, dim, flip_sin_to_cos, shift)` is diffusers' get_timestep_embedding;
- `embedding(ids, table, position_table)` gathers table rows for integer ids (B, N) and adds the
  first N rows of `position_table` when given (CLIP's token + position embedding in one op);
- `reshape(x, shape)` is a view (no data moves); `nchw_to_nlc` / `nlc_to_nchw` are real transposes.
"""

from __future__ import annotations

import contextlib

from sdsim.errors import SdsimError


class Backend:
    """Base of all backends: keeps the module scope so each op knows which layer called it."""

    name = "base"

    def __init__(self):
        self._scope: list[str] = []

    @staticmethod
    def weight(weights, param):
        """The array `weights` holds for a Param, checked against the shape the model expects
        (an error naming the parameter otherwise)."""
        try:
            arr = weights[param.name]
        except KeyError:
            raise SdsimError(f"no weight for parameter {param.name!r}") from None
        if tuple(arr.shape) != param.shape:
            raise SdsimError(f"weight {param.name!r} has shape {tuple(arr.shape)}, "
                             f"the model expects {param.shape}")
        return arr

    @contextlib.contextmanager
    def scope(self, name: str):
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    @property
    def current_scope(self) -> str:
        """The innermost module path (diffusers naming), e.g. 'down_blocks.0.resnets.1.conv1'."""
        return self._scope[-1] if self._scope else ""

    # --- the op vocabulary; every backend implements all of these -------------------------
    def value(self, param): raise NotImplementedError
    def conv2d(self, x, weight, bias, stride=1, padding=0): raise NotImplementedError
    def linear(self, x, weight, bias=None): raise NotImplementedError
    def group_norm(self, x, groups, weight, bias, eps, act=None): raise NotImplementedError
    def layer_norm(self, x, weight, bias, eps): raise NotImplementedError
    def attention(self, q, k, v, heads, causal=False): raise NotImplementedError
    def geglu(self, x): raise NotImplementedError
    def gelu(self, x): raise NotImplementedError
    def quick_gelu(self, x): raise NotImplementedError
    def silu(self, x): raise NotImplementedError
    def add(self, a, b): raise NotImplementedError
    def upsample_nearest2x(self, x, size=None): raise NotImplementedError
    def concat(self, xs, axis=1): raise NotImplementedError
    def nchw_to_nlc(self, x): raise NotImplementedError
    def nlc_to_nchw(self, x, h, w): raise NotImplementedError
    def embedding(self, ids, table, position_table=None): raise NotImplementedError
    def reshape(self, x, shape): raise NotImplementedError
    def timestep_embedding(self, t, dim, flip_sin_to_cos, shift): raise NotImplementedError


def upsample_size(h: int, w: int, size=None) -> tuple[int, int]:
    """The (height, width) a nearest 2x upsample of h x w makes: 2h x 2w, or `size` where a UNet
    skip connection is one less (odd latents, as diffusers' `upsample_size`). Nearest resizing
    of h rows to 2h - 1 reads row floor(i h / (2h - 1)) = floor(i / 2) for i < 2h - 1: the 2x
    image with its last row cropped, so every backend upsamples 2x and crops."""
    oh, ow = (2 * h, 2 * w) if size is None else (int(size[0]), int(size[1]))
    if oh not in (2 * h - 1, 2 * h) or ow not in (2 * w - 1, 2 * w):
        raise SdsimError(f"nearest 2x upsample of {h}x{w} to {oh}x{ow}: the output is twice the "
                         "input, or one less where a skip connection is odd")
    return oh, ow


def padding4(padding) -> tuple[int, int, int, int]:
    """Normalise a conv padding to (top, bottom, left, right)."""
    if isinstance(padding, int):
        return (padding, padding, padding, padding)
    return tuple(padding)


def conv_out_hw(h, w, k, stride, padding) -> tuple[int, int]:
    """Output height and width of a conv2d."""
    t, b, l, r = padding4(padding)
    return (h + t + b - k) // stride + 1, (w + l + r - k) // stride + 1
