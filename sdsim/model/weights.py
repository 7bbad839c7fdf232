"""Checkpoint weights: safetensors files memory-mapped (never copied, never unpickled).

A diffusers-layout folder has `unet/`, `vae/`, `text_encoder/`, each with `config.json` and one or
more `*.safetensors` (shards are merged). As in diffusers, `variant="fp16"` picks the
`*.fp16.safetensors` files (a component without them uses its plain ones; none at all is an
error); without a variant the plain files win and a variant is used only when it is alone.
Older diffusers files (SD1.x's published vae/ among them) name the VAE's mid-block attention
`query`/`key`/`value`/`proj_attn`; those are read for `to_q`/`to_k`/`to_v`/`to_out.0` when the
current names are absent, as diffusers does on load.
A single-file CompVis checkpoint (`*.safetensors` with the original key names) is mapped to the
diffusers names by sdsim.model.compvis, its UNet from the EMA copies when it has them
(`ema=False` picks the others); the unet ComponentWeights' `ema` says which were used.
The safetensors header is parsed here and each tensor is a NumPy view into one read-only
`np.memmap` of its file, so the OS pages weights in on use.
Every tensor a model needs is checked up front: a missing name, a wrong shape or dtype, or a file
shorter than its header says gives an SdsimError naming the tensor and the file.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sdsim.errors import SdsimError

COMPONENTS = ("text_encoder", "unet", "vae")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}
_FLOAT = ("F64", "F32", "F16", "BF16")
# transformers >= 5 saves CLIPTextModel without its "text_model." prefix; older files have it
_OPTIONAL_PREFIXES = ("text_model.",)
# diffusers < 0.14 named the VAE mid-block attention (its AttentionBlock) differently; SD1.x's
# published vae/ weights still do: current name -> older name, per component
_LEGACY_NAMES = {"vae": (("to_q.", "query."), ("to_k.", "key."), ("to_v.", "value."),
                         ("to_out.0.", "proj_attn."))}
_LEGACY_SCOPE = re.compile(r"(encoder|decoder)\.mid_block\.attentions\.\d+\.")


def refuse_pickle(path: Path):
    raise SdsimError(
        f"{path}: refusing to unpickle a {path.suffix} file (it can run arbitrary code); convert it "
        "to safetensors first, e.g. for a diffusers folder: python -c \"import diffusers; "
        "diffusers.StableDiffusionPipeline.from_pretrained('IN').save_pretrained('OUT', "
        "safe_serialization=True)\", or for a CompVis .ckpt: diffusers' "
        "scripts/convert_original_stable_diffusion_to_diffusers.py --checkpoint_path IN.ckpt "
        "--dump_path OUT --to_safetensors")


class SafetensorsFile:
    """One .safetensors file: its header, and tensors as views into a read-only memory map."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise SdsimError(f"{self.path}: truncated safetensors file (no header)")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise SdsimError(f"{self.path}: corrupt safetensors file (header of {n} bytes "
                                     f"in a {size}-byte file)")
                header = json.loads(f.read(n))
        except OSError as e:
            raise SdsimError(f"{self.path}: cannot read ({e.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SdsimError(f"{self.path}: corrupt safetensors file (bad JSON header)") from None
        if not isinstance(header, dict):
            raise SdsimError(f"{self.path}: corrupt safetensors file (header is not an object)")
        header.pop("__metadata__", None)
        self.header = header
        self._base = 8 + n
        self._data_size = size - self._base
        self._mm = None

    def keys(self):
        return self.header.keys()

    def tensor(self, name: str, key: str | None = None) -> np.ndarray:
        """The tensor stored under `key` (default `name`), checked; `name` is used in errors."""
        key = key or name
        info = self.header[key]
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            np_dtype = _DTYPES[dtype]
        except (KeyError, TypeError, ValueError):
            raise SdsimError(f"{self.path}: tensor {key!r} has a malformed header entry") from None
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * np.dtype(np_dtype).itemsize or begin < 0:
            raise SdsimError(f"{self.path}: tensor {key!r} ({dtype} {list(shape)}) has "
                             f"{end - begin} bytes of data")
        if end > self._data_size:
            raise SdsimError(f"{self.path}: truncated file, tensor {key!r} ends at byte "
                             f"{self._base + end} of {self._base + self._data_size}")
        if self._mm is None:
            self._mm = np.memmap(self.path, np.uint8, "r", offset=self._base,
                                 shape=(self._data_size,)) if self._data_size else np.zeros(0, np.uint8)
        arr = np.ndarray(shape, np_dtype, buffer=self._mm, offset=begin)
        if dtype == "BF16":  # NumPy has no bfloat16: widen to float32 (the only copy made)
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr

    def dtype_of(self, key: str) -> str:
        return self.header[key].get("dtype", "?")


def _linear_weight(array: np.ndarray) -> np.ndarray:
    """A linear weight stored as a 1x1 convolution ((C, C, 1) or (C, C, 1, 1)) as (C, C); other
    shapes are returned as they are (the shape check then names the tensor)."""
    if array.ndim > 2 and all(d == 1 for d in array.shape[2:]):
        return array.reshape(array.shape[:2])
    return array


class ComponentWeights(Mapping):
    """Diffusers parameter name -> array for one component, gathered from one or more files.

    `ema` is True when the arrays are the EMA copies of a CompVis checkpoint's UNet (`model_ema.*`),
    False otherwise (diffusers folders keep one set of weights).
    """

    def __init__(self, component: str, ema: bool = False):
        self.component = component
        self.ema = ema
        self._where: dict[str, tuple] = {}

    def add(self, f: SafetensorsFile, name: str, key: str | None = None, transform=None):
        """Tensor `key` of `f` is parameter `name`; `transform` (array -> array) fixes its layout."""
        self._where[name] = (f, key or name, transform)

    def file_of(self, name: str) -> Path:
        return self._where[name][0].path

    def files(self) -> list[Path]:
        return sorted({w[0].path for w in self._where.values()})

    def __getitem__(self, name):
        f, key, transform = self._where[name]
        arr = f.tensor(name, key)
        return arr if transform is None else transform(arr)

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)

    def _alias(self, name: str):
        """(other name, transform or None) that parameter `name` may be stored under: without its
        optional prefix, or the older diffusers name of a VAE attention tensor (whose weight may
        be a 1x1 convolution); None when there is none."""
        if name.startswith(_OPTIONAL_PREFIXES):
            return name.split(".", 1)[1], None
        m = _LEGACY_SCOPE.match(name)
        for new, old in _LEGACY_NAMES.get(self.component, ()) if m else ():
            if name.startswith(new, m.end()):
                other = name[:m.end()] + old + name[m.end() + len(new):]
                return other, _linear_weight if name.endswith(".weight") else None
        return None

    def check(self, module) -> dict[str, np.ndarray]:
        """Every Param of `module` resolved and checked: name -> array (memory-mapped views)."""
        out = {}
        files = ", ".join(str(p) for p in self.files()) or f"the {self.component} weights"
        for name, p in module.named_params():
            alias = None if name in self._where else self._alias(name)
            if alias and alias[0] in self._where:
                f, key, transform = self._where[alias[0]]
                self._where[name] = (f, key, alias[1] or transform)
            if name not in self._where:
                also = f", nor {alias[0]!r}" if alias else ""
                raise SdsimError(f"{files}: missing tensor {name!r} ({self.component}, shape "
                                 f"{list(p.shape)}){also}")
            f, key, _ = self._where[name]
            if f.dtype_of(key) not in _FLOAT:
                raise SdsimError(f"{f.path}: tensor {key!r} has dtype {f.dtype_of(key)}, "
                                 "expected a float type (F32, F16, BF16)")
            try:
                arr = self[name]
            except SdsimError as e:
                if str(e).startswith(str(f.path)):  # already names the file
                    raise
                raise SdsimError(f"{f.path}: {e}") from None
            if tuple(arr.shape) != p.shape:
                raise SdsimError(f"{f.path}: tensor {key!r} has shape {list(arr.shape)}, "
                                 f"expected {list(p.shape)} for {self.component} {name!r}")
            out[name] = arr
        return out


def _variant_of(f: Path):
    """'fp16' for model.fp16.safetensors or model.fp16-00001-of-00002.safetensors, else None."""
    parts = f.name[:-len(".safetensors")].split(".", 1)
    return re.sub(r"-\d+-of-\d+$", "", parts[1]) if len(parts) > 1 else None


def _by_variant(folder: Path) -> dict[str | None, list[Path]]:
    """The *.safetensors files of a component folder by variant (None: the plain files)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = [f for f in sorted(folder.iterdir()) if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            refuse_pickle(pickles[0])
        raise SdsimError(f"{folder}: no *.safetensors weights")
    out: dict[str | None, list[Path]] = {}
    for f in files:
        out.setdefault(_variant_of(f), []).append(f)
    return out


def _describe(variants) -> str:
    return ", ".join(sorted(f"{v!r} (*.{v}.safetensors)" if v else "plain (*.safetensors)"
                            for v in variants))


def _component_files(folder: Path, variant: str | None) -> list[Path]:
    """The files to read in `folder`: the asked variant's (an error when absent), else the plain
    ones, else those of the only variant there is (e.g. fp16 alone)."""
    by_variant = _by_variant(folder)
    if variant is not None:
        if variant not in by_variant:
            raise SdsimError(f"{folder}: no weights of variant {variant!r} "
                             f"(*.{variant}.safetensors); present: {_describe(by_variant)}")
        return by_variant[variant]
    if None in by_variant:
        return by_variant[None]
    if len(by_variant) == 1:
        return next(iter(by_variant.values()))
    raise SdsimError(f"{folder}: several weight variants, choose one: {_describe(by_variant)}")


def load_component(folder, variant: str | None = None) -> ComponentWeights:
    """The weights in one component folder (e.g. a model's unet/), shards merged."""
    folder = Path(folder)
    cw = ComponentWeights(folder.name)
    for fpath in _component_files(folder, variant):
        f = SafetensorsFile(fpath)
        for key in f.keys():
            cw.add(f, key)
    return cw


def load_folder(path, variant: str | None = None) -> dict[str, ComponentWeights]:
    """The weights of a diffusers-layout folder, one ComponentWeights per component.

    As diffusers' pipelines do, a `variant` is an error only when no component has it; a
    component without it uses its plain files (see each ComponentWeights' files()).
    """
    path = Path(path)
    for comp in COMPONENTS:
        if not (path / comp).is_dir():
            raise SdsimError(f"{path}: missing folder {comp}/ (expected a diffusers-layout folder)")
    found = {comp: set(_by_variant(path / comp)) for comp in COMPONENTS}
    if variant is not None and not any(variant in v for v in found.values()):
        raise SdsimError(f"{path}: no weights of variant {variant!r} (*.{variant}.safetensors) in "
                         f"{', '.join(c + '/' for c in COMPONENTS)}; present: "
                         f"{_describe(set().union(*found.values()))}")
    return {comp: load_component(path / comp, variant if variant in found[comp] else None)
            for comp in COMPONENTS}


def load_single_file(path, ema: bool = True) -> dict[str, ComponentWeights]:
    """A CompVis-named single .safetensors checkpoint, split into components by diffusers name.

    The UNet comes from the file's EMA copies (`model_ema.*`) when it has them and `ema` is True,
    as the original CompVis scripts do; `result["unet"].ema` says whether they were used.
    """
    from sdsim.model.compvis import EMA_PREFIX, compvis_to_diffusers

    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path)
    f = SafetensorsFile(path)
    try:
        mapping = compvis_to_diffusers(list(f.keys()), ema)
    except SdsimError as e:
        raise SdsimError(f"{path}: {e}") from None
    out = {comp: ComponentWeights(comp) for comp in COMPONENTS}
    for comp, names in mapping.items():
        for name, src in names.items():
            out[comp].add(f, name, src.key, src.apply if src.reshape else None)
    out["unet"].ema = any(src.key.startswith(EMA_PREFIX) for src in mapping["unet"].values())
    return out


def load_weights(path, variant: str | None = None, ema: bool = True) -> dict[str, ComponentWeights]:
    """Weights of a diffusers folder (`variant`, e.g. "fp16", picks its *.fp16.safetensors) or
    of a single-file CompVis .safetensors checkpoint (`ema` picks its EMA UNet when present)."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path, variant)
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path)
    if not path.exists():
        raise SdsimError(f"{path}: no such file or folder")
    if path.suffix != ".safetensors":
        raise SdsimError(f"{path}: expected a diffusers folder or a .safetensors checkpoint")
    if variant is not None:
        raise SdsimError(f"{path}: a single-file checkpoint has no variants (variant {variant!r} "
                         "picks files in a diffusers folder)")
    return load_single_file(path, ema)


class RandomWeights(Mapping):
    """Seeded random weights for a module, generated per tensor on first use (then kept).

    Each tensor's values depend only on the seed and its name, so they do not change when the
    model or the order of access changes. Norm scales are 1, biases 0, other weights N(0, 1/fan_in)
    so activations keep a sane range through the whole network.
    """

    def __init__(self, module, seed: int = 0):
        self._params = dict(module.named_params())
        self.seed = int(seed)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name):
        arr = self._cache.get(name)
        if arr is None:
            shape = self._params[name].shape
            if name.endswith(".bias"):
                arr = np.zeros(shape, np.float32)
            elif len(shape) == 1:
                arr = np.ones(shape, np.float32)
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 2 or "embedding" not in name else 1
                rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
                arr = rng.standard_normal(shape, dtype=np.float32)
                arr *= np.float32(1.0 / np.sqrt(fan_in))
            self._cache[name] = arr
        return arr

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)
