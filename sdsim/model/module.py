"""A minimal module tree: parameters declared by shape, named the way diffusers names them.

A component is built from a config; `bind()` walks the tree once and gives every Param its full
name (e.g. "down_blocks.0.resnets.0.conv1.weight") and every Module its path, which backends use
as the op's scope. Modules hold no data: a backend resolves a Param to its own tensor.
"""

from __future__ import annotations

from math import prod


class Param:
    """A named parameter of a fixed shape (values live in the backend)."""

    __slots__ = ("shape", "name")

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        self.name = ""

    @property
    def numel(self) -> int:
        return prod(self.shape)

    def __repr__(self):
        return f"Param({self.name!r}, {self.shape})"


class Module:
    """Base of all model parts; attributes that are Params, Modules or lists of Modules form the tree."""

    _path = ""

    def _children(self):
        for key, val in vars(self).items():
            if isinstance(val, (Param, Module)):
                yield key, val
            elif isinstance(val, list) and val and isinstance(val[0], Module):
                for i, m in enumerate(val):
                    yield f"{key}.{i}", m

    def bind(self, prefix: str = "") -> "Module":
        """Name every Param and Module below this one; call once on the component root."""
        self._path = prefix
        for key, val in self._children():
            full = f"{prefix}.{key}" if prefix else key
            if isinstance(val, Param):
                val.name = full
            else:
                val.bind(full)
        return self

    def named_params(self):
        """(name, Param) pairs in declaration order."""
        for _, val in self._children():
            if isinstance(val, Param):
                yield val.name, val
            else:
                yield from val.named_params()

    def num_params(self) -> int:
        return sum(p.numel for _, p in self.named_params())

    def __call__(self, F, *args, **kwargs):
        with F.scope(self._path):
            return self.forward(F, *args, **kwargs)

    def forward(self, F, *args, **kwargs):
        raise NotImplementedError


class Conv2d(Module):
    def __init__(self, cin, cout, k, stride=1, padding=None, bias=True):
        self.weight = Param((cout, cin, k, k))
        self.bias = Param((cout,)) if bias else None
        self.stride = stride
        self.padding = k // 2 if padding is None else padding

    def forward(self, F, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class Linear(Module):
    def __init__(self, cin, cout, bias=True):
        self.weight = Param((cout, cin))
        self.bias = Param((cout,)) if bias else None

    def forward(self, F, x):
        return F.linear(x, self.weight, self.bias)


class GroupNorm(Module):
    def __init__(self, groups, channels, eps=1e-5):
        self.weight = Param((channels,))
        self.bias = Param((channels,))
        self.groups, self.eps = groups, eps

    def forward(self, F, x, act=None):
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps, act=act)


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-5):
        self.weight = Param((dim,))
        self.bias = Param((dim,))
        self.eps = eps

    def forward(self, F, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)
