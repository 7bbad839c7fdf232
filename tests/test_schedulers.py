"""Schedulers: invariants against float64 math, and step-by-step equality with diffusers."""

import numpy as np
import pytest

from sdsim.errors import SdsimError
from sdsim.model.schedulers import SD14_CONFIG, make_scheduler

NAMES = ("pndm", "ddim", "euler", "dpmpp2m")


def alphas_cumprod_f64(cfg):
    """SD1.4's scaled_linear schedule in float64, written from its definition."""
    n = cfg["num_train_timesteps"]
    betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n) ** 2
    return np.cumprod(1.0 - betas)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 2, 20, 50])
def test_unet_calls_and_timesteps(name, n):
    s = make_scheduler(name)
    s.set_timesteps(n)
    expected_calls = n + 1 if name == "pndm" and n > 1 else n  # PLMS warm-up repeats a timestep
    assert s.unet_calls(n) == expected_calls == len(s.timesteps)
    ts = s.timesteps.astype(np.float64)
    assert ts.min() >= 0 and ts.max() <= 999
    diffs = np.diff(ts)
    if name == "pndm" and n > 1:
        assert diffs[1] == 0 and np.all(np.delete(diffs, 1) < 0)  # the warm-up timestep is taken twice
    else:
        assert np.all(diffs < 0)
    if name in ("pndm", "ddim"):  # SD1.4: "leading" spacing with steps_offset 1
        assert set(ts) == set(np.arange(n) * (1000 // n) + 1)


def test_pndm_without_prk_skip_takes_warmup_calls():
    s = make_scheduler("pndm", dict(SD14_CONFIG, skip_prk_steps=False))
    assert s.unet_calls(20) == 20 - 3 + 12  # 3 pseudo Runge-Kutta steps of 4 calls replace 3 steps


def test_alphas_cumprod_matches_float64_definition():
    s = make_scheduler("ddim")
    np.testing.assert_allclose(s.alphas_cumprod, alphas_cumprod_f64(SD14_CONFIG), rtol=2e-6)
    assert s.alphas_cumprod.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_exact_noise_prediction_recovers_clean_sample(name):
    """Fed the true noise, every scheduler lands on the noised version of x0 at its final level."""
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((1, 4, 6, 6))
    eps = rng.standard_normal((1, 4, 6, 6))
    ac = alphas_cumprod_f64(SD14_CONFIG)
    s = make_scheduler(name)
    s.set_timesteps(10)
    t0 = int(s.timesteps[0])
    if name in ("pndm", "ddim"):
        x = np.sqrt(ac[t0]) * x0 + np.sqrt(1 - ac[t0]) * eps  # variance-preserving
    elif name == "euler":
        x = x0 + np.sqrt((1 - ac[t0]) / ac[t0]) * eps  # variance-exploding (sigma space)
    else:
        x = np.sqrt(ac[t0]) * x0 + np.sqrt(1 - ac[t0]) * eps
    x = x.astype(np.float32)
    for t in s.timesteps:
        s.scale_model_input(x, t)
        x = s.step(eps.astype(np.float32), t, x)
    if name in ("pndm", "ddim"):  # set_alpha_to_one False: the last level is alphas_cumprod[0]
        want = np.sqrt(ac[0]) * x0 + np.sqrt(1 - ac[0]) * eps
    else:  # final sigma is zero
        want = x0
    np.testing.assert_allclose(x, want, atol=2e-4)


def test_euler_scales_inputs_and_starts_at_max_sigma():
    ac = alphas_cumprod_f64(SD14_CONFIG)
    s = make_scheduler("euler")
    s.set_timesteps(5)
    sigma_max = np.sqrt((1 - ac[999]) / ac[999])  # linspace spacing starts at t = 999
    assert s.init_noise_sigma == pytest.approx(sigma_max, rel=1e-5)
    x = np.ones((1, 1, 2, 2), np.float32)
    np.testing.assert_allclose(s.scale_model_input(x, s.timesteps[0]), 1 / np.sqrt(sigma_max**2 + 1), rtol=1e-5)


def test_unknown_name_and_unsupported_field():
    with pytest.raises(SdsimError, match="pndm, ddim, euler, dpmpp2m"):
        make_scheduler("lms")
    with pytest.raises(SdsimError, match="use_karras_sigmas"):
        make_scheduler("euler", dict(SD14_CONFIG, use_karras_sigmas=True))
    with pytest.raises(SdsimError, match="beta_schedule"):
        make_scheduler("ddim", dict(SD14_CONFIG, beta_schedule="cubic"))
    with pytest.raises(SdsimError, match="timestep_spacing"):
        make_scheduler("dpmpp2m", dict(SD14_CONFIG, timestep_spacing="even"))
    with pytest.raises(SdsimError, match="set_timesteps"):
        make_scheduler("ddim").step(np.zeros(1, np.float32), 1, np.zeros(1, np.float32))


def test_step_keeps_float16_dtype():
    s = make_scheduler("euler")
    s.set_timesteps(3)
    x = np.ones((1, 4, 2, 2), np.float16)
    assert s.step(x, s.timesteps[0], x).dtype == np.float16


def close(got, want):
    """float32 vs diffusers: the beta table may differ from torch.linspace by 1 ulp in one entry."""
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * max(1.0, float(np.abs(want).max())))


CONFIGS = {
    "sd14": SD14_CONFIG,
    "trailing": dict(SD14_CONFIG, timestep_spacing="trailing"),
    "vpred_prk_linspace": dict(SD14_CONFIG, skip_prk_steps=False, prediction_type="v_prediction",
                               timestep_spacing="linspace"),
    # stabilityai/stable-diffusion-2-1 (768): SD1's fields with v-prediction
    "sd21_vpred": dict(SD14_CONFIG, prediction_type="v_prediction"),
}


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 2, 20, 50])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_diffusers_step_by_step(name, n, config):
    pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    import torch

    cfg = CONFIGS[config]
    if name == "pndm" and not cfg["skip_prk_steps"] and n < 4:
        pytest.skip("PNDM's Runge-Kutta warm-up needs at least 4 steps")
    cls = {"pndm": diffusers.PNDMScheduler, "ddim": diffusers.DDIMScheduler,
           "euler": diffusers.EulerDiscreteScheduler, "dpmpp2m": diffusers.DPMSolverMultistepScheduler}[name]
    ref, ours = cls.from_config(cfg), make_scheduler(name, cfg)
    ref.set_timesteps(n)
    ours.set_timesteps(n)
    ref_ts = ref.timesteps.numpy()
    assert ours.timesteps.dtype == ref_ts.dtype
    np.testing.assert_array_equal(ours.timesteps, ref_ts)
    # within one float32 ulp: diffusers 0.42 forms the 1-step Euler sigma table by another
    # float32 interpolation order than earlier releases
    np.testing.assert_array_max_ulp(np.float32(ours.init_noise_sigma),
                                    np.float32(ref.init_noise_sigma), maxulp=1)
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((1, 4, 8, 8)) * float(ref.init_noise_sigma)).astype(np.float32)
    x_ref = torch.from_numpy(x.copy())
    for t_ref, t in zip(ref.timesteps, ours.timesteps):
        scaled_ref, scaled = ref.scale_model_input(x_ref, t_ref), ours.scale_model_input(x, t)
        close(scaled, scaled_ref.numpy())
        e = rng.standard_normal(x.shape).astype(np.float32)
        x_ref = ref.step(torch.from_numpy(e), t_ref, x_ref).prev_sample
        x = ours.step(e, t, x)
        assert x.dtype == np.float32
        close(x, x_ref.numpy())


def test_steps_past_the_training_timesteps_are_refused_with_the_limit():
    """SD's PNDM config (steps_offset 1, leading spacing) at 1000 steps would reach timestep
    1000 of a 1000-step training schedule: one error naming the most steps that fit, which run."""
    from sdsim.model.schedulers import PNDMScheduler

    s = PNDMScheduler()
    with pytest.raises(SdsimError, match="reach timestep 1000.*at most 999"):
        s.set_timesteps(1000)
    s.set_timesteps(999)
    assert max(s.timesteps) == 999
