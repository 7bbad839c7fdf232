"""One text-to-image run through the OpenCL kernel plan and through the NumPy reference, same image?

Both runs use the same model (a preset with seeded random weights, or a checkpoint), the same
prompt, seed, scheduler and steps, in one process. The OpenCL run executes the text encoder,
every UNet call and the VAE decoder through the kernel plan of `--opt` on the chosen device
(`sdsim generate --backend opencl`); the report gives the max and mean pixel difference between
the two images, the OpenCL run's kernel time (sum of OpenCL event durations) and wall time per
component, the cost model's prediction of the same calls with `--device`'s profile, and the NumPy
run's wall time.

    PYTHONPATH=$PWD python3 benchmarks/generate_opencl_vs_numpy.py --platform NVIDIA \\
        --device nvidia-h200-opencl --name nvidia-h200-512
    python benchmarks/generate_opencl_vs_numpy.py --size 256 --steps 2 --device pocl-cpu \\
        --name pocl-cpu-256
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    import numpy as np

    from sdsim import provenance
    from sdsim.cl.runtime import Runtime
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt
    from sdsim.model.pipeline import StableDiffusion
    from tabulate import tabulate
    from sdsim.backends.opencl.stages import time_rows

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", default="sd14", help="preset with seeded random weights")
    src.add_argument("--model", help="diffusers folder or CompVis .safetensors instead")
    ap.add_argument("--size", type=int, help="image height and width (default: the model's)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--scheduler", default="pndm")
    ap.add_argument("--prompt", default="a photograph of an astronaut riding a horse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opt", default="paper")
    ap.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--platform")
    ap.add_argument("--cl-device")
    ap.add_argument("--arith")
    ap.add_argument("--device", help="profile whose prediction is set beside the OpenCL times")
    ap.add_argument("--name", required=True, help="report name: reports/generate-NAME.md")
    args = ap.parse_args()

    warnings.filterwarnings("ignore", message="Non-empty compiler output")
    warnings.filterwarnings("ignore", message="random weights and no tokenizer")

    def make():
        if args.model:
            return StableDiffusion.from_pretrained(args.model, args.precision)
        return StableDiffusion.random(args.preset, args.seed, args.precision)

    def generate(sd):
        t0 = time.perf_counter()
        img = sd(args.prompt, "", args.steps, 7.5, args.scheduler, args.seed, None, args.size,
                 args.size)
        return img, time.perf_counter() - t0

    profile = load_profile(args.device) if args.device else None
    if profile is not None:
        tuning.activate(tuning.for_profile(profile))
    rt = Runtime(args.platform, args.cl_device, args.arith)
    load_before = provenance.load()
    sd_cl = make()
    sd_cl.use_opencl(rt, parse_opt(args.opt))
    img_cl, wall_cl = generate(sd_cl)
    times = time_rows(sd_cl.stages, profile)
    load_opencl = provenance.load()
    nonfinite_cl = sd_cl.nonfinite_report()
    del sd_cl
    sd_np = make()
    img_np, wall_np = generate(sd_np)
    nonfinite_np = sd_np.nonfinite_report()
    diff = np.abs(img_cl.astype(int) - img_np.astype(int))
    result = {
        "command": "python benchmarks/generate_opencl_vs_numpy.py "
                   + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": provenance.now(),
        "commit": provenance.commit(), "host": f"{platform.node()} ({platform.machine()})",
        "load_before": load_before, "load_after_opencl": load_opencl,
        "load_after": provenance.load(),
        "opencl_device": rt.name, "driver": rt.device.driver_version,
        "model": args.model or f"{args.preset} (seeded random weights, seed {args.seed})",
        "image": f"{img_np.shape[1]}x{img_np.shape[0]}", "steps": args.steps,
        "scheduler": args.scheduler, "opt": args.opt, "precision": args.precision,
        "arith": rt.arith, "profile": profile.name if profile else None,
        "max_pixel_diff": int(diff.max()), "mean_pixel_diff": float(diff.mean()),
        "pixels_over_2": int((diff > 2).sum()), "pixels": int(diff.size),
        "image_std": float(img_np.std()),
        "nonfinite_opencl": nonfinite_cl, "nonfinite_numpy": nonfinite_np,
        "opencl_wall_s": wall_cl, "numpy_wall_s": wall_np, "opencl_times": times,
    }
    out = ROOT / "reports" / f"generate-{args.name}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = tabulate(times, headers="keys", tablefmt="github", floatfmt=".4g")
    md = f"""# Text to image through the OpenCL kernel plan vs the NumPy reference: {args.name}

Command: `{result['command']}`
Date: {result['date']}; commit {result['commit']}; host {result['host']}; load average
(1 min) {load_before} before the OpenCL run, {load_opencl} after it, {result['load_after']} after
the NumPy run (its own threads).
OpenCL device: {rt.name} (driver {result['driver']}); {args.precision} storage, {rt.arith}
arithmetic; `--opt {args.opt}`.
Model: {result['model']}; {result['image']}, {args.steps} steps of {args.scheduler}, guidance 7.5,
prompt "{args.prompt}".

## Same image?

| max pixel difference | mean | pixels differing by more than 2/255 | image std (NumPy) |
|---|---|---|---|
| {result['max_pixel_diff']}/255 | {result['mean_pixel_diff']:.4f}/255 | {result['pixels_over_2']} of {result['pixels']} | {result['image_std']:.1f} |

inf/NaN: OpenCL {nonfinite_cl or 'none'}; NumPy {nonfinite_np or 'none'}.

## Time

OpenCL run: {wall_cl:.2f} s wall in total (host loop, uploads and read-backs included; the first
call of each component also builds its kernels and uploads its weights). NumPy reference:
{wall_np:.2f} s wall on the host CPU.

Per component on the OpenCL device (kernel_s: sum of the dispatches' OpenCL event times;
predicted_s: the cost model with profile `{result['profile']}` for the same calls and plan;
error_pct: predicted against kernel time):

{table}

A component called once (the text encoder, the VAE decoder) is timed on its first call only,
into buffers just allocated; the profile predicts a warmed call, as `sdsim validate` measures
after its warm-up. Where a first call costs more (a CPU device mapping memory on first use), it
shows here as an under-prediction.
"""
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
