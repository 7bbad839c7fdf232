"""Text to image on the NumPy backend, step for step as diffusers' StableDiffusionPipeline.

Tokenize the prompt and the negative prompt, encode both with CLIP, run the scheduler loop with
classifier-free guidance (the UNet sees the batch [negative, prompt]), decode latents / scaling
factor with the VAE, and map [-1, 1] to uint8 the way diffusers does ((x/2 + 0.5) clipped, *255,
rounded). Same seed (or same `latents`), same bits out.
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import numpy as np

from sdsim.backends.numpy_backend import NumpyBackend
from sdsim.backends.trace import check_size
from sdsim.errors import SdsimError
from sdsim.model.components import FOLDERS
from sdsim.model.config import ModelConfig
from sdsim.model.hub import resolve_model
from sdsim.model.presets import PRESETS, load_model_config
from sdsim.model.schedulers import make_scheduler
from sdsim.model.tokenizer import ClipTokenizer
from sdsim.model.weights import RandomWeights, load_weights
from sdsim.progress import Progress


class FallbackTokenizer:
    """Deterministic stand-in ids when no tokenizer files exist (random-weight runs only):
    start token, one id per lower-cased word (CRC32 mod the vocabulary), end token, end-padding."""

    def __init__(self, vocab_size: int, length: int = 77):
        self.bos, self.eos, self.length = vocab_size - 2, vocab_size - 1, length
        self.vocab = vocab_size - 2

    def __call__(self, text: str) -> np.ndarray:
        words = [zlib.crc32(w.encode()) % self.vocab for w in text.lower().split()]
        ids = [self.bos] + words[:self.length - 2] + [self.eos]
        return np.array(ids + [self.eos] * (self.length - len(ids)), np.int64)


class NumpyStages:
    """The three calls of a text-to-image run on the NumPy reference backend."""

    name = "numpy"

    def __init__(self, models: dict, params: dict, precision: str):
        self.models = models
        self.F = {comp: NumpyBackend(params[comp], precision) for comp in models}

    def text_encoder(self, ids: np.ndarray) -> np.ndarray:
        return self.models["text_encoder"](self.F["text_encoder"], ids)

    def unet(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        F = self.F["unet"]
        return self.models["unet"](F, F.input(x), t, context).astype(np.float32)

    def vae_decoder(self, z: np.ndarray) -> np.ndarray:
        F = self.F["vae"]
        return self.models["vae"].decode(F, F.input(z)).astype(np.float32)

    def nonfinite_report(self) -> str | None:
        """Where the first inf/NaN appeared (component, op, scope), if anywhere."""
        for comp, F in self.F.items():
            if F.first_nonfinite:
                op, scope = F.first_nonfinite
                return f"{comp}: {op} in {scope or '<top>'}"
        return None


class StableDiffusion:
    """The three components bound to their weights, ready to generate images.

    The calls run on NumPy by default; `use_opencl` moves them to an OpenCL device through the
    kernel plan (sdsim.backends.opencl.stages), the rest of the loop stays the same."""

    def __init__(self, cfg: ModelConfig, weights: dict, tokenizer, scheduler_config: dict | None,
                 precision: str = "fp32"):
        self.cfg = cfg
        self.precision = precision
        models = {name: folder.build(cfg) for name, folder in FOLDERS.items()}
        self.text_encoder, self.unet, self.vae = (models["text_encoder"], models["unet"],
                                                  models["vae"])
        self.tokenizer = tokenizer
        self.scheduler_config = scheduler_config
        self.params = {}
        for comp, module in models.items():
            w = weights[comp]
            self.params[comp] = w.check(module) if hasattr(w, "check") else w
        self.stages = NumpyStages(models, self.params, precision)

    def use_opencl(self, rt, opt, watch: bool = False, progress: Progress | None = None) -> None:
        """Run the text encoder, the UNet and the VAE decoder on `rt` with the plan of `opt`;
        `watch` reads every op's output back to name the first one holding inf/NaN; `progress`
        says when a component's kernels are built and its weights uploaded."""
        from sdsim.backends.opencl.stages import OpenCLStages

        self.stages = OpenCLStages(rt, self.cfg, self.params, opt, self.precision, watch,
                                   progress)

    def use_sim(self, opt, arith: str = "fp16") -> None:
        """Run the three components through the plan of `opt` in NumPy, each op rounding where
        its kernels round at fp16 storage in `arith` (sdsim.backends.simulate)."""
        from sdsim.backends.simulate import SimStages

        if self.precision != "fp16":
            raise SdsimError("the kernel-plan simulation is of fp16 storage: load the model "
                             "with precision fp16")
        self.stages = SimStages(self.cfg, self.params, opt, arith)

    @classmethod
    def from_pretrained(cls, path, precision="fp32", tokenizer_path=None,
                        variant: str | None = None, ema: bool = True) -> "StableDiffusion":
        """A diffusers folder, a single-file CompVis .safetensors (SD1.4 config), or a repo id
        already in the Hugging Face cache; `variant` ("fp16") picks a folder's variant files,
        `ema` a CompVis file's EMA UNet weights when it has them."""
        path = resolve_model(path)
        weights = load_weights(path, variant, ema)
        cfg = load_model_config(str(path)) if path.is_dir() else PRESETS["sd14"]
        tok_dir = Path(tokenizer_path) if tokenizer_path else path / "tokenizer"
        if tokenizer_path and not tok_dir.is_dir():
            raise SdsimError(f"{tok_dir}: no such tokenizer folder (expected vocab.json and "
                             "merges.txt, or tokenizer.json)")
        if tok_dir.is_dir():
            tokenizer = ClipTokenizer.from_folder(tok_dir)
        else:
            tokenizer = FallbackTokenizer(cfg.text_encoder.vocab_size)
            warnings.warn(f"no tokenizer files at {tok_dir}: prompts use stand-in token ids, so the "
                          "image does not follow the prompt (give --tokenizer DIR)", stacklevel=2)
        sched_file = path / "scheduler" / "scheduler_config.json"
        sched = None
        if sched_file.is_file():
            try:
                sched = json.loads(sched_file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SdsimError(f"{sched_file}: cannot read JSON ({e})") from None
        sd = cls(cfg, weights, tokenizer, sched, precision)
        sd.source = {"path": str(path), "ema": bool(getattr(weights["unet"], "ema", False)),
                     "files": sorted({str(f) for w in weights.values() for f in w.files()})}
        return sd

    @classmethod
    def random(cls, preset="sd14", seed=0, precision="fp32") -> "StableDiffusion":
        """Seeded random weights, no checkpoint and no tokenizer files (noise in, noise out)."""
        cfg = PRESETS[preset]
        warnings.warn("random weights and no tokenizer: prompts use stand-in token ids",
                      stacklevel=2)
        weights = {name: RandomWeights(folder.build(cfg), seed) for name, folder in FOLDERS.items()}
        return cls(cfg, weights, FallbackTokenizer(cfg.text_encoder.vocab_size), None, precision)

    # --- the stages --------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> np.ndarray:
        ids = np.concatenate([np.atleast_2d(self.tokenizer(p)).astype(np.int64) for p in prompts])
        return self.stages.text_encoder(ids)

    def latent_shape(self, height: int | None = None, width: int | None = None) -> tuple:
        """(1, C, H/8, W/8); the size defaults to the UNet's sample_size in pixels, and must be
        a multiple of the VAE factor (odd latents included: the UNet rounds up on the way down
        and crops on the way up, on every backend)."""
        f = self.cfg.vae.downscale
        height = self.cfg.unet.sample_size * f if height is None else height
        width = self.cfg.unet.sample_size * f if width is None else width
        check_size(self.cfg, height, width)
        return (1, self.cfg.unet.in_channels, height // f, width // f)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents to uint8 images (B, H, W, 3)."""
        x = self.stages.vae_decoder(latents / np.float32(self.cfg.vae.scaling_factor))
        x = np.clip(x / 2 + 0.5, 0, 1)
        return (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)

    def __call__(self, prompt: str, negative_prompt: str = "", steps: int = 20,
                 guidance: float = 7.5, scheduler: str = "pndm", seed: int = 0,
                 latents: np.ndarray | None = None, height: int | None = None,
                 width: int | None = None, progress: Progress | bool = True) -> np.ndarray:
        """One image for `prompt`: uint8 (H, W, 3). `progress` reports each phase on stderr (a
        Progress, or True: when stderr is a terminal; False: never)."""
        if not isinstance(progress, Progress):
            progress = Progress(None if progress else False)
        shape = self.latent_shape(height, width)
        sched = make_scheduler(scheduler, self.scheduler_config)
        sched.set_timesteps(steps)
        if latents is None:
            latents = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        elif tuple(latents.shape) != shape:
            raise SdsimError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        latents = latents.astype(np.float32) * np.float32(sched.init_noise_sigma)
        cfg_guidance = guidance > 1.0
        progress.phase("encoding the prompt (text encoder)")
        text = self.encode_prompt([negative_prompt, prompt] if cfg_guidance else [prompt])
        progress.phase(f"denoising: {len(sched.timesteps)} UNet calls ({scheduler})")
        for t in progress.bar(sched.timesteps, desc="denoising", unit="step"):
            x = np.concatenate([latents] * 2) if cfg_guidance else latents
            x = sched.scale_model_input(x, t)
            tt = np.full(x.shape[0], t, dtype=np.float32)
            noise = self.stages.unet(x, tt, text)
            if cfg_guidance:
                uncond, cond = noise[:1], noise[1:]
                noise = uncond + np.float32(guidance) * (cond - uncond)
            latents = sched.step(noise, t, latents)
        progress.phase("decoding the latents (VAE decoder)")
        return self.decode(latents)[0]

    def nonfinite_report(self) -> str | None:
        """Where the first inf/NaN appeared (component, and op where the backend tracks it)."""
        return self.stages.nonfinite_report()
