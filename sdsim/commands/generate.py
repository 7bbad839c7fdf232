"""`sdsim generate`: text to image with the NumPy reference (a checkpoint, or seeded random weights)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from sdsim import atomic
from sdsim.errors import SdsimError
from sdsim.model.presets import PRESETS
from sdsim.output import FORMATS, dumps, render_rows
from sdsim.precision import ARITH_HELP, ARITHS
from sdsim.schemas import SCHEMA_VERSION

HELP = "generate an image with the NumPy reference model or the OpenCL kernels"
DESCRIPTION = (
    "Run Stable Diffusion text-to-image step for step as diffusers' StableDiffusionPipeline. "
    "--model is a diffusers folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/) or a "
    "single-file CompVis .safetensors; --random-weights runs a preset with seeded random weights "
    "instead (noise in, noise out, every op runs). --backend numpy (default) is the reference; "
    "--backend opencl runs the text encoder, every UNet call and the VAE decoder through the "
    "kernel plan of --opt on an OpenCL device, and prints each component's measured kernel and "
    "wall time, next to the cost model's prediction when --device names a profile; "
    "--backend sim runs the same kernel plan in NumPy, each op rounding where its kernels round "
    "in fp16 storage and --arith arithmetic (what a device with native half must compute; slow: "
    "for the tiny preset and small sizes), with the half exp and subnormal fma of the device "
    "--half-of names (default: Intel's OpenCL CPU runtime on an AMD EPYC host). "
    "--precision fp16 stores every op's output as float16 (NumPy: names the first op that "
    "overflows)."
)


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PATH|REPO",
                     help="diffusers folder, CompVis .safetensors file, or a repo id already in "
                          "the Hugging Face cache (e.g. CompVis/stable-diffusion-v1-4; never "
                          "downloaded)")
    src.add_argument("--random-weights", action="store_true",
                     help="seeded random weights for the --preset config, no checkpoint")
    p.add_argument("--preset", default="sd14",
                   help=f"model preset for --random-weights ({', '.join(PRESETS)})")
    p.add_argument("--variant", metavar="NAME", help="weight variant of a diffusers folder, "
                   "e.g. fp16 for *.fp16.safetensors (as diffusers' variant=)")
    p.add_argument("--no-ema", action="store_true", help="a CompVis checkpoint's non-EMA UNet "
                   "weights (default: its EMA weights when it has them, as the original scripts)")
    p.add_argument("--tokenizer", metavar="DIR", help="folder with vocab.json and merges.txt; "
                   "if not given, the model folder's tokenizer/")
    p.add_argument("--prompt", default="", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="text to steer away from")
    p.add_argument("--steps", type=int, default=20, help="inference steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--scheduler", default="pndm", choices=["pndm", "ddim", "euler", "dpmpp2m"],
                   help="diffusers' scheduler of that name (pndm makes steps+1 UNet calls)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (and random weights)")
    p.add_argument("--latents", metavar="FILE.npy", help="initial noise (1, 4, H/8, W/8) instead of --seed")
    p.add_argument("--height", type=int, help="image height in pixels (default: the model's "
                   "sample size, 512 for SD1.x); a multiple of 8, as in diffusers")
    p.add_argument("--width", type=int, help="image width in pixels (default as --height)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="storage precision of every op's output")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="progress on stderr: a line as each phase starts, a bar over the "
                        "denoising steps (default: only on a terminal, and not with --format "
                        "json)")
    p.add_argument("--out", required=True, metavar="IMAGE.png", help="output PNG")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="how to print the summary: table or markdown for reading, json (the "
                        "schema's object), or csv: the OpenCL timing rows (with --backend "
                        "numpy, one row for the image)")
    cl = p.add_argument_group("OpenCL backend")
    cl.add_argument("--backend", choices=("numpy", "opencl", "sim"), default="numpy",
                    help="numpy: the reference; opencl: the kernel plan on an OpenCL device; "
                         "sim: the kernel plan in NumPy with the kernels' fp16 rounding points")
    cl.add_argument("--platform", help="OpenCL platform index or name substring (default: the "
                    "first GPU, else PoCL)")
    cl.add_argument("--cl-device", help="OpenCL device index or name substring")
    cl.add_argument("--opt", default="paper",
                    help="optimization set (paper, none) or list of switch=value, as in predict")
    cl.add_argument("--arith", choices=tuple(ARITHS), help=ARITH_HELP + "; --backend sim: "
                    "default fp16")
    cl.add_argument("--tuning", choices=("gpu", "cpu"),
                    help="--backend sim: the kernel tiling it mirrors, the defaults of gpu "
                         "(default) or cpu devices (the order each kernel sums in); "
                         "--backend opencl runs its device's")
    cl.add_argument("--half-of", metavar="PLATFORM",
                    help="--backend sim: take the half exp and the subnormal fma rounding of "
                         "this OpenCL platform's cl_khr_fp16 device (index or name substring, "
                         "e.g. Intel; with --cl-device), read off it in about a second, so the "
                         "simulation mirrors that device bit for bit")
    cl.add_argument("--find-overflow", action="store_true",
                    help="read every op's output back to name the first op that gives inf/NaN "
                         "(as the NumPy backend does; slower wall time, kernel times unchanged)")
    cl.add_argument("--device", metavar="PROFILE",
                    help="device profile (name or YAML): print its prediction of the same calls "
                         "beside the measured times, and run the kernel builds it was tuned with")


def _load_latents(path):
    path = Path(path)
    if path.suffix != ".npy":
        raise SdsimError(f"{path}: --latents expects a .npy file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SdsimError(f"{path}: cannot read latents ({e})") from None
    if arr.dtype.kind != "f":
        raise SdsimError(f"{path}: latents must be floating point, not {arr.dtype}")
    return arr


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sdsim generate: warning: {message}", file=sys.stderr, flush=True)


def _opencl(sd, args, progress):
    """Move the pipeline's calls to the OpenCL device; the profile to predict with, if any."""
    from sdsim.cl.runtime import Runtime
    from sdsim.cost.profile import load_profile, measured_by, profile_warnings
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt

    opt = parse_opt(args.opt)
    profile = load_profile(args.device) if args.device else None
    if profile is not None:
        tuning.activate(tuning.for_profile(profile))
    progress.phase("opening the OpenCL device")
    rt = Runtime(args.platform, args.cl_device, args.arith)
    run = (rt.name, measured_by(rt)["api"])
    for warn in profile_warnings(profile, args.precision, run) if profile else ():
        warnings.warn(warn, stacklevel=1)
    sd.use_opencl(rt, opt, args.find_overflow, progress)
    return rt, profile


def _sim(sd, args):
    """Move the pipeline's calls to the NumPy simulation of the kernel plan; returns the half
    library it computes with (--half-of's device, or the default)."""
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt
    from sdsim.sim.half import HalfLibrary

    lib = HalfLibrary()
    if args.half_of is not None:
        from sdsim.cl.half_probe import probe
        lib = probe(args.half_of, args.cl_device)   # before tuning: a Runtime sets its device's
    tuning.activate(tuning.DEFAULTS[args.tuning or "gpu"])
    args.arith = args.arith or "fp16"
    sd.use_sim(parse_opt(args.opt), args.arith)
    return lib


def _check_args(args):
    if not args.out.lower().endswith(".png"):
        raise SdsimError(f"--out {args.out}: expected a .png file name")
    if args.steps < 1:
        raise SdsimError(f"--steps must be at least 1, got {args.steps}")
    for flag in ("platform", "device", "find_overflow"):
        if getattr(args, flag) not in (None, False) and args.backend != "opencl":
            raise SdsimError(f"--{flag.replace('_', '-')} applies to --backend opencl only")
    if args.cl_device is not None and args.backend == "numpy":
        raise SdsimError("--cl-device applies to --backend opencl (or sim, with --half-of)")
    if args.cl_device is not None and args.backend == "sim" and args.half_of is None:
        raise SdsimError("--cl-device with --backend sim names the --half-of device: add "
                         "--half-of PLATFORM")
    if args.half_of is not None and args.backend != "sim":
        raise SdsimError("--half-of applies to --backend sim only (--backend opencl computes "
                         "on the device itself)")
    if args.tuning and args.backend != "sim":
        raise SdsimError("--tuning applies to --backend sim only")
    if args.backend == "numpy" and (args.arith or args.opt != "paper"):
        raise SdsimError(f"--{'arith' if args.arith else 'opt'} applies to --backend opencl "
                         "or sim (the NumPy reference runs every op one way, in float)")
    if args.backend == "sim" and args.precision != "fp16":
        raise SdsimError("--backend sim simulates fp16 storage: add --precision fp16")


def run(args) -> int:
    from PIL import Image

    from sdsim.model.pipeline import StableDiffusion
    from sdsim.progress import Progress
    from sdsim.sim.half import HalfLibrary, library

    _check_args(args)
    auto = False if args.format == "json" else None   # None: on a terminal only
    progress = Progress(auto if args.progress is None else args.progress, "sdsim generate: ")
    latents = _load_latents(args.latents) if args.latents else None
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", message="Non-empty compiler output")  # PyOpenCL's
        if args.random_weights:
            if args.preset not in PRESETS:
                raise SdsimError(f"--preset {args.preset}: unknown; choose one of "
                                 f"{', '.join(PRESETS)}")
            if args.variant or args.no_ema:
                raise SdsimError("--variant and --no-ema choose checkpoint weights; they do not "
                                 "apply to --random-weights")
            progress.phase(f"making seeded random weights ({args.preset})")
            sd = StableDiffusion.random(args.preset, args.seed, args.precision)
        else:
            progress.phase(f"loading weights from {args.model}")
            sd = StableDiffusion.from_pretrained(args.model, args.precision, args.tokenizer,
                                                 args.variant, not args.no_ema)
        width = args.height if args.width is None else args.width   # square by default
        shape = sd.latent_shape(args.height, width)
        if latents is not None and tuple(latents.shape) != shape:
            raise SdsimError(f"{args.latents}: latents have shape {tuple(latents.shape)}, "
                             f"expected {shape} for a {shape[2] * sd.cfg.vae.downscale}x"
                             f"{shape[3] * sd.cfg.vae.downscale} image (set --height/--width)")
        rt = profile = None
        lib = HalfLibrary()
        if args.backend == "opencl":
            rt, profile = _opencl(sd, args, progress)
        elif args.backend == "sim":
            lib = _sim(sd, args)
        with library(lib):
            image = sd(args.prompt, args.negative_prompt, args.steps, args.guidance,
                       args.scheduler, args.seed, latents, args.height, width, progress=progress)
    with atomic.atomic_path(args.out) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    where = sd.nonfinite_report()
    times = []
    if rt is not None:
        from sdsim.backends.opencl.stages import time_rows

        times = time_rows(sd.stages, profile)
    if args.format == "json":
        print(dumps({"schema_version": SCHEMA_VERSION, "image": args.out,
                     "height": image.shape[0], "width": image.shape[1],
                     "backend": args.backend, "precision": args.precision,
                     "arith": rt.arith if rt else args.arith,
                     "opencl_device": rt.name if rt else None,
                     "half_library": lib.describe() if args.backend == "sim" else None,
                     "opt": None if args.backend == "numpy" else args.opt, "profile": profile.name if profile else None,
                     "weights": getattr(sd, "source", None), "nonfinite": where,
                     "times": times}))
        return 0
    if args.format == "csv":
        print(render_rows(times or [{"image": args.out, "height": image.shape[0],
                                     "width": image.shape[1], "backend": args.backend,
                                     "precision": args.precision, "nonfinite": where}], "csv"))
        return 0
    if getattr(sd, "source", None):
        print(f"weights: {sd.source['path']}"
              + (" (EMA UNet weights)" if sd.source["ema"] else ""))
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})"
          + (f"; first inf/NaN ({args.precision}): {where}" if where else ""))
    if rt is not None:
        print(f"{args.backend} on {rt.name}, {args.precision} storage, {rt.arith} arithmetic, "
              f"--opt {args.opt}" + (f", predicted with profile {profile.name}" if profile else ""))
        print(render_rows(times, args.format))
        print("kernel_s: sum of the dispatches' OpenCL event times; wall_s: host time per call "
              "(uploads, read-back; the first call also builds kernels and uploads weights)")
    elif args.backend == "sim":
        print(f"sim: the kernel plan of --opt {args.opt} in NumPy, fp16 storage, {args.arith} "
              f"arithmetic, {args.tuning or 'gpu'} tiling; "
              + (f"the half library of {args.half_of!r}: " if args.half_of else "")
              + lib.describe())
    return 0
