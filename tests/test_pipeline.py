"""The text-to-image loop on the tiny preset with seeded random weights (no checkpoint needed)."""

import warnings

import numpy as np
import pytest

from sdsim.errors import SdsimError
from sdsim.model.pipeline import FallbackTokenizer, StableDiffusion


@pytest.fixture(scope="module")
def sd():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return StableDiffusion.random("tiny", seed=3)


def test_same_seed_same_bits_other_seed_other_image(sd):
    a = sd("a red cube", steps=2, seed=7, progress=False)
    b = sd("a red cube", steps=2, seed=7, progress=False)
    c = sd("a red cube", steps=2, seed=8, progress=False)
    assert a.dtype == np.uint8 and a.shape == (16, 16, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_given_latents_replace_the_seed(sd):
    lat = np.random.default_rng(7).standard_normal((1, 4, 8, 8), dtype=np.float32)
    assert np.array_equal(sd("x", steps=2, latents=lat, seed=99, progress=False),
                          sd("x", steps=2, seed=7, progress=False))
    with pytest.raises(SdsimError, match=r"latents have shape \(1, 4, 3, 3\)"):
        sd("x", steps=2, latents=np.zeros((1, 4, 3, 3), np.float32), progress=False)


def test_guidance_mixes_the_two_predictions(sd, monkeypatch):
    """noise = uncond + g * (cond - uncond): with a UNet that returns one value of its text input,
    the mixed prediction must follow the formula for each guidance scale."""
    seen = []
    real_step = None

    def fake_unet(F, x, t, text):
        assert x.shape[0] == text.shape[0]
        return np.broadcast_to(text[:, 1, :1, None, None], x.shape).astype(np.float32)

    monkeypatch.setitem(sd.stages.models, "unet", fake_unet)
    from sdsim.model import schedulers

    real_step = schedulers.PNDMScheduler.step

    def spy(self, noise, t, sample):
        seen.append(noise.copy())
        return real_step(self, noise, t, sample)

    monkeypatch.setattr(schedulers.PNDMScheduler, "step", spy)
    text = sd.encode_prompt(["neg", "pos"]).astype(np.float64)[:, 1, 0]
    assert abs(text[1] - text[0]) > 0.1
    sd("pos", negative_prompt="neg", steps=1, guidance=3.0, progress=False)
    np.testing.assert_allclose(seen[0], text[0] + 3.0 * (text[1] - text[0]), rtol=1e-5)
    seen.clear()
    sd("pos", steps=1, guidance=1.0, progress=False)  # guidance 1: no negative pass
    np.testing.assert_allclose(seen[0], text[1], rtol=1e-5)


def test_decode_maps_minus_one_one_to_uint8(sd, monkeypatch):
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32).reshape(1, 1, 1, 6)
    monkeypatch.setattr(sd.vae, "decode", lambda F, z: np.repeat(x, 3, axis=1))
    got = sd.decode(np.zeros((1, 4, 2, 2), np.float32))[0, 0, :, 0]
    assert got.tolist() == [0, 0, 128, 191, 255, 255]  # round(255 * clip(x/2 + 0.5))


def test_fallback_tokenizer_is_deterministic_and_padded():
    tok = FallbackTokenizer(49408)
    ids = tok("A  photo of a CAT")
    assert ids.shape == (77,) and ids[0] == 49406 and ids[6] == 49407 and (ids[6:] == 49407).all()
    assert np.array_equal(ids, tok("a photo of a cat")) and ids[2] != ids[3] and ids[1] == ids[4]
    assert (tok("w " * 200)[:-1] != 49407).all()


def test_fp16_run_stores_half_and_finishes(sd):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd16 = StableDiffusion.random("tiny", seed=3, precision="fp16")
    img16 = sd16("a red cube", steps=2, seed=7, progress=False)
    img32 = sd("a red cube", steps=2, seed=7, progress=False)
    assert sd16.nonfinite_report() is None
    assert np.abs(img16.astype(int) - img32.astype(int)).max() <= 8
