"""The safetensors loader: memory-mapped reads, diffusers folders, and errors naming tensor and file.
Files are written with the safetensors package's own writer (an independent implementation)."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from sdsim.errors import SdsimError
from sdsim.model.module import Conv2d, Linear, Module
from sdsim.model.weights import RandomWeights, SafetensorsFile, load_folder, load_weights


class Small(Module):
    def __init__(self):
        self.proj = Linear(3, 4)
        self.conv = Conv2d(4, 2, 3, bias=False)
        self.bind()


def tensors(seed=0):
    r = np.random.default_rng(seed)
    return {"proj.weight": r.standard_normal((4, 3), dtype=np.float32),
            "proj.bias": r.standard_normal(4, dtype=np.float32),
            "conv.weight": r.standard_normal((2, 4, 3, 3), dtype=np.float32)}


def make_folder(root, unet=None, name="diffusion_pytorch_model.safetensors"):
    for comp in ("unet", "vae", "text_encoder"):
        (root / comp).mkdir(parents=True, exist_ok=True)
    save_file(unet if unet is not None else tensors(), str(root / "unet" / name))
    save_file({"x": np.zeros(1, np.float32)}, str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    save_file({"x": np.zeros(1, np.float32)}, str(root / "text_encoder" / "model.safetensors"))
    return root


def test_folder_tensors_are_memory_mapped_and_equal(tmp_path):
    t = tensors()
    w = load_folder(make_folder(tmp_path))["unet"].check(Small())
    for name, arr in t.items():
        assert np.array_equal(w[name], arr)
        assert not w[name].flags.owndata and isinstance(w[name].base, np.memmap)
        assert not w[name].flags.writeable


def test_shards_are_merged_and_variant_used_only_when_alone(tmp_path):
    t = tensors()
    make_folder(tmp_path, {"proj.weight": t["proj.weight"]},
                name="diffusion_pytorch_model-00001-of-00002.safetensors")
    save_file({k: t[k] for k in ("proj.bias", "conv.weight")},
              str(tmp_path / "unet" / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    save_file({k: v * 0 for k, v in t.items()},
              str(tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors"))
    w = load_folder(tmp_path)["unet"].check(Small())
    assert np.array_equal(w["conv.weight"], t["conv.weight"])
    w16 = load_folder(tmp_path, variant="fp16")["unet"].check(Small())
    assert not w16["conv.weight"].any()


def test_bf16_is_widened_exactly(tmp_path):
    x = np.array([1.5, -2.25, 3.0, -0.0078125, 2.0 ** 100], np.float32)  # exact in bfloat16
    bits = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"t": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}).encode()
    path = tmp_path / "b.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits)
    got = SafetensorsFile(path).tensor("t")
    assert got.dtype == np.float32 and np.array_equal(got, x)


def test_missing_tensor_names_tensor_and_file(tmp_path):
    t = tensors()
    del t["proj.bias"]
    cw = load_folder(make_folder(tmp_path, t))["unet"]
    with pytest.raises(SdsimError, match=r"diffusion_pytorch_model\.safetensors.*missing tensor 'proj\.bias'"):
        cw.check(Small())


def test_wrong_shape_and_dtype_name_tensor_and_file(tmp_path):
    t = tensors()
    t["conv.weight"] = np.zeros((2, 4, 5, 5), np.float32)
    with pytest.raises(SdsimError, match=r"unet.*safetensors: tensor 'conv\.weight' has shape \[2, 4, 5, 5\]"):
        load_folder(make_folder(tmp_path / "a", t))["unet"].check(Small())
    t = tensors()
    t["proj.bias"] = np.zeros(4, np.int32)
    with pytest.raises(SdsimError, match=r"tensor 'proj\.bias' has dtype I32"):
        load_folder(make_folder(tmp_path / "b", t))["unet"].check(Small())


def test_truncated_and_corrupt_files(tmp_path):
    make_folder(tmp_path)
    path = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # the last tensor in the file loses its tail
    cw = load_folder(tmp_path)["unet"]
    with pytest.raises(SdsimError, match=r"diffusion_pytorch_model\.safetensors: truncated file, tensor '"):
        cw.check(Small())
    path.write_bytes(data[:100])
    with pytest.raises(SdsimError, match="corrupt safetensors file"):
        load_folder(tmp_path)
    path.write_bytes(data[:4])
    with pytest.raises(SdsimError, match="truncated safetensors file"):
        load_folder(tmp_path)
    path.write_bytes(data[:8] + b"{" * (len(data) - 8))
    with pytest.raises(SdsimError, match="bad JSON header"):
        load_folder(tmp_path)


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickles_are_refused_with_conversion_hint(tmp_path, suffix):
    f = tmp_path / f"model{suffix}"
    f.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(SdsimError, match="refusing to unpickle.*safetensors"):
        load_weights(f)
    for comp in ("unet", "vae", "text_encoder"):
        (tmp_path / "d" / comp).mkdir(parents=True)
        (tmp_path / "d" / comp / f"diffusion_pytorch_model{suffix}").write_bytes(b"x")
    with pytest.raises(SdsimError, match=f"diffusion_pytorch_model{suffix}: refusing to unpickle"):
        load_weights(tmp_path / "d")


def test_missing_component_folder(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(SdsimError, match="missing folder text_encoder/"):
        load_weights(tmp_path)


def test_random_weights_depend_on_seed_and_name_only():
    a, b, c = RandomWeights(Small(), 1), RandomWeights(Small(), 1), RandomWeights(Small(), 2)
    assert np.array_equal(b["conv.weight"], a["conv.weight"])  # b: first access, other order
    assert not np.array_equal(c["conv.weight"], a["conv.weight"])
    assert not a["proj.bias"].any() and set(a) == {"proj.weight", "proj.bias", "conv.weight"}
    w = a["conv.weight"]
    assert 0.5 < w.std() * np.sqrt(4 * 9) < 2


def test_single_file_compvis_keys_are_routed_and_reshaped(tmp_path):
    r = np.random.default_rng(0)
    q = r.standard_normal((8, 8, 1, 1), dtype=np.float32)
    conv_in = r.standard_normal((4, 4, 3, 3), dtype=np.float32)
    tok = r.standard_normal((10, 8), dtype=np.float32)
    path = tmp_path / "sd.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": conv_in,
               "first_stage_model.decoder.mid.attn_1.q.weight": q,
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": tok},
              str(path))
    w = load_weights(path)
    assert np.array_equal(w["unet"]["conv_in.weight"], conv_in)
    assert np.array_equal(w["vae"]["decoder.mid_block.attentions.0.to_q.weight"], q[:, :, 0, 0])
    assert np.array_equal(w["text_encoder"]["text_model.embeddings.token_embedding.weight"], tok)
    save_file({"foo": conv_in}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SdsimError, match="other.safetensors: .*not an SD1.x CompVis"):
        load_weights(tmp_path / "other.safetensors")
