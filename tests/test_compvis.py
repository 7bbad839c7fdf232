"""CompVis -> diffusers key mapping, checked against diffusers' own single-file converters.

Tiny random diffusers models are renamed to CompVis (ldm) names with the tables of diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py (written out here, generalised to any
number of levels); diffusers' convert_ldm_*_checkpoint must turn that back into the model's state
dict (so the CompVis names are right by diffusers' definition), and sdsim's mapping must pick the
same tensor for every diffusers name.
"""

import numpy as np
import pytest

from sdsim.errors import SdsimError
from sdsim.model.compvis import Source, compvis_to_diffusers, ema_key


def unet_to_ldm(names, levels, layers, up_attn):
    """diffusers UNet names -> ldm names (convert_diffusers_to_original_stable_diffusion.py tables)."""
    s = layers + 1
    table = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("mid_block.attentions.0.", "middle_block.1.")]
    table += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    for i in range(levels):
        for j in range(layers):
            table.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{s * i + j + 1}.0."))
            table.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{s * i + j + 1}.1."))
        for j in range(s):
            table.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{s * i + j}.0."))
            table.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{s * i + j}.1."))
        if i < levels - 1:
            table.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{s * (i + 1)}.0.op."))
            table.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{s * i + s - 1}.{2 if up_attn[i] else 1}."))
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
              ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    out = {}
    for name in names:
        new = name
        if "resnets" in name:
            for hf, sd in resnet:
                new = new.replace(hf, sd)
        for hf, sd in table:
            if new.startswith(hf):
                new = sd + new[len(hf):]
                break
        out[name] = "model.diffusion_model." + new
    return out


def vae_to_ldm(names, levels):
    table = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for i in range(levels):
        table += [(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."),
                  (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
                  (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block."),
                  (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")]
    for part in ("encoder", "decoder"):
        table += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.") for j in range(2)]
        table.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
    attn = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
    out = {}
    for name in names:
        new = name.replace("conv_shortcut", "nin_shortcut")
        for hf, sd in table:
            if new.startswith(hf):
                new = sd + new[len(hf):]
                break
        if ".mid.attn_1." in new:
            head, tail = new.split(".mid.attn_1.")
            for hf, sd in attn:
                tail = sd + tail[len(hf):] if tail.startswith(hf) else tail
            new = head + ".mid.attn_1." + tail
        out[name] = "first_stage_model." + new
    return out


def randomized(model, torch):
    """Every parameter random, so equal tensors identify their source."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def checkpoint():
    """A tiny SD1-shaped model in CompVis names, its diffusers state dicts, and diffusers' conversion."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from diffusers.loaders import single_file_utils as sfu

    unet = diffusers.UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 16, 16), layers_per_block=2, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=12))
    # checkpoints name CLIP tensors text_model.*, as transformers 4 did (5 drops that level in state_dict)
    text_sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in randomized(text, torch).items()}
    sd = {"unet": randomized(unet, torch), "vae": randomized(vae, torch), "text_encoder": text_sd}

    names = {"unet": unet_to_ldm(sd["unet"], 3, 2, up_attn=[False, True, True]),
             "vae": vae_to_ldm(sd["vae"], 2),
             "text_encoder": {k: "cond_stage_model.transformer." + k for k in sd["text_encoder"]}}
    ldm = {}
    for comp, table in names.items():
        for name, key in table.items():
            t = sd[comp][name]
            if comp == "vae" and ".mid.attn_1." in key and t.ndim == 2:
                t = t[:, :, None, None]  # linear in diffusers, 1x1 conv in CompVis
            ldm[key] = t
    ldm["model_ema.decay"] = torch.tensor(0.999)  # outside the components: ignored
    converted = {"unet": sfu.convert_ldm_unet_checkpoint(dict(ldm), dict(unet.config)),
                 "vae": sfu.convert_ldm_vae_checkpoint(dict(ldm), dict(vae.config)),
                 "text_encoder": sfu.convert_ldm_clip_checkpoint(dict(ldm))}
    return ldm, sd, converted


@pytest.mark.crosscheck
def test_test_renaming_agrees_with_diffusers_converters(checkpoint):
    """The CompVis dict built here converts back to the model's state dict with diffusers' own code."""
    _, sd, converted = checkpoint
    for comp in sd:
        assert set(converted[comp]) == set(sd[comp]), comp
        for name, t in converted[comp].items():
            assert t.shape == sd[comp][name].shape and bool((t == sd[comp][name]).all()), name


@pytest.mark.crosscheck
def test_mapping_picks_the_same_tensor_as_diffusers(checkpoint):
    ldm, sd, converted = checkpoint
    mapping = compvis_to_diffusers(ldm.keys())
    assert set(mapping) == {"unet", "vae", "text_encoder"}
    for comp, table in mapping.items():
        assert set(table) == set(converted[comp]), comp
        for name, src in table.items():
            got = src.apply(ldm[src.key].numpy())
            np.testing.assert_array_equal(got, converted[comp][name].numpy(), err_msg=name)
    reshaped = {n for n, s in mapping["vae"].items() if s.reshape}
    assert reshaped == {f"{p}.mid_block.attentions.0.{l}.weight" for p in ("encoder", "decoder")
                        for l in ("to_q", "to_k", "to_v", "to_out.0")}
    # SD1 transformer proj_in/proj_out are 1x1 convs on both sides: kept, not reshaped
    proj = [s for n, s in mapping["unet"].items() if n.endswith("proj_in.weight")]
    assert proj and not any(s.reshape for s in proj) and all(ldm[s.key].ndim == 4 for s in proj)


def test_sd14_names_by_hand():
    """A few SD1.4 names, written from the two layouts' definitions (layers_per_block 2, 4 levels)."""
    keys = ["model.diffusion_model.input_blocks.0.0.weight",
            "model.diffusion_model.input_blocks.3.0.op.weight",
            "model.diffusion_model.input_blocks.5.0.skip_connection.weight",
            "model.diffusion_model.input_blocks.5.1.proj_in.weight",
            "model.diffusion_model.middle_block.2.emb_layers.1.bias",
            "model.diffusion_model.output_blocks.2.1.conv.weight",
            "model.diffusion_model.output_blocks.5.2.conv.bias",
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight",
            "model.diffusion_model.out.2.weight",
            "first_stage_model.decoder.up.3.block.0.nin_shortcut.weight",
            "first_stage_model.decoder.up.0.block.0.conv1.weight",
            "first_stage_model.encoder.mid.attn_1.proj_out.weight",
            "first_stage_model.encoder.mid.attn_1.norm.bias",
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
            "alphas_cumprod"]
    m = compvis_to_diffusers(keys)
    unet = {s.key.split("model.diffusion_model.")[1]: n for n, s in m["unet"].items()}
    assert unet == {"input_blocks.0.0.weight": "conv_in.weight",
                    "input_blocks.3.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
                    "input_blocks.5.0.skip_connection.weight": "down_blocks.1.resnets.1.conv_shortcut.weight",
                    "input_blocks.5.1.proj_in.weight": "down_blocks.1.attentions.1.proj_in.weight",
                    "middle_block.2.emb_layers.1.bias": "mid_block.resnets.1.time_emb_proj.bias",
                    "output_blocks.2.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
                    "output_blocks.5.2.conv.bias": "up_blocks.1.upsamplers.0.conv.bias",
                    "output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight":
                        "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight",
                    "out.2.weight": "conv_out.weight"}
    # decoder.up is numbered bottom-up in CompVis (here 4 levels: up.3 -> up_blocks.0)
    assert m["vae"]["decoder.up_blocks.0.resnets.0.conv_shortcut.weight"] == Source(
        "first_stage_model.decoder.up.3.block.0.nin_shortcut.weight")
    assert m["vae"]["decoder.up_blocks.3.resnets.0.conv1.weight"].key.endswith("decoder.up.0.block.0.conv1.weight")
    assert m["vae"]["encoder.mid_block.attentions.0.to_out.0.weight"].reshape
    assert not m["vae"]["encoder.mid_block.attentions.0.group_norm.bias"].reshape
    assert list(m["text_encoder"]) == ["text_model.final_layer_norm.weight"]


def test_reshape_and_unknown_names():
    src = Source("first_stage_model.encoder.mid.attn_1.q.weight", reshape=True)
    w = np.arange(9.0).reshape(3, 3, 1, 1)
    np.testing.assert_array_equal(src.apply(w), w[:, :, 0, 0])
    with pytest.raises(SdsimError, match="attn_1.q.weight"):
        src.apply(np.zeros((3, 3, 3, 3)))
    with pytest.raises(SdsimError, match="model.diffusion_model.label_emb"):
        compvis_to_diffusers(["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.label_emb.0.weight"])
    with pytest.raises(SdsimError, match="not an SD1.x"):
        compvis_to_diffusers(["first_stage_model.encoder.conv_in.weight"])


@pytest.mark.crosscheck
def test_ema_copies_are_the_keys_diffusers_extracts(checkpoint):
    """With EMA copies in the file, sdsim's UNet Sources are the tensors diffusers' converter takes
    with extract_ema=True (which builds the flattened model_ema.* keys itself)."""
    torch = pytest.importorskip("torch")
    from diffusers.loaders import single_file_utils as sfu

    ldm, sd, _ = checkpoint
    gen = torch.Generator().manual_seed(1)
    ema = {ema_key(k): torch.randn(v.shape, generator=gen) for k, v in ldm.items()
           if k.startswith("model.diffusion_model.")}
    assert len(ema) > 100  # diffusers takes the EMA weights only from files with over 100
    full = ldm | ema
    unet_config = {"layers_per_block": 2, "block_out_channels": (8, 16, 16),
                   "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")}
    theirs = sfu.convert_ldm_unet_checkpoint(dict(full), unet_config, extract_ema=True)
    mapping = compvis_to_diffusers(full.keys())["unet"]
    assert set(mapping) == set(theirs) == set(sd["unet"])
    for name, src in mapping.items():
        assert src.key.startswith("model_ema.")
        np.testing.assert_array_equal(full[src.key].numpy(), theirs[name].numpy(), err_msg=name)
    assert all(not s.key.startswith("model_ema.") for s in compvis_to_diffusers(full.keys(), ema=False)["unet"].values())
