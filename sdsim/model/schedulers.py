"""Diffusion schedulers in NumPy with diffusers' semantics, config fields and dtypes.

PNDM (SD1.4's default: PLMS with a warm-up step, so N >= 2 steps take N+1 UNet calls), DDIM (eta 0),
Euler discrete and DPM-Solver++ 2M. Tables are built as diffusers builds them (float32 betas and
cumulative products, float64 where diffusers interpolates in NumPy), and each step is computed
in float32 in the same order of operations, so a run can be compared with diffusers step by step.
`unet_calls(n)` tells the cost model how many UNet evaluations n inference steps need.
"""

from __future__ import annotations

import math

import numpy as np

from sdsim.errors import SdsimError

# The fields of SD1.4's scheduler/config.json; every other field takes the class's default.
SD14_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

_F32 = np.float32


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps, dtype=float32) on CPU: float32 step, filled from both ends."""
    s, e = _F32(start), _F32(end)
    if steps == 1:
        return np.array([s], dtype=_F32)
    step = (e - s) / _F32(steps - 1)
    idx = np.arange(steps)
    head = s + step * idx.astype(_F32)
    tail = e - step * (steps - idx - 1).astype(_F32)
    return np.where(idx < steps // 2, head, tail).astype(_F32)


def _betas_for_alpha_bar(n: int, max_beta: float = 0.999) -> np.ndarray:
    """The squaredcos_cap_v2 (cosine) schedule, as diffusers' betas_for_alpha_bar."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                    dtype=_F32)


def _alphas_cumprod(cfg: dict) -> np.ndarray:
    """float32 cumulative product of 1 - beta (torch's CPU cumprod accumulates in float64)."""
    n = int(cfg["num_train_timesteps"])
    if cfg.get("trained_betas") is not None:
        betas = np.asarray(cfg["trained_betas"], dtype=_F32)
    elif cfg["beta_schedule"] == "linear":
        betas = _torch_linspace_f32(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = _torch_linspace_f32(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n) ** 2
    elif cfg["beta_schedule"] == "squaredcos_cap_v2":
        betas = _betas_for_alpha_bar(n)
    else:
        raise SdsimError(f"scheduler config field 'beta_schedule': {cfg['beta_schedule']!r} is not one of "
                         "linear, scaled_linear, squaredcos_cap_v2")
    alphas = (_F32(1.0) - betas).astype(_F32)
    return np.cumprod(alphas.astype(np.float64)).astype(_F32)


def _spaced_timesteps(spacing: str, n: int, n_train: int, offset: int) -> np.ndarray:
    """Descending int64 timesteps for the 'linspace' / 'leading' / 'trailing' spacings."""
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, n).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = n_train // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + offset
    ratio = n_train / n  # trailing
    return np.round(np.arange(n_train, 0, -ratio)).astype(np.int64) - 1


def _out_dtype(*arrays) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays))


class Scheduler:
    """Common interface (as diffusers'): set_timesteps, timesteps, init_noise_sigma,
    scale_model_input, step, plus unet_calls for the cost model."""

    name = ""
    defaults: dict = {}
    # diffusers fields this implementation supports only at one value: field -> allowed values
    fixed: dict = {}
    prediction_types = ("epsilon", "v_prediction")

    def __init__(self, config: dict | None = None):
        cfg = dict(self.defaults)
        given = SD14_CONFIG if config is None else config
        for key, value in given.items():
            if key in self.fixed and value not in self.fixed[key]:
                allowed = ", ".join(repr(v) for v in self.fixed[key])
                raise SdsimError(f"scheduler config field {key!r}: {value!r} is not supported by {self.name} "
                                 f"(supported: {allowed})")
            if key in cfg:
                cfg[key] = value
        spacing = cfg.get("timestep_spacing", "leading")
        if spacing not in ("linspace", "leading", "trailing"):
            raise SdsimError(f"scheduler config field 'timestep_spacing': {spacing!r} is not one of "
                             "linspace, leading, trailing")
        pt = cfg.get("prediction_type")
        if pt not in self.prediction_types:
            raise SdsimError(f"scheduler config field 'prediction_type': {pt!r} is not one of "
                             f"{', '.join(self.prediction_types)} for {self.name}")
        self.config = cfg
        self.alphas_cumprod = _alphas_cumprod(cfg)
        self.num_inference_steps: int | None = None
        self.timesteps: np.ndarray | None = None

    def _timesteps_for(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def unet_calls(self, n: int) -> int:
        """UNet evaluations (per guidance batch) that `n` inference steps take."""
        return len(self._timesteps_for(n))

    def set_timesteps(self, n: int) -> None:
        if not 1 <= n <= self.config["num_train_timesteps"]:
            raise SdsimError(f"steps: {n} is outside 1..{self.config['num_train_timesteps']} "
                             "(num_train_timesteps of the scheduler config)")
        timesteps, limit = self._timesteps_for(n), self.config["num_train_timesteps"]
        if max(timesteps, default=0) >= limit:   # steps_offset pushes the last one past it
            fits = next(m for m in range(n - 1, 0, -1) if max(self._timesteps_for(m)) < limit)
            raise SdsimError(
                f"steps: {n} {self.name} steps with steps_offset "
                f"{self.config.get('steps_offset', 0)} reach timestep {max(timesteps)}, past the "
                f"{limit} the model was trained on; use at most {fits}")
        self.num_inference_steps = n
        self.timesteps = timesteps

    @property
    def init_noise_sigma(self):
        return 1.0

    def scale_model_input(self, sample: np.ndarray, t) -> np.ndarray:
        return sample

    def _need_timesteps(self):
        if self.timesteps is None:
            raise SdsimError(f"{self.name} scheduler: call set_timesteps(n) before step()")


class PNDMScheduler(Scheduler):
    """PNDM: pseudo Runge-Kutta warm-up (unless skip_prk_steps) then linear multistep (PLMS)."""

    name = "pndm"
    defaults = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "skip_prk_steps": False, "set_alpha_to_one": False,
        "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 0,
    }

    def __init__(self, config=None):
        super().__init__(config)
        self.final_alpha_cumprod = _F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        self._prk_len = 0

    def _split_timesteps(self, n: int):
        c = self.config
        base = _spaced_timesteps(c["timestep_spacing"], n, c["num_train_timesteps"], c["steps_offset"])[::-1]
        if c["skip_prk_steps"]:
            prk = np.array([], dtype=np.int64)
            plms = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1].copy()
        else:
            half = c["num_train_timesteps"] // n // 2
            prk = np.array(base[-4:]).repeat(2) + np.tile(np.array([0, half]), 4)
            prk = prk[:-1].repeat(2)[1:-1][::-1].copy()
            plms = base[:-3][::-1].copy()
        return prk.astype(np.int64), plms.astype(np.int64)

    def _timesteps_for(self, n):
        prk, plms = self._split_timesteps(n)
        return np.concatenate([prk, plms]).astype(np.int64)

    def set_timesteps(self, n):
        super().set_timesteps(n)
        self._prk_timesteps, _ = self._split_timesteps(n)
        self._ets: list[np.ndarray] = []
        self._counter = 0
        self._cur_model_output = 0
        self._cur_sample = None

    def step(self, model_output, t, sample):
        self._need_timesteps()
        if self._counter < len(self._prk_timesteps) and not self.config["skip_prk_steps"]:
            return self._step_prk(model_output, int(t), sample)
        return self._step_plms(model_output, int(t), sample)

    def _step_prk(self, model_output, t, sample):
        n_train, n = self.config["num_train_timesteps"], self.num_inference_steps
        diff_to_prev = 0 if self._counter % 2 else n_train // n // 2
        prev_t = t - diff_to_prev
        t = int(self._prk_timesteps[self._counter // 4 * 4])
        phase = self._counter % 4
        if phase == 0:
            self._cur_model_output = self._cur_model_output + (1 / 6) * model_output
            self._ets.append(model_output)
            self._cur_sample = sample
        elif phase in (1, 2):
            self._cur_model_output = self._cur_model_output + (1 / 3) * model_output
        else:
            model_output = self._cur_model_output + (1 / 6) * model_output
            self._cur_model_output = 0
        cur = self._cur_sample if self._cur_sample is not None else sample
        prev = self._prev_sample(cur, t, prev_t, model_output)
        self._counter += 1
        return prev

    def _step_plms(self, model_output, t, sample):
        n_train, n = self.config["num_train_timesteps"], self.num_inference_steps
        if not self.config["skip_prk_steps"] and len(self._ets) < 3:
            raise SdsimError("pndm scheduler: PLMS steps need the 12 Runge-Kutta warm-up steps first")
        prev_t = t - n_train // n
        if self._counter != 1:
            self._ets = self._ets[-3:]
            self._ets.append(model_output)
        else:
            prev_t = t
            t = t + n_train // n
        ets = self._ets
        if len(ets) == 1 and self._counter == 0:
            self._cur_sample = sample
        elif len(ets) == 1 and self._counter == 1:
            model_output = (model_output + ets[-1]) / 2
            sample = self._cur_sample
            self._cur_sample = None
        elif len(ets) == 2:
            model_output = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            model_output = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            model_output = (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])
        prev = self._prev_sample(sample, t, prev_t, model_output)
        self._counter += 1
        return prev

    def _prev_sample(self, sample, t, prev_t, model_output):
        """Formula (9) of the PNDM paper, in float32 as diffusers' _get_prev_sample."""
        dtype = _out_dtype(sample, model_output)
        x, e = sample.astype(_F32, copy=False), model_output.astype(_F32, copy=False)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t, b_prev = _F32(1) - a_t, _F32(1) - a_prev
        if self.config["prediction_type"] == "v_prediction":
            e = (a_t ** _F32(0.5)) * e + (b_t ** _F32(0.5)) * x
        sample_coeff = (a_prev / a_t) ** _F32(0.5)
        denom = a_t * b_prev ** _F32(0.5) + (a_t * b_t * a_prev) ** _F32(0.5)
        prev = sample_coeff * x - (a_prev - a_t) * e / denom
        return prev.astype(dtype, copy=False)


class DDIMScheduler(Scheduler):
    """DDIM with eta = 0 (deterministic)."""

    name = "ddim"
    prediction_types = ("epsilon", "sample", "v_prediction")
    defaults = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "clip_sample": True, "set_alpha_to_one": True, "steps_offset": 0,
        "prediction_type": "epsilon", "clip_sample_range": 1.0, "timestep_spacing": "leading",
    }
    fixed = {"thresholding": (False,), "rescale_betas_zero_snr": (False,)}

    def __init__(self, config=None):
        super().__init__(config)
        self.final_alpha_cumprod = _F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]

    def _timesteps_for(self, n):
        c = self.config
        return _spaced_timesteps(c["timestep_spacing"], n, c["num_train_timesteps"], c["steps_offset"])

    def step(self, model_output, t, sample):
        self._need_timesteps()
        c = self.config
        dtype = _out_dtype(sample, model_output)
        x, e = sample.astype(_F32, copy=False), model_output.astype(_F32, copy=False)
        t = int(t)
        prev_t = t - c["num_train_timesteps"] // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t = _F32(1) - a_t
        half = _F32(0.5)
        if c["prediction_type"] == "epsilon":
            x0 = (x - b_t ** half * e) / a_t ** half
            eps = e
        elif c["prediction_type"] == "sample":
            x0 = e
            eps = (x - a_t ** half * x0) / b_t ** half
        else:
            x0 = (a_t ** half) * x - (b_t ** half) * e
            eps = (a_t ** half) * e + (b_t ** half) * x
        if c["clip_sample"]:
            r = c["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        direction = (_F32(1) - a_prev) ** half * eps
        prev = a_prev ** half * x0 + direction
        return prev.astype(dtype, copy=False)


def _index_in(timesteps: np.ndarray, t, default_last: bool = False) -> int:
    """Position of t in the schedule (the second one if t repeats), as diffusers' index_for_timestep."""
    hits = np.nonzero(timesteps == t)[0]
    if len(hits) == 0:
        if default_last:
            return len(timesteps) - 1
        raise SdsimError(f"scheduler step: timestep {t} is not in the schedule set by set_timesteps")
    return int(hits[1] if len(hits) > 1 else hits[0])


class EulerDiscreteScheduler(Scheduler):
    """Euler discrete (no churn): inputs scaled by 1/sqrt(sigma^2+1), noise starts at sigma_max."""

    name = "euler"
    prediction_types = ("epsilon", "sample", "original_sample", "v_prediction")
    defaults = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "prediction_type": "epsilon", "timestep_spacing": "linspace",
        "steps_offset": 0, "final_sigmas_type": "zero",
    }
    fixed = {"interpolation_type": ("linear",), "use_karras_sigmas": (False, None),
             "use_exponential_sigmas": (False, None), "use_beta_sigmas": (False, None),
             "timestep_type": ("discrete",), "rescale_betas_zero_snr": (False,),
             "final_sigmas_type": ("zero", "sigma_min")}

    def __init__(self, config=None):
        super().__init__(config)
        ac = self.alphas_cumprod
        self._train_sigmas = (((_F32(1) - ac) / ac) ** _F32(0.5)).astype(_F32)
        # before set_timesteps: the full training schedule, as diffusers
        self.sigmas = np.concatenate([self._train_sigmas[::-1], [_F32(0)]]).astype(_F32)
        self._step_index: int | None = None

    def _tables(self, n):
        c = self.config
        n_train = c["num_train_timesteps"]
        if c["timestep_spacing"] == "linspace":
            ts = np.linspace(0, n_train - 1, n, dtype=np.float32)[::-1].copy()
        elif c["timestep_spacing"] == "leading":
            ts = (np.arange(0, n) * (n_train // n)).round()[::-1].copy().astype(np.float32)
            ts += c["steps_offset"]
        else:  # trailing
            ts = np.arange(n_train, 0, -n_train / n).round().copy().astype(np.float32)
            ts -= 1
        sig = np.interp(ts, np.arange(0, len(self._train_sigmas)), self._train_sigmas)
        if c["final_sigmas_type"] == "sigma_min":
            ac0 = self.alphas_cumprod[0]
            last = ((_F32(1) - ac0) / ac0) ** _F32(0.5)
        else:
            last = 0
        sigmas = np.concatenate([sig, [last]]).astype(np.float32)
        return ts.astype(np.float32), sigmas

    def _timesteps_for(self, n):
        return self._tables(n)[0]

    def set_timesteps(self, n):
        super().set_timesteps(n)
        self.timesteps, self.sigmas = self._tables(n)
        self._step_index = None

    @property
    def init_noise_sigma(self):
        m = self.sigmas.max()
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return m
        return (m ** _F32(2) + _F32(1)) ** _F32(0.5)

    def _index(self, t):
        if self._step_index is None:
            self._step_index = _index_in(self.timesteps, t)
        return self._step_index

    def scale_model_input(self, sample, t):
        self._need_timesteps()
        sigma = self.sigmas[self._index(t)]
        scale = (sigma ** _F32(2) + _F32(1)) ** _F32(0.5)
        return (sample.astype(_F32, copy=False) / scale).astype(sample.dtype, copy=False)

    def step(self, model_output, t, sample):
        self._need_timesteps()
        i = self._index(t)
        x, e = sample.astype(_F32, copy=False), model_output.astype(_F32, copy=False)
        sigma = self.sigmas[i]
        pt = self.config["prediction_type"]
        if pt in ("sample", "original_sample"):
            x0 = e
        elif pt == "epsilon":
            x0 = x - sigma * e
        else:
            x0 = e * (-sigma / (sigma ** _F32(2) + _F32(1)) ** _F32(0.5)) + (x / (sigma ** _F32(2) + _F32(1)))
        derivative = (x - x0) / sigma
        dt = self.sigmas[i + 1] - sigma
        prev = x + derivative * dt
        self._step_index = i + 1
        return prev.astype(model_output.dtype, copy=False)


class DPMSolverMultistepScheduler(Scheduler):
    """DPM-Solver++ 2M (second-order multistep, data prediction), first order at the ends."""

    name = "dpmpp2m"
    prediction_types = ("epsilon", "sample", "v_prediction")
    defaults = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "prediction_type": "epsilon", "solver_type": "midpoint",
        "lower_order_final": True, "euler_at_final": False, "final_sigmas_type": "zero",
        "lambda_min_clipped": -float("inf"), "timestep_spacing": "linspace", "steps_offset": 0,
    }
    fixed = {"solver_order": (2,), "algorithm_type": ("dpmsolver++",), "thresholding": (False,),
             "use_karras_sigmas": (False, None), "use_exponential_sigmas": (False, None),
             "use_beta_sigmas": (False, None), "use_lu_lambdas": (False, None),
             "use_flow_sigmas": (False, None), "variance_type": (None,), "rescale_betas_zero_snr": (False,),
             "solver_type": ("midpoint", "heun"), "final_sigmas_type": ("zero", "sigma_min")}

    def __init__(self, config=None):
        super().__init__(config)
        ac = self.alphas_cumprod
        alpha_t, sigma_t = np.sqrt(ac), np.sqrt(_F32(1) - ac)
        self._lambda_t = (np.log(alpha_t) - np.log(sigma_t)).astype(_F32)
        self._train_sigmas = (((_F32(1) - ac) / ac) ** _F32(0.5)).astype(_F32)
        self.sigmas = self._train_sigmas
        self._step_index: int | None = None

    def _tables(self, n):
        c = self.config
        clipped = int(np.searchsorted(self._lambda_t[::-1], c["lambda_min_clipped"], side="left"))
        last = c["num_train_timesteps"] - clipped
        if c["timestep_spacing"] == "linspace":
            ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        elif c["timestep_spacing"] == "leading":
            ratio = last // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + c["steps_offset"]
        else:  # trailing
            ts = np.arange(last, 0, -c["num_train_timesteps"] / n).round().copy().astype(np.int64) - 1
        sig = np.interp(ts, np.arange(0, len(self._train_sigmas)), self._train_sigmas)
        if c["final_sigmas_type"] == "sigma_min":
            ac0 = self.alphas_cumprod[0]
            final = ((_F32(1) - ac0) / ac0) ** _F32(0.5)
        else:
            final = 0
        return ts.astype(np.int64), np.concatenate([sig, [final]]).astype(np.float32)

    def _timesteps_for(self, n):
        return self._tables(n)[0]

    def set_timesteps(self, n):
        super().set_timesteps(n)
        self.timesteps, self.sigmas = self._tables(n)
        self.num_inference_steps = len(self.timesteps)
        self._outputs: list[np.ndarray | None] = [None, None]
        self._lower_order_nums = 0
        self._step_index = None

    @staticmethod
    def _alpha_sigma(sigma):
        alpha = _F32(1) / ((sigma ** _F32(2) + _F32(1)) ** _F32(0.5))
        return alpha, sigma * alpha

    def _to_x0(self, e, x, i):
        pt = self.config["prediction_type"]
        if pt == "sample":
            return e
        alpha, sigma = self._alpha_sigma(self.sigmas[i])
        if pt == "epsilon":
            return (x - sigma * e) / alpha
        return alpha * x - sigma * e

    def step(self, model_output, t, sample):
        self._need_timesteps()
        c = self.config
        if self._step_index is None:
            self._step_index = _index_in(self.timesteps, t, default_last=True)
        i, n = self._step_index, len(self.timesteps)
        lower_final = i == n - 1 and (c["euler_at_final"] or (c["lower_order_final"] and n < 15)
                                      or c["final_sigmas_type"] == "zero")
        x = sample.astype(_F32, copy=False)
        m = self._to_x0(model_output.astype(_F32, copy=False), x, i)
        self._outputs = [self._outputs[1], m]
        with np.errstate(divide="ignore"):
            alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
            alpha_s0, sigma_s0 = self._alpha_sigma(self.sigmas[i])
            lam_t = np.log(alpha_t) - np.log(sigma_t)
            lam_s0 = np.log(alpha_s0) - np.log(sigma_s0)
        h = lam_t - lam_s0
        if self._lower_order_nums < 1 or lower_final:
            prev = (sigma_t / sigma_s0) * x - (alpha_t * (np.exp(-h) - _F32(1))) * m
        else:
            alpha_s1, sigma_s1 = self._alpha_sigma(self.sigmas[i - 1])
            lam_s1 = np.log(alpha_s1) - np.log(sigma_s1)
            r0 = (lam_s0 - lam_s1) / h
            m0, m1 = self._outputs[1], self._outputs[0]
            d0, d1 = m0, (_F32(1) / r0) * (m0 - m1)
            if c["solver_type"] == "midpoint":
                prev = ((sigma_t / sigma_s0) * x - (alpha_t * (np.exp(-h) - _F32(1))) * d0
                        - _F32(0.5) * (alpha_t * (np.exp(-h) - _F32(1))) * d1)
            else:
                prev = ((sigma_t / sigma_s0) * x - (alpha_t * (np.exp(-h) - _F32(1))) * d0
                        + (alpha_t * ((np.exp(-h) - _F32(1)) / h + _F32(1))) * d1)
        if self._lower_order_nums < 2:
            self._lower_order_nums += 1
        self._step_index = i + 1
        return prev.astype(model_output.dtype, copy=False)


SCHEDULERS = {cls.name: cls for cls in (PNDMScheduler, DDIMScheduler, EulerDiscreteScheduler,
                                        DPMSolverMultistepScheduler)}


def make_scheduler(name: str, config_dict: dict | None = None) -> Scheduler:
    """A scheduler by name (pndm, ddim, euler, dpmpp2m) from a scheduler/config.json dict, or SD1.4's."""
    cls = SCHEDULERS.get(name)
    if cls is None:
        raise SdsimError(f"scheduler {name!r} is unknown; choose one of {', '.join(SCHEDULERS)}")
    return cls(config_dict)
