"""The direct convolution of opencl/conv.cl (conv_direct) in NumPy, rounding exactly where the
kernel rounds, so that a device with native half arithmetic can be checked against it bit for bit;
and the multiply-add (`mac`) that the kernel's half builds share with the Winograd transforms.

Rounding points with fp16 storage, per arithmetic (ARITH):
- input x, weights w and bias stored in fp16;
- each output walks two chains of multiply-adds, even and odd input channels, each in order
  (c, ky, kx); the kernel stages CB input channels at a time, so channels past C up to a
  multiple of CB add 0 * 0 (turning a -0 chain into +0); taps on the padding multiply a +0;
- "fp16": each product rounded to half, added to a float32 accumulator; the chains summed in
  float32;
- "fp16acc": acc = fma(x, w, acc) in half; the chains summed in half;
- "fp32": float32 multiply-add (the device may contract to FMA: not a bit-exact mirror);
- then + bias (+0 without one) in float32 and one rounding to fp16.
The chains are sums of cin * k * k / 2 terms (11520 at SD1.4's 2560-channel 3x3 convs): a float
accumulator keeps them to float's 2^-24; a half one (fp16acc, a mobile engine's fp16 mode) rounds
every step to 2^-11 of the running sum, which holds up because the products have mixed signs
and the sum stays near the output's scale.
"""

from __future__ import annotations

import numpy as np

from sdsim.errors import SdsimError
from sdsim.ops import conv_out_hw, padding4
from sdsim.precision import ARITHS, stored
from sdsim.sim.half import fma16


def mac(a, b, acc, arith: str):
    """acc <- a * b + acc as the kernels' MAC: "fp32" in acc's dtype; "fp16" the operands rounded
    to half (a no-op for stored halves and the exact transform constants), their product rounded
    to half and added to a float32 acc; "fp16acc" one half fma into a float16 acc."""
    if arith == "fp32":
        return a * b + acc
    a, b = (np.asarray(v, np.float32).astype(np.float16).astype(np.float32) for v in (a, b))
    prod = a * b   # float32: exact for half operands
    with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN are what half gives
        if arith == "fp16":
            return acc + prod.astype(np.float16).astype(np.float32)
        return fma16(prod, acc)


def acc_dtype(arith: str, dtype=np.float32):
    """The accumulator type of an arithmetic (`dtype` for "fp32")."""
    return {"fp16": np.float32, "fp16acc": np.float16}.get(arith, dtype)


def check_arith(arith: str) -> None:
    if arith not in ARITHS:
        raise SdsimError(f"conv sim: unknown arithmetic '{arith}'; expected one of "
                         f"{', '.join(ARITHS)}")


def conv_direct(x, w, b=None, stride: int = 1, padding=0, *, arith: str = "fp16",
                cb: int | None = None) -> np.ndarray:
    """y (N, K, Ho, Wo) as conv_direct computes it with fp16 storage from x (N, C, H, W),
    w (K, C, k, k) and bias b (K,) or None; `cb` is the launch's staged input channels
    (sdsim.kernels.conv.direct_config; None: the one the launcher picks). Returned as float16."""
    check_arith(arith)
    x, w = (stored(a, "fp16", np.float32) for a in (x, w))
    n, c, h, wd = x.shape
    k, ks = w.shape[0], w.shape[2]
    pt, pb, pl, pr = padding4(padding)
    ho, wo = conv_out_hw(h, wd, ks, stride, (pt, pb, pl, pr))
    if cb is None:
        from sdsim.kernels.conv import direct_config
        cb = direct_config(n, c, k, ho, wo, ks).cb
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    acc = np.zeros((2, n, k, ho, wo), acc_dtype(arith))
    zero = np.zeros((n, 1, ho, wo), np.float32)
    for ci in range(-(-c // cb) * cb):
        for ky in range(ks):
            for kx in range(ks):
                if ci < c:
                    win = xp[:, ci, ky:ky + stride * (ho - 1) + 1:stride,
                             kx:kx + stride * (wo - 1) + 1:stride][:, None]
                    wv = w[None, :, ci, ky, kx, None, None]
                else:
                    win, wv = zero, np.float32(0)
                acc[ci & 1] = mac(win, wv, acc[ci & 1], arith)
    with np.errstate(over="ignore", invalid="ignore"):
        if arith == "fp16acc":
            v = (acc[0].astype(np.float64) + acc[1]).astype(np.float16).astype(np.float32)
        else:
            v = acc[0] + acc[1]
        bias = (stored(b, "fp16", np.float32)[None, :, None, None] if b is not None
                else np.float32(0))
        return (v + bias).astype(np.float16)
