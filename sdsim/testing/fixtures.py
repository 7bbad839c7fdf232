"""Small, valid inputs written to disk for tests that run the real CLI: a diffusers-layout folder
of the `tiny` preset with seeded random weights, a byte-level CLIP tokenizer folder, and a copy of
a shipped device profile. Tests then break one thing at a time (see tests/test_bad_inputs.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from sdsim.model.components import FOLDERS
from sdsim.model.tokenizer import bytes_to_unicode


def component_modules(preset: str = "tiny") -> dict:
    """The sdsim modules of each component of `preset`, keyed by diffusers folder name."""
    from sdsim.model.presets import PRESETS

    cfg = PRESETS[preset]
    return {name: folder.build(cfg) for name, folder in FOLDERS.items()}


def _config_json(cfg) -> dict:
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    if "heads" in d:  # the UNet's heads per block are diffusers' attention_head_dim
        d["attention_head_dim"] = d.pop("heads")
    for k, v in d.items():  # a per-block value that is the same for every block, as one number
        if k.endswith("_per_block") and isinstance(v, list) and len(set(v)) == 1:
            d[k] = v[0]
    return d


def write_tiny_model(root, preset: str = "tiny", seed: int = 0, tokenizer: bool = True) -> Path:
    """A diffusers-layout folder of `preset` (config.json + safetensors per component)."""
    from safetensors.numpy import save_file

    from sdsim.model.presets import PRESETS
    from sdsim.model.weights import RandomWeights

    root = Path(root)
    cfg = PRESETS[preset]
    for comp, module in component_modules(preset).items():
        folder = FOLDERS[comp]
        (root / comp).mkdir(parents=True, exist_ok=True)
        (root / comp / "config.json").write_text(json.dumps(_config_json(folder.config(cfg))))
        w = RandomWeights(module, seed)
        save_file({name: np.ascontiguousarray(w[name]) for name in w},
                  str(root / comp / folder.weights_file))
    if tokenizer:
        write_byte_tokenizer(root / "tokenizer")
    return root


def write_byte_tokenizer(folder) -> Path:
    """A CLIP tokenizer folder with no merges: every byte is a token (ids < 514), so a prompt of
    n ASCII characters without spaces is n + 2 tokens long."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def h100_profile_with(tmp_path, key: str, section: dict | None, name: str):
    """The shipped H100 profile read back with its fp16 coefficient set's `key` section set to
    `section` (none: removed from every set): a sequence term on one precision only."""
    import copy

    import yaml

    from sdsim.cost.profile import read_profile
    from sdsim.paths import PROFILES_DIR

    base = yaml.safe_load((PROFILES_DIR / "nvidia-h100-opencl.yaml").read_text())
    sets = {s["precision"]: k for k in ("coefficients", "coefficients_fp16", "coefficients_fp32")
            if (s := base.get(k))}
    d = copy.deepcopy(base)
    for k in sets.values():
        d[k].pop(key, None)
    if section is not None:
        d[sets["fp16"]][key] = section
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(d))
    return read_profile(path)
