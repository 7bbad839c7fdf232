"""fp16 arithmetic on a real half-precision device, next to its NumPy simulation: every variant.

Runs each kernel variant (sdsim.kernels records) at SD1.4 layer shapes, cut down where a CPU
would take minutes (tokens or output channels fewer; a reduction's length, the sum that rounds,
the layer's own), with fp16 storage in each arithmetic (fp32: float; fp16: half operations, float
accumulators; fp16acc: half accumulators in the contractions too), on an OpenCL device with
cl_khr_fp16 (Intel's OpenCL CPU runtime by default), and through the variant's simulation
(Variant.simulate, sdsim/sim) on the same stored inputs. Per case and arithmetic: the device's and
the simulation's error against the variant's float64 reference, how many outputs are
bit-identical between device and simulation and the largest difference in half ulps, and outputs
that overflowed to inf or NaN. A second table scales the activations until half overflows.

Writes reports/fp16-numerics.md and .json.

    python benchmarks/fp16_numerics.py [--platform Intel] [--out reports/fp16-numerics]
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from sdsim import kernels, paths, provenance
from sdsim.cl.bench import BenchCase, stored_inputs
from sdsim.cl.runtime import Runtime
from sdsim.output import render_rows, write_pair
from sdsim.precision import ARITHS
from sdsim.cl.half_probe import probe
from sdsim.sim.half import library, ulps


def _conv(cin, cout, side, k=3):
    return dict(batch=1, cin=cin, cout=cout, h=side, w=side, k=k, stride=1, padding=k // 2)


def _attn(heads, nq, nk, d):
    return dict(batch=1, heads=heads, nq=nq, nk=nk, head_dim=d, causal=False)


def _gn(channels, side, act):
    return dict(batch=1, channels=channels, hw=side * side, groups=32, eps=1e-5, act=act)


#: (label, variant key, shape): SD1.4 layers, cut down where noted
CASES = [
    ("attn q/k/v proj 320->320, 256 tokens", "linear/tiled", dict(m=256, k=320, n=320)),
    ("cross-attn k/v proj 768->320, text", "linear/tiled", dict(m=77, k=768, n=320)),
    ("feed-forward out 1280->320, 256 tokens", "linear/tiled", dict(m=256, k=1280, n=320)),
    ("feed-forward out 5120->1280 (128 out), 8x8", "linear/tiled", dict(m=64, k=5120, n=128)),
    ("time embedding 1280->1280", "linear/tiled", dict(m=2, k=1280, n=1280)),
    ("CLIP MLP fc1 768->3072 (GELU epilogue), 77 tokens", "linear/tiled_gelu",
     dict(m=77, k=768, n=768)),
    ("self-attn d=40, 1024 tokens (of 4096)", "attention/naive", _attn(2, 1024, 1024, 40)),
    ("self-attn d=40, 1024 tokens (of 4096)", "attention/partial_softmax",
     _attn(2, 1024, 1024, 40)),
    ("self-attn d=40, 1024 tokens (of 4096)", "attention/flash", _attn(2, 1024, 1024, 40)),
    ("cross-attn d=160, 8x8 latent, 77 keys", "attention/naive", _attn(2, 64, 77, 160)),
    ("cross-attn d=160, 8x8 latent, 77 keys", "attention/partial_softmax", _attn(2, 64, 77, 160)),
    ("resnet conv 320->32, 32x32", "conv2d/direct", _conv(320, 32, 32)),
    ("resnet conv 320->32, 32x32", "conv2d/im2col_gemm", _conv(320, 32, 32)),
    ("resnet conv 320->32, 32x32", "conv2d/winograd_f2", _conv(320, 32, 32)),
    ("resnet conv 320->32, 32x32", "conv2d/winograd_f4", _conv(320, 32, 32)),
    ("resnet conv 320->32, 32x32", "conv2d/winograd_f6", _conv(320, 32, 32)),
    ("resnet conv 1280->32, 16x16", "conv2d/winograd_f4", _conv(1280, 32, 16)),
    ("VAE conv_out 128->3, 64x64", "conv2d/direct", _conv(128, 3, 64)),
    ("GroupNorm+SiLU 320 ch, 32x32", "group_norm/naive", _gn(320, 32, "silu")),
    ("GroupNorm+SiLU 320 ch, 32x32", "group_norm/fused", _gn(320, 32, "silu")),
    ("GroupNorm 512 ch, 64x64 (VAE)", "group_norm/fused", _gn(512, 64, None)),
    ("LayerNorm 320, 1024 tokens", "layer_norm/rowwise", dict(rows=1024, dim=320, eps=1e-5)),
    ("LayerNorm 768, CLIP 77 tokens", "layer_norm/rowwise", dict(rows=77, dim=768, eps=1e-5)),
    ("GEGLU 2x1280, 256 tokens", "gelu/geglu_fused", dict(tokens=256, dim=1280)),
    ("GEGLU 2x1280, 256 tokens", "gelu/standalone", dict(tokens=256, dim=1280)),
]
#: activation scales of the overflow table, on these cases
SCALES = (1, 16, 256, 2048)
OVERFLOW = [CASES[2], CASES[6], CASES[7], CASES[8], CASES[14], CASES[19], CASES[23]]


def run_case(rt, key, shape, lib, scale=1.0, seed=0):
    """(float64 reference, device output, simulation) of one variant at `shape`, the activation
    inputs times `scale`; the simulation with the device's half library `lib`."""
    record = kernels.get(*key.split("/"))
    inputs = record.make_inputs(shape, np.random.default_rng(seed))
    inputs["ins"] = [a * np.float32(scale) if a.dtype == np.float32 else a
                     for a in inputs["ins"]]
    ref = np.asarray(record.reference(shape, inputs, "fp16"), np.float64).reshape(-1)
    dev, _ = BenchCase(record, shape, "fp16").run(rt, inputs)
    with np.errstate(over="ignore", invalid="ignore"), library(lib):
        sim = record.simulate(shape, *stored_inputs(inputs, "fp16"), rt.arith)
    return ref, dev.reshape(-1), np.asarray(sim, np.float16).reshape(-1)


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
    d = ulps(dev, sim)
    (drms, dmax), (srms, _) = err(dev), err(sim)
    return {"device_rel_rms": drms, "device_rel_max": dmax, "sim_rel_rms": srms,
            "bit_identical_pct": 100.0 * float(same.mean()),
            "max_ulp_diff": int(d.max()) if d.size else 0,
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
    lib = probe(args.platform, args.cl_device)
    rows, overflow = [], []
    for arith in ARITHS:
        rt = Runtime(args.platform, args.cl_device, arith)
        for label, key, shape in CASES:
            print(f"{arith:8s} {key:26s} {label}", file=sys.stderr)
            rows.append({"case": label, "variant": key, "arith": arith,
                         **compare(*run_case(rt, key, shape, lib))})
        for scale in SCALES:
            for label, key, shape in OVERFLOW:
                r = compare(*run_case(rt, key, shape, lib, scale))
                overflow.append({"case": label, "variant": key, "input_scale": scale,
                                 "arith": arith, "max_abs_out": r["max_abs_out"],
                                 "nonfinite": r["nonfinite"],
                                 "device_rel_rms": r["device_rel_rms"],
                                 "bit_identical_pct": r["bit_identical_pct"]})
    device = rt.name
    date = provenance.now()
    command = "python benchmarks/fp16_numerics.py " + " ".join(shlex.quote(a) for a in
                                                               (argv or sys.argv[1:]))
    text = "\n".join([
        "# fp16 arithmetic on a half-precision device vs its NumPy simulation: every variant",
        "",
        f"- Command: `{command.strip()}`",
        f"- Date: {date}, sdsim commit {provenance.commit()}; 1-minute load {load_before} "
        f"before, {provenance.load()} after (numerics only: load does not change them)",
        f"- OpenCL device: {device} (cl_khr_fp16), driver "
        f"{rt.device.driver_version.strip()}",
        "- Storage: fp16 everywhere (inputs, weights, outputs). Arithmetic: `fp32` float; "
        "`fp16` half operations with float accumulators in the contractions (GEMM, "
        "convolutions, attention's products) and float statistics (softmax sums, norm means "
        "and variances); `fp16acc` half accumulators in the contractions too. What each kernel "
        "computes in half, and why some sums must stay float, is in the header of its "
        "opencl/*.cl file and its simulation's docstring (sdsim/sim). Simulation: "
        "Variant.simulate on the same stored inputs, with the device's half library "
        f"(sdsim.cl.half_probe: {lib.describe()}). The half builds (`fp16`, `fp16acc`) are "
        "mirrored rounding for rounding; `fp32` is not (the device may fuse multiply-adds, and "
        "the Winograd simulation's float transforms sum in another order), so its "
        "bit-identical share only says how close float arithmetic comes.",
        "- Inputs: each variant's own bench inputs (unit-scale activations, weights scaled for "
        "unit-variance outputs), seed 0, at SD1.4 layer shapes cut down as the case says. "
        "Errors: against the variant's float64 reference on the same fp16 inputs, relative to "
        "the reference's rms; `bit_identical_pct`: device outputs equal to the simulation's bit "
        "for bit; `max_ulp_diff`: the largest difference in half ulps (along the ordered half "
        "line: -0 and +0 are one point).",
        "",
        "## Error per variant and arithmetic",
        "",
        render_rows(rows, "markdown"),
        "",
        "## Overflow: activations scaled up",
        "",
        "Half's largest finite value is 65504. `nonfinite`: outputs that came out inf or NaN "
        "(a stored output overflows in every arithmetic once |output| > 65504; half "
        "intermediates overflow as soon as one does).",
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
