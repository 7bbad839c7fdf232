"""`sdsim generate`: text to image with the NumPy reference (a checkpoint, or seeded random weights)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from sdsim import atomic
from sdsim.errors import SdsimError

HELP = "generate an image with the NumPy reference model"
DESCRIPTION = (
    "Run Stable Diffusion text-to-image on the NumPy reference backend, step for step as diffusers' "
    "StableDiffusionPipeline. --model is a diffusers folder (unet/ vae/ text_encoder/ tokenizer/ "
    "scheduler/) or a single-file CompVis .safetensors; --random-weights runs the sd14 preset with "
    "seeded random weights instead (noise in, noise out, every op runs). --precision fp16 stores "
    "every op's output as float16 and names the first op that overflows."
)


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PATH", help="diffusers folder or CompVis .safetensors file")
    src.add_argument("--random-weights", action="store_true",
                     help="seeded random weights for the --preset config, no checkpoint")
    p.add_argument("--preset", default="sd14", help="model preset for --random-weights (sd14, tiny)")
    p.add_argument("--tokenizer", metavar="DIR", help="folder with vocab.json and merges.txt; "
                   "if not given, the model folder's tokenizer/")
    p.add_argument("--prompt", default="", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="text to steer away from")
    p.add_argument("--steps", type=int, default=20, help="inference steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--scheduler", default="pndm", choices=["pndm", "ddim", "euler", "dpmpp2m"])
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (and random weights)")
    p.add_argument("--latents", metavar="FILE.npy", help="initial noise (1, 4, H/8, W/8) instead of --seed")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="IMAGE.png", help="output PNG")


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


def run(args) -> int:
    from PIL import Image

    from sdsim.model.pipeline import StableDiffusion
    from sdsim.model.presets import PRESETS

    if not args.out.lower().endswith(".png"):
        raise SdsimError(f"--out {args.out}: expected a .png file name")
    if args.steps < 1:
        raise SdsimError(f"--steps must be at least 1, got {args.steps}")
    latents = _load_latents(args.latents) if args.latents else None
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        if args.random_weights:
            if args.preset not in PRESETS:
                raise SdsimError(f"--preset {args.preset}: unknown; choose one of {', '.join(PRESETS)}")
            sd = StableDiffusion.random(args.preset, args.seed, args.precision)
        else:
            sd = StableDiffusion.from_pretrained(args.model, args.precision, args.tokenizer)
        if latents is not None and tuple(latents.shape) != sd.latent_shape():
            raise SdsimError(f"{args.latents}: latents have shape {tuple(latents.shape)}, "
                             f"expected {sd.latent_shape()}")
        image = sd(args.prompt, args.negative_prompt, args.steps, args.guidance, args.scheduler,
                   args.seed, latents, progress=not args.no_progress)
    with atomic.atomic_path(args.out) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    where = sd.nonfinite_report()
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})"
          + (f"; first inf/NaN ({args.precision}): {where}" if where else ""))
    return 0
