"""fp16 arithmetic on a real half-precision device, next to its NumPy simulation: the GEMM family.

Runs each GEMM-family variant at SD1.4 layer shapes (output channels or tokens cut down so a CPU
runs it in seconds; K, the sum that rounds, is the layer's own) with fp16 storage in each
arithmetic (fp32, fp16: half products into float accumulators, fp16acc: half accumulators), on an
OpenCL device with cl_khr_fp16 (Intel's OpenCL CPU runtime by default), and through
sdsim.sim (gemm, winograd) with the same rounding points. Per case and arithmetic: the device's
and the simulation's error against float64, how many outputs are bit-identical between device
and simulation (and the largest difference in half ulps), and outputs that overflowed to inf or
NaN. A second table scales the activations until half arithmetic overflows.

Writes reports/fp16-numerics.md and .json.

    python benchmarks/fp16_numerics.py [--platform Intel] [--out reports/fp16-numerics]
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from sdsim import paths, provenance
from sdsim.cl.runtime import Runtime
from sdsim.kernels.conv import conv2d_host
from sdsim.kernels.gemm import gemm as gemm_launch
from sdsim.kernels.gemm import k_walk, linear_host
from sdsim.output import render_rows, write_pair
from sdsim.precision import ARITHS
from sdsim.sim import gemm as gemm_sim
from sdsim.sim.winograd import conv3x3

#: (label, variant, shape): linear (tokens, K, N); scores (heads, tokens, keys, head dim);
#: conv (C in, C out, side) with 3x3 kernels
CASES = [
    ("attn q/k/v proj 320->320, 64x64 latent", "linear", (256, 320, 320)),
    ("cross-attn k/v proj 768->320, text", "linear", (77, 768, 320)),
    ("feed-forward out 1280->320", "linear", (256, 1280, 320)),
    ("feed-forward out 5120->1280, 8x8 latent", "linear", (64, 5120, 128)),
    ("time embedding 1280->1280", "linear", (2, 1280, 1280)),
    ("self-attn scores QK^T, d=40, 64x64 latent", "scores", (2, 256, 256, 40)),
    ("cross-attn scores QK^T, d=160, 8x8 latent", "scores", (2, 64, 77, 160)),
    ("resnet conv 320->32, 64x64 (im2col)", "im2col_gemm", (320, 32, 64)),
    ("resnet conv 320->32, 64x64 (Winograd F2)", "winograd_f2", (320, 32, 64)),
    ("resnet conv 320->32, 64x64 (Winograd F4)", "winograd_f4", (320, 32, 64)),
    ("resnet conv 320->32, 64x64 (Winograd F6)", "winograd_f6", (320, 32, 64)),
    ("resnet conv 1280->32, 16x16 (Winograd F4)", "winograd_f4", (1280, 32, 16)),
]
#: activation scales of the overflow table (weights keep unit-variance outputs per unit input)
SCALES = (1, 256, 2048, 8192)


def _half(x):
    return np.asarray(x, np.float32).astype(np.float16)


def _linear(rt, rng, shape, scale):
    m, k, n = shape
    x = _half(rng.standard_normal((m, k)) * scale)
    w = _half(rng.standard_normal((n, k)) / np.sqrt(k))
    b = _half(rng.standard_normal(n) * 0.1)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    dev = linear_host(rt, x, w, b, precision="fp16")[0]
    kslice, k_step = k_walk(1, m, k, n)
    sim = gemm_sim.gemm(x[None], w.T[None], arith=rt.arith, bias=b, bias_mode=1, kslice=kslice,
                        k_step=k_step)[0]
    return ref, dev, sim


def _scores(rt, rng, shape, scale):
    heads, nq, nk, d = shape
    q = _half(rng.standard_normal((heads, nq, d)) * scale)
    k = _half(rng.standard_normal((heads, nk, d)))
    alpha = 1 / np.sqrt(d)
    ref = alpha * np.einsum("hqd,hkd->hqk", q.astype(np.float64), k.astype(np.float64))
    c = rt.alloc(heads * nq * nk, "fp16", "scores")
    evs = gemm_launch(rt, rt.to_device(q, "fp16"), rt.to_device(k, "fp16"), c, nq, nk, d,
                      batch=heads, strides_a=(nq * d, d, 1), strides_b=(nk * d, 1, d),
                      strides_c=(nq * nk, nk, 1), alpha=alpha, precision="fp16")
    dev = rt.from_device(c, (heads, nq, nk), "fp16", wait_for=evs)
    kslice, k_step = k_walk(heads, nq, d, nk)
    sim = gemm_sim.gemm(q, k.transpose(0, 2, 1), arith=rt.arith, alpha=alpha, kslice=kslice,
                        k_step=k_step)
    return ref, dev, sim


def _im2col(x):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)], 2)
    return cols.reshape(n, c * 9, h * w)   # rows c * 9 + ky * 3 + kx, as the im2col kernel


def _conv(rt, rng, shape, scale, variant):
    cin, cout, side = shape
    x = _half(rng.standard_normal((1, cin, side, side)) * scale)
    w = _half(rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin))
    b = _half(rng.standard_normal(cout) * 0.1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = sum(np.einsum("nchw,kc->nkhw", xp[:, :, ky:ky + side, kx:kx + side],
                        w[:, :, ky, kx].astype(np.float64), optimize=True)
              for ky in range(3) for kx in range(3)) + b[None, :, None, None]
    dev = conv2d_host(rt, x, w, b, variant=variant, precision="fp16")[0]
    if variant == "im2col_gemm":
        kslice, k_step = k_walk(1, cout, cin * 9, side * side)
        sim = gemm_sim.gemm(w.reshape(1, cout, cin * 9), _im2col(x), arith=rt.arith, bias=b,
                            bias_mode=2, kslice=kslice, k_step=k_step
                            ).reshape(1, cout, side, side)
    else:
        m = int(variant[-1])
        sim = conv3x3(x, w, b, m, "fp16", arith=rt.arith)
    return ref, dev, sim


def run_case(rt, variant, shape, scale, seed=0):
    rng = np.random.default_rng(seed)
    if variant == "linear":
        return _linear(rt, rng, shape, scale)
    if variant == "scores":
        return _scores(rt, rng, shape, scale)
    return _conv(rt, rng, shape, scale, variant)


def compare(ref, dev, sim) -> dict:
    """Errors against float64 relative to the reference's rms (finite outputs only), device vs
    simulation agreement in half ulps, and non-finite outputs."""
    dev, sim = np.asarray(dev, np.float16), np.asarray(sim, np.float16)
    rms = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    fin = np.isfinite(dev.astype(np.float64)) & np.isfinite(ref)

    def err(a):
        e = np.abs(a.astype(np.float64) - ref)[fin]
        return (float(np.sqrt(np.mean(e ** 2))) / rms, float(e.max()) / rms) if e.size else (
            float("nan"), float("nan"))

    same = (dev.view(np.uint16) == sim.view(np.uint16)) | (np.isnan(dev) & np.isnan(sim))
    both = fin & np.isfinite(sim.astype(np.float64))
    ulps = np.abs(dev.view(np.int16).astype(np.int32) - sim.view(np.int16).astype(np.int32))[both]
    (drms, dmax), (srms, _) = err(dev), err(sim)
    return {"device_rel_rms": drms, "device_rel_max": dmax, "sim_rel_rms": srms,
            "bit_identical_pct": 100.0 * float(same.mean()),
            "max_ulp_diff": int(ulps.max()) if ulps.size else 0,
            "nonfinite": int((~np.isfinite(dev.astype(np.float64))).sum()),
            "max_abs_out": float(np.abs(ref).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", default="Intel",
                    help="OpenCL platform with cl_khr_fp16 (index or name substring)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring")
    ap.add_argument("--out", default=str(paths.REPORTS_DIR / "fp16-numerics"),
                    help="report stem (.md and .json)")
    args = ap.parse_args(argv)
    load_before = provenance.load()
    rows, overflow = [], []
    for arith in ARITHS:
        rt = Runtime(args.platform, args.cl_device, arith)
        for label, variant, shape in CASES:
            print(f"{arith:8s} {label}", file=sys.stderr)
            rows.append({"case": label, "variant": variant, "arith": arith,
                         **compare(*run_case(rt, variant, shape, 1.0))})
        for scale in SCALES:
            for label, variant, shape in (CASES[2], CASES[3], CASES[9]):
                r = compare(*run_case(rt, variant, shape, scale))
                overflow.append({"case": label, "input_scale": scale, "arith": arith,
                                 "max_abs_out": r["max_abs_out"], "nonfinite": r["nonfinite"],
                                 "device_rel_rms": r["device_rel_rms"],
                                 "bit_identical_pct": r["bit_identical_pct"]})
    device = rt.name
    date = provenance.now()
    command = "python benchmarks/fp16_numerics.py " + " ".join(shlex.quote(a) for a in
                                                               (argv or sys.argv[1:]))
    text = "\n".join([
        "# fp16 arithmetic on a half-precision device vs its NumPy simulation: the GEMM family",
        "",
        f"- Command: `{command.strip()}`",
        f"- Date: {date}, sdsim commit {provenance.commit()}; 1-minute load {load_before} "
        f"before, {provenance.load()} after (numerics only: load does not change them)",
        f"- OpenCL device: {device} (cl_khr_fp16), driver "
        f"{rt.device.driver_version.strip()}",
        "- Storage: fp16 everywhere (inputs, weights, bias, outputs). Arithmetic: `fp32` float "
        "multiply-add; `fp16` half products added into float accumulators; `fp16acc` half fma "
        "into half accumulators (opencl/gemm.cl ARITH). Simulation: sdsim/sim/gemm.py and "
        "sdsim/sim/winograd.py with the same rounding points (the Winograd transforms are "
        "float in both, summed in a different order).",
        "- Inputs: unit-normal activations, weights normal / sqrt(K) (unit-variance outputs), "
        "bias normal x 0.1, seed 0; SD1.4 layer shapes with output channels or tokens cut down, "
        "K (the rounding sum) the layer's own. Errors: against float64 on the same fp16 inputs, "
        "relative to the reference's rms; `bit_identical_pct`: device outputs equal to the "
        "simulation's bit for bit; `max_ulp_diff`: the largest difference in half ulps.",
        "",
        "## Error per variant and arithmetic",
        "",
        render_rows(rows, "markdown"),
        "",
        "## Overflow: activations scaled up",
        "",
        "Half's largest finite value is 65504. `nonfinite`: outputs that came out inf or NaN "
        "(stored fp16 outputs overflow in every arithmetic once |output| > 65504; half "
        "accumulators overflow as soon as a partial sum does).",
        "",
        render_rows(overflow, "markdown"),
        "",
    ])
    md, js = write_pair(args.out, text, {"command": command.strip(), "date": date,
                                        "device": device, "commit": provenance.commit(),
                                        "rows": rows, "overflow": overflow})
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
