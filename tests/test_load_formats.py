"""Checkpoints as users have them, each made here from the `tiny` preset's seeded random weights:
older diffusers VAE attention names, fp16 variant files, text encoders with and without the
`text_model.` level, CompVis single files with and without EMA weights, and the Hugging Face
cache's snapshot folders of symlinks into blobs/."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_compvis import unet_to_ldm, vae_to_ldm

from sdsim.errors import SdsimError
from sdsim.model.components import FOLDERS
from sdsim.model.compvis import ema_key
from sdsim.model.hub import resolve_model
from sdsim.model.weights import (
    RandomWeights,
    load_component,
    load_single_file,
    load_weights,
)
from sdsim.testing.fixtures import component_modules, write_tiny_model

ATTN = "mid_block.attentions.0."
LEGACY = {"to_q.": "query.", "to_k.": "key.", "to_v.": "value.", "to_out.0.": "proj_attn."}


@pytest.fixture(scope="module")
def modules():
    return component_modules("tiny")


@pytest.fixture
def model(tmp_path):
    return write_tiny_model(tmp_path / "model", tokenizer=False)


def weights_file(root, comp, variant=None):
    name = FOLDERS[comp].weights_file
    return root / comp / (name.replace(".safetensors", f".{variant}.safetensors") if variant else name)


def rewrite(path, change):
    """Replace the safetensors file at `path` with `change(tensors)`."""
    save_file(change(load_file(str(path))), str(path))


def assert_loaded(weights, modules, seeds=None):
    """Every component checks against its module and equals the fixture's seeded values."""
    for comp, module in modules.items():
        got = weights[comp].check(module)
        want = RandomWeights(module, (seeds or {}).get(comp, 0))
        assert set(got) == set(want), comp
        for name, arr in got.items():
            np.testing.assert_array_equal(arr, want[name], err_msg=f"{comp} {name}")


# --- older diffusers names of the VAE attention ---------------------------------------------

def legacy_vae(t, conv=True):
    """query/key/value/proj_attn names; with `conv`, the decoder's weights as 1x1 convs (4-D,
    proj_attn 3-D: the layout diffusers' conv_attn_to_linear squeezes)."""
    out = {}
    for name, arr in t.items():
        for new, old in LEGACY.items():
            if ATTN + new in name:
                name = name.replace(ATTN + new, ATTN + old)
                if conv and name.startswith("decoder.") and name.endswith(".weight"):
                    arr = arr[:, :, None] if old == "proj_attn." else arr[:, :, None, None]
        out[name] = np.ascontiguousarray(arr)
    return out


def test_legacy_vae_attention_names(model, modules):
    rewrite(weights_file(model, "vae"), legacy_vae)
    keys = load_file(str(weights_file(model, "vae")))
    assert "encoder.mid_block.attentions.0.query.weight" in keys and not any("to_q" in k for k in keys)
    assert keys["decoder.mid_block.attentions.0.key.weight"].ndim == 4
    assert_loaded(load_weights(model), modules)


def test_legacy_vae_missing_tensor_names_both_names(model, modules):
    rewrite(weights_file(model, "vae"), lambda t: {k: v for k, v in legacy_vae(t).items()
                                                    if k != "encoder.mid_block.attentions.0.value.bias"})
    with pytest.raises(SdsimError, match=r"vae/diffusion_pytorch_model\.safetensors: missing tensor "
                                         r"'encoder\.mid_block\.attentions\.0\.to_v\.bias'.*"
                                         r"nor 'encoder\.mid_block\.attentions\.0\.value\.bias'"):
        load_weights(model)["vae"].check(modules["vae"])


@pytest.mark.crosscheck
def test_legacy_vae_loads_as_in_diffusers(model, modules):
    """diffusers' AutoencoderKL.from_pretrained reads the same legacy file to the same tensors."""
    pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    rewrite(weights_file(model, "vae"), lambda t: legacy_vae(t, conv=False))  # diffusers: 2-D only
    theirs = diffusers.AutoencoderKL.from_pretrained(str(model / "vae")).state_dict()
    ours = load_weights(model)["vae"].check(modules["vae"])
    assert set(theirs) == set(ours)
    for name, arr in ours.items():
        np.testing.assert_array_equal(arr, theirs[name].numpy(), err_msg=name)


# --- fp16 variants ----------------------------------------------------------------------------

def add_fp16(root, keep_plain=True):
    for comp in FOLDERS:
        plain = weights_file(root, comp)
        save_file({k: v.astype(np.float16) for k, v in load_file(str(plain)).items()},
                  str(weights_file(root, comp, "fp16")))
        if not keep_plain:
            plain.unlink()


def test_plain_files_win_without_variant_and_fp16_with_it(model, modules):
    add_fp16(model)
    plain = load_weights(model)
    assert_loaded(plain, modules)
    half = load_weights(model, variant="fp16")
    for comp, module in modules.items():
        assert half[comp].files() == [weights_file(model, comp, "fp16")]
        got, want = half[comp].check(module), RandomWeights(module, 0)
        for name, arr in got.items():
            assert arr.dtype == np.float16
            np.testing.assert_array_equal(arr, want[name].astype(np.float16), err_msg=name)


def test_fp16_only_folder_is_used_without_variant(model, modules):
    add_fp16(model, keep_plain=False)
    w = load_weights(model)
    assert w["text_encoder"].files() == [model / "text_encoder" / "model.fp16.safetensors"]
    assert w["unet"].check(modules["unet"])["conv_in.weight"].dtype == np.float16


def test_missing_variant_names_folder_and_variants_present(model):
    with pytest.raises(SdsimError, match=r"model: no weights of variant 'fp16' \(\*\.fp16\.safetensors\) "
                                         r"in text_encoder/, unet/, vae/; present: plain"):
        load_weights(model, variant="fp16")
    add_fp16(model, keep_plain=False)
    with pytest.raises(SdsimError, match=r"model: no weights of variant 'bf16'.*present: "
                                         r"'fp16' \(\*\.fp16\.safetensors\)$"):
        load_weights(model, variant="bf16")
    with pytest.raises(SdsimError, match=r"model/unet: no weights of variant 'bf16' "
                                         r"\(\*\.bf16\.safetensors\); present: 'fp16'"):
        load_component(model / "unet", "bf16")
    shutil.copy(weights_file(model, "unet", "fp16"), weights_file(model, "unet", "ema"))
    with pytest.raises(SdsimError, match=r"unet: several weight variants, choose one: 'ema'.*'fp16'"):
        load_weights(model)


def test_components_without_the_variant_use_their_plain_files(model):
    """As diffusers' pipelines load a mixture (with a warning) when only some folders have it."""
    save_file({k: v.astype(np.float16) for k, v in load_file(str(weights_file(model, "unet"))).items()},
              str(weights_file(model, "unet", "fp16")))
    w = load_weights(model, variant="fp16")
    assert w["unet"].files() == [weights_file(model, "unet", "fp16")]
    assert w["vae"].files() == [weights_file(model, "vae")]


# --- text encoder with and without text_model. -----------------------------------------------

@pytest.mark.parametrize("prefixed", [True, False])
def test_text_encoder_with_and_without_text_model_prefix(model, modules, prefixed):
    if not prefixed:  # transformers >= 5 saves CLIPTextModel without that level
        rewrite(weights_file(model, "text_encoder"),
                lambda t: {k.removeprefix("text_model."): v for k, v in t.items()})
    keys = load_file(str(weights_file(model, "text_encoder")))
    assert all(k.startswith("text_model.") == prefixed for k in keys)
    assert_loaded(load_weights(model), modules)


# --- CompVis single files, with and without EMA ------------------------------------------------

def write_compvis(path, modules, ema_seed=None, text_prefix=True):
    """The tiny model in CompVis names (test_compvis' tables); with EMA copies of the UNet drawn
    from `ema_seed`, and LitEma's decay/num_updates, when `ema_seed` is given."""
    w = {comp: RandomWeights(m, 0) for comp, m in modules.items()}
    out = {}
    for name, key in unet_to_ldm(w["unet"], 2, 1, up_attn=[False, True]).items():
        out[key] = w["unet"][name]
    for name, key in vae_to_ldm(w["vae"], 2).items():
        t = w["vae"][name]
        out[key] = t[:, :, None, None] if ".mid.attn_1." in key and t.ndim == 2 else t
    for name in w["text_encoder"]:
        out["cond_stage_model.transformer." + (name if text_prefix else name.removeprefix("text_model."))] = \
            w["text_encoder"][name]
    if ema_seed is not None:
        ema = RandomWeights(modules["unet"], ema_seed)
        for name, key in unet_to_ldm(ema, 2, 1, up_attn=[False, True]).items():
            out[ema_key(key)] = ema[name]
        out["model_ema.decay"] = np.array(0.9999, np.float32)
        out["model_ema.num_updates"] = np.array(1000, np.int32)
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, str(path))
    return path


def test_ema_key_as_diffusers_flattens_it():
    assert ema_key("model.diffusion_model.input_blocks.0.0.weight") == \
        "model_ema.diffusion_modelinput_blocks00weight"


@pytest.mark.parametrize("text_prefix", [True, False])
def test_compvis_without_ema(tmp_path, modules, text_prefix):
    path = write_compvis(tmp_path / "sd.safetensors", modules, text_prefix=text_prefix)
    w = load_weights(path)
    assert w["unet"].ema is False
    assert_loaded(w, modules)


def test_compvis_ema_chosen_by_default(tmp_path, modules):
    path = write_compvis(tmp_path / "sd.safetensors", modules, ema_seed=1)
    w = load_single_file(path)
    assert w["unet"].ema is True and not w["vae"].ema
    assert_loaded(w, modules, seeds={"unet": 1})
    assert w["unet"].check(modules["unet"])["conv_in.weight"].base is not None  # still a view


def test_compvis_ema_false_chooses_the_training_weights(tmp_path, modules):
    path = write_compvis(tmp_path / "sd.safetensors", modules, ema_seed=1)
    for w in (load_single_file(path, ema=False), load_weights(path, ema=False)):
        assert w["unet"].ema is False
        assert_loaded(w, modules)


def test_compvis_incomplete_ema_names_the_missing_tensor(tmp_path, modules):
    path = write_compvis(tmp_path / "sd.safetensors", modules, ema_seed=1)
    rewrite(path, lambda t: {k: v for k, v in t.items() if k != "model_ema.diffusion_modelout2bias"})
    with pytest.raises(SdsimError, match=r"sd\.safetensors: tensor model_ema\.diffusion_modelout2bias "
                                         r"\(the EMA copy of model\.diffusion_model\.out\.2\.bias\) is missing"):
        load_weights(path)
    assert_loaded(load_weights(path, ema=False), modules)


def test_single_file_refuses_a_variant(tmp_path, modules):
    path = write_compvis(tmp_path / "sd.safetensors", modules)
    with pytest.raises(SdsimError, match=r"sd\.safetensors: a single-file checkpoint has no variants"):
        load_weights(path, variant="fp16")


# --- the Hugging Face cache -------------------------------------------------------------------

def cache_repo(cache, repo_id, model, rev, ref=True):
    """`model`'s files as huggingface_hub stores them: blobs/<sha256> and relative symlinks in
    snapshots/<rev>/, refs/main naming `rev` when `ref`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for src in sorted(p for p in model.rglob("*") if p.is_file()):
        rel = src.relative_to(model)
        blob = repo / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copy(src, blob)
        link = repo / "snapshots" / rev / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(rev)
    return repo


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    for var in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_existing_path_is_returned_as_is(model, hub_env):
    assert resolve_model(model) == model
    assert resolve_model(str(model / "unet" / "config.json")) == model / "unet" / "config.json"


def test_repo_id_resolves_to_the_refs_main_snapshot_through_symlinks(tmp_path, model, modules, hub_env):
    cache = tmp_path / "cache"
    repo = cache_repo(cache, "CompVis/stable-diffusion-v1-4", model, "a" * 40)
    cache_repo(cache, "CompVis/stable-diffusion-v1-4", model, "b" * 40, ref=False)  # newer, not main
    os.utime(repo / "snapshots" / ("a" * 40), (1, 1))
    hub_env.setenv("HF_HUB_CACHE", str(cache))
    snap = resolve_model("CompVis/stable-diffusion-v1-4")
    assert snap == repo / "snapshots" / ("a" * 40)
    assert weights_file(snap, "unet").is_symlink()
    assert_loaded(load_weights(snap), modules)


def test_without_refs_main_the_newest_snapshot_under_hf_home(tmp_path, model, hub_env):
    cache = tmp_path / "home" / "hub"
    repo = cache_repo(cache, "me/tiny", model, "old", ref=False)
    cache_repo(cache, "me/tiny", model, "new", ref=False)
    os.utime(repo / "snapshots" / "old", (1, 1))
    hub_env.setenv("HF_HOME", str(tmp_path / "home"))
    assert resolve_model("me/tiny") == repo / "snapshots" / "new"
    hub_env.delenv("HF_HOME")
    hub_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    xdg = cache_repo(tmp_path / "xdg" / "huggingface" / "hub", "me/tiny", model, "c")
    assert resolve_model("me/tiny") == xdg / "snapshots" / "c"


def test_absent_repo_says_where_it_looked_and_how_to_download(tmp_path, hub_env):
    hub_env.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SdsimError) as e:
        resolve_model("CompVis/stable-diffusion-v1-4")
    msg = str(e.value)
    assert "neither a folder nor in the Hugging Face cache" in msg
    assert str(tmp_path / "CompVis" / "stable-diffusion-v1-4") in msg
    assert str(tmp_path / "cache" / "models--CompVis--stable-diffusion-v1-4" / "snapshots") in msg
    assert "huggingface-cli download CompVis/stable-diffusion-v1-4" in msg
    with pytest.raises(SdsimError, match="no-such-model: no such file or folder"):
        resolve_model("no-such-model")


def test_partly_downloaded_snapshot_names_the_dangling_file(tmp_path, model, hub_env):
    repo = cache_repo(tmp_path / "cache", "me/tiny", model, "r")
    os.unlink(os.path.realpath(weights_file(repo / "snapshots" / "r", "unet")))
    hub_env.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SdsimError, match=r"snapshots/r/unet/diffusion_pytorch_model\.safetensors: "
                                         r"cannot read"):
        load_weights(resolve_model("me/tiny"))


def test_info_and_predict_take_a_cached_repo_id(tmp_path, model, hub_env, capsys):
    from sdsim.cli import main

    hub_env.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    cache_repo(tmp_path / "cache", "me/tiny-sd", model, "r1")
    assert main(["info", "--model", "me/tiny-sd", "--resolution", "32", "--format", "json"]) == 0
    assert "unet" in json.loads(capsys.readouterr().out)["components"]
    assert main(["predict", "--device", "pixel7", "--model", "me/tiny-sd", "--resolution", "32",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_s"] > 0
    assert main(["info", "--model", "me/absent"]) == 2
    err = capsys.readouterr().err
    assert "me/absent" in err and "huggingface-cli download me/absent" in err
