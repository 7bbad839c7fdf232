"""The op vocabulary of the backends that run a component through its kernel plan.

The model calls its ops in execution order; a planned backend hands each one, with its activation
inputs and its weights by role, to `_run(kind, ins, params, pnames, **extra)`, which finds the
op's variant in the plan (sdsim.lower) and runs it: on an OpenCL device
(sdsim.backends.opencl.backend) or in NumPy with the kernels' rounding points
(sdsim.backends.simulate). One vocabulary, so both see the same ops with the same operands.
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.ops import Backend


class PlannedOps(Backend):
    """Every model op as a call of `self._run`; weights through `self.value(param)`."""

    graph = None     # the traced graph of the component (sdsim.backends.trace)
    calls: dict = {}  # op index -> the plan's KernelCalls of that op
    _i = 0           # the next op's index

    def _run(self, kind, ins, params=None, pnames=(), **extra):
        raise NotImplementedError

    @property
    def ops_run(self) -> int:
        return self._i

    def _next(self, kind: str) -> tuple:
        """(index, traced op, plan calls) of the op the model calls now, checked against the
        trace; no calls: the op was fused into its producer (a GELU in a GEMM's epilogue)."""
        i = self._i
        if i >= len(self.graph.ops):
            raise SdsimError(f"the model called more ops than traced for {self.graph.name} "
                             f"({kind} after op {i - 1})")
        op = self.graph.ops[i]
        if op.kind != kind:
            raise SdsimError(f"{self.graph.name} op {i}: the model called {kind}, the trace has "
                             f"{op.kind} ({op.scope})")
        self._i += 1
        return i, op, self.calls.get(i, [])

    def value(self, param):
        raise NotImplementedError

    def conv2d(self, x, weight, bias, stride=1, padding=0):
        return self._run("conv2d", [x], {"w": self.value(weight), "b": self.value(bias)},
                         (weight.name,))

    def linear(self, x, weight, bias=None):
        return self._run("linear", [x], {"w": self.value(weight), "b": self.value(bias)},
                         (weight.name,))

    def group_norm(self, x, groups, weight, bias, eps, act=None):
        return self._run("group_norm", [x], {"gamma": self.value(weight),
                                             "beta": self.value(bias)})

    def layer_norm(self, x, weight, bias, eps):
        return self._run("layer_norm", [x], {"gamma": self.value(weight),
                                             "beta": self.value(bias)})

    def attention(self, q, k, v, heads, causal=False):
        return self._run("attention", [q, k, v])

    def geglu(self, x):
        return self._run("geglu", [x])

    def gelu(self, x):
        return self._run("gelu", [x])

    def quick_gelu(self, x):
        return self._run("quick_gelu", [x])

    def silu(self, x):
        return self._run("silu", [x])

    def add(self, a, b):
        return self._run("add", [a, b])

    def upsample_nearest2x(self, x, size=None):
        # the traced op's output has `size` (2x, or one less at an odd skip connection)
        return self._run("upsample_nearest2x", [x])

    def concat(self, xs, axis=1):
        return self._run("concat", list(xs))

    def nchw_to_nlc(self, x):
        return self._run("nchw_to_nlc", [x])

    def nlc_to_nchw(self, x, h, w):
        return self._run("nlc_to_nchw", [x])

    def embedding(self, ids, table, position_table=None):
        return self._run("embedding", [ids], {"table": self.value(table),
                                              "positions": self.value(position_table)})

    def timestep_embedding(self, t, dim, flip_sin_to_cos, shift):
        return self._run("timestep_embedding", [t], flip_sin_to_cos=flip_sin_to_cos, shift=shift)


class PlannedStages:
    """The three calls of a text-to-image run, each through `self._run(component, inputs, size,
    batch)` with the component's input arrays, its (height, width) in pixels and its guidance
    batch."""

    cfg = None   # the model config

    def _run(self, name: str, inputs: list, size, batch: int):
        raise NotImplementedError

    def _size(self, latents) -> tuple[int, int]:
        f = self.cfg.vae.downscale
        return latents.shape[2] * f, latents.shape[3] * f

    def text_encoder(self, ids):
        return self._run("text_encoder", [ids.astype(np.int32)], None, ids.shape[0])

    def unet(self, x, t, context):
        return self._run("unet", [x, t, context], self._size(x), x.shape[0])

    def vae_decoder(self, z):
        # a runner's batch is the guidance batch; the VAE decodes max(1, batch // 2) images
        return self._run("vae_decoder", [z], self._size(z), 2 * z.shape[0])
