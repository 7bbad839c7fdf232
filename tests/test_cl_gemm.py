"""GEMM kernels (opencl/gemm.cl): linear (+bias, GELU epilogue) and the strided batched `gemm`
launch (as im2col and Winograd use it) against float64 NumPy."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.opencl


def matmul_host(rt, a, b, *, trans_b=False, alpha=1.0, precision="fp32"):
    """c[i] = alpha * a[i] @ b[i] through the strided gemm launch (b[i] is (n, k) if trans_b)."""
    from sdsim.kernels.gemm import gemm

    batch, m, k = a.shape
    n = b.shape[1] if trans_b else b.shape[2]
    c = rt.alloc(batch * m * n, precision, "c")
    sb = (n * k, 1, k) if trans_b else (k * n, n, 1)
    evs = gemm(rt, rt.to_device(a, precision), rt.to_device(b, precision), c, m, n, k,
               batch=batch, strides_a=(m * k, k, 1), strides_b=sb, strides_c=(m * n, n, 1),
               alpha=alpha, precision=precision)
    return rt.from_device(c, (batch, m, n), precision, wait_for=evs), evs

U16 = 2.0 ** -11   # unit roundoff of fp16 storage
U32 = 2.0 ** -24   # unit roundoff of float32 accumulation


def gelu64(x):
    """Exact erf GELU in float64 (math.erf, independent of scipy and of sdsim)."""
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def bound(a_abs_b_abs, ref, k, precision, gelu=False, arith="fp32"):
    """Elementwise error bound from |A| @ |B| (+|bias|): gamma_k of float32 accumulation; fp16
    storage adds the rounding of both operands and the bias (u16 each, relative to |A||B|) and of
    the stored output (u16 * |ref|); half arithmetic rounds each product (one u16 more). GELU is
    1.13-Lipschitz, so it carries the bound through with a factor 1.13, plus float32 erf error
    (a few ulps of the output)."""
    b = (k + 1) * U32 * a_abs_b_abs
    if precision == "fp16":
        b = b + (3 + (arith != "fp32")) * U16 * a_abs_b_abs   # + each product rounded to half
    if gelu:
        b = 1.13 * b + 8 * U32 * np.abs(ref)
    if precision == "fp16":
        b = b + U16 * np.abs(ref)
    return 1.01 * b + 1e-7


# sizes around the 64-wide output tile and 16-deep K step of the kernel, including 1
sizes = st.one_of(st.integers(1, 20), st.integers(60, 70), st.sampled_from([127, 128, 129]))


@settings(max_examples=30, deadline=None)
@given(m=sizes, k=sizes, n=sizes, bias=st.booleans(), gelu=st.booleans(),
       precision=st.sampled_from(["fp32", "fp16"]), amp=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**31))
def test_linear(rt, m, k, n, bias, gelu, precision, amp, seed):
    from sdsim.kernels.gemm import linear_host
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * amp).astype(np.float32)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    out, events = linear_host(rt, x, w, b, gelu=gelu, precision=precision)
    pre = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)
    ref = gelu64(pre) if gelu else pre
    absprod = np.abs(x).astype(np.float64) @ np.abs(w).T + (0 if b is None else np.abs(b))
    assert out.shape == (m, n) and len(events) == 1
    err = np.abs(out - ref)
    tol = bound(absprod, ref, k, precision, gelu, arith=rt.arith)
    assert np.all(err <= tol), f"max excess {np.max(err - tol):.3g}"


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), m=sizes, k=sizes, n=sizes, trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, 0.125]), precision=st.sampled_from(["fp32", "fp16"]),
       seed=st.integers(0, 2**31))
def test_batched_matmul(rt, batch, m, k, n, trans_b, alpha, precision, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    bb = np.ascontiguousarray(b.transpose(0, 2, 1)) if trans_b else b
    out, _ = matmul_host(rt, a, bb, trans_b=trans_b, alpha=alpha, precision=precision)
    ref = alpha * np.einsum("bmk,bkn->bmn", a.astype(np.float64), b.astype(np.float64))
    absprod = alpha * np.einsum("bmk,bkn->bmn", np.abs(a).astype(np.float64), np.abs(b))
    assert out.shape == (batch, m, n)
    err = np.abs(out - ref)
    tol = bound(absprod, ref, k, precision, arith=rt.arith)
    assert np.all(err <= tol), f"max err {err.max():.3g}"


def test_sd14_feed_forward_shape(rt):
    """UNet 64x64 transformer feed-forward: 4096 tokens, 320 -> 1280 with GELU in the epilogue
    (fp16 storage), checked on a 512-token slice of the reference to keep the test short."""
    from sdsim.kernels.gemm import linear_host
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 320)).astype(np.float32)
    w = (rng.standard_normal((1280, 320)) / np.sqrt(320)).astype(np.float32)
    b = rng.standard_normal(1280).astype(np.float32)
    out, _ = linear_host(rt, x, w, b, gelu=True, precision="fp16")
    rows = rng.choice(4096, 512, replace=False)
    pre = x[rows].astype(np.float64) @ w.astype(np.float64).T + b
    ref = gelu64(pre)
    absprod = np.abs(x[rows]).astype(np.float64) @ np.abs(w).T + np.abs(b)
    assert out.shape == (4096, 1280)
    tol = bound(absprod, ref, 320, "fp16", gelu=True, arith=rt.arith)
    assert np.all(np.abs(out[rows] - ref) <= tol)


def test_gemm_writes_only_its_output(rt):
    """A linear into a view of a larger buffer leaves the bytes around it untouched (bounds
    checks on partial tiles)."""
    import pyopencl as cl

    from sdsim.kernels.gemm import linear
    rng = np.random.default_rng(3)
    m, k, n = 5, 7, 3
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    sentinel = np.full(m * n + 64, 7.0, np.float32)
    big = rt.to_device(sentinel, "fp32", "out")
    linear(rt, rt.to_device(x), rt.to_device(np.ascontiguousarray(w.T)), None, m, k, n, out=big)
    host = np.empty_like(sentinel)
    cl.enqueue_copy(rt.queue, host, big)
    np.testing.assert_allclose(host[:m * n].reshape(m, n), x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-5, atol=1e-5)
    assert np.all(host[m * n:] == 7.0)


def test_sd14_cross_attention_scores(rt):
    """SD1.4 cross-attention scores at 64x64 latents: 8 heads, Q (4096 x 40) against the 77
    text tokens' K, used transposed, scaled by 1/sqrt(40); fp16 storage."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((8, 4096, 40)).astype(np.float32)
    k = rng.standard_normal((8, 77, 40)).astype(np.float32)
    alpha = 1 / np.sqrt(40)
    out, _ = matmul_host(rt, q, k, trans_b=True, alpha=alpha, precision="fp16")
    ref = alpha * np.einsum("bmd,bnd->bmn", q.astype(np.float64), k.astype(np.float64))
    absprod = alpha * np.einsum("bmd,bnd->bmn", np.abs(q).astype(np.float64), np.abs(k))
    assert out.shape == (8, 4096, 77)
    assert np.all(np.abs(out - ref) <= bound(absprod, ref, 40, "fp16", arith=rt.arith))


def _all_configs():
    from sdsim.kernels import tuning
    seen = {c.name: c for cs in tuning.CANDIDATES.values() for c in cs}
    for t in tuning.DEFAULTS.values():
        seen.update({c.name: c for c in t.gemm.values()})
    return sorted(seen.values(), key=lambda c: c.name)


@pytest.mark.parametrize("cfg", _all_configs(), ids=lambda c: c.name)
def test_every_tuning_candidate(rt, cfg):
    """Every tile configuration the tuner may choose computes the same products (both bodies,
    edge tiles in m, n and k, strided B, bias and GELU epilogues, fp32 and fp16 storage)."""
    from sdsim.kernels import tuning
    every = tuning.Tuning("gpu" if cfg.local else "cpu", {c: cfg for c in tuning.CLASS_NAMES},
                          "test")
    rng = np.random.default_rng(7)
    with tuning.use(every):
        for (batch, m, k, n), trans_b, precision in [((2, 37, 45, 70), False, "fp32"),
                                                      ((1, 130, 17, 129), True, "fp16"),
                                                      ((3, 1, 5, 3), True, "fp32"),
                                                      ((2, 70, 45, 5), True, "fp16")]:
            a = rng.standard_normal((batch, m, k)).astype(np.float32)
            b = rng.standard_normal((batch, k, n)).astype(np.float32)
            bb = np.ascontiguousarray(b.transpose(0, 2, 1)) if trans_b else b
            out, _ = matmul_host(rt, a, bb, trans_b=trans_b, precision=precision)
            ref = np.einsum("bmk,bkn->bmn", a.astype(np.float64), b.astype(np.float64))
            absprod = np.einsum("bmk,bkn->bmn", np.abs(a).astype(np.float64), np.abs(b))
            tol = bound(absprod, ref, k, precision, arith=rt.arith)
            assert np.all(np.abs(out - ref) <= tol), cfg.name
        from sdsim.kernels.gemm import linear_host
        x = rng.standard_normal((50, 33)).astype(np.float32)
        w = rng.standard_normal((19, 33)).astype(np.float32)
        bias = rng.standard_normal(19).astype(np.float32)
        out, _ = linear_host(rt, x, w, bias, gelu=True)
        pre = x.astype(np.float64) @ w.T.astype(np.float64) + bias
        absprod = np.abs(x).astype(np.float64) @ np.abs(w).T + np.abs(bias)
        assert np.all(np.abs(out - gelu64(pre)) <= bound(absprod, gelu64(pre), 33, "fp32",
                                                          gelu=True))


_SPLIT_CONFIGS = [c for c in _all_configs() if c.name in ("l32x32x16-8x8-v4", "r6x16x1-1x1-v8")]


@settings(max_examples=20, deadline=None)
@given(cfg=st.sampled_from(_SPLIT_CONFIGS), batch=st.integers(1, 2), m=sizes,
       k=st.integers(256, 700), n=sizes, bias=st.booleans(), gelu=st.booleans(),
       precision=st.sampled_from(["fp32", "fp16"]), seed=st.integers(0, 2**31))
def test_split_k(rt, cfg, batch, m, k, n, bias, gelu, precision, seed):
    """A call split along K (a tuning whose work-group target the call falls short of) runs as
    the gemm's partial sums plus `gemm_split_reduce`, and computes the same product, bias and
    GELU as the float64 reference within the unsplit error bound (a slice's sum plus the sum of
    the slices is a shorter chain than the whole of K)."""
    from sdsim.kernels import tuning
    from sdsim.kernels.gemm import gemm

    split = tuning.Tuning("gpu" if cfg.local else "cpu", {c: cfg for c in tuning.CLASS_NAMES},
                          "test", split_groups=10_000)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    bv = rng.standard_normal(n).astype(np.float32)
    with tuning.use(split):
        slices = split.gemm_split(batch, m, k, n, cfg)
        c = rt.alloc(batch * m * n, precision, "c")
        evs = gemm(rt, rt.to_device(a, precision), rt.to_device(b, precision), c, m, n, k,
                   batch=batch, strides_a=(m * k, k, 1), strides_b=(k * n, n, 1),
                   strides_c=(m * n, n, 1), bias=rt.to_device(bv, precision) if bias else None,
                   bias_mode=int(bias), act=int(gelu), precision=precision)
        out = rt.from_device(c, (batch, m, n), precision, wait_for=evs)
    assert slices >= 2 and len(evs) == 2
    stored = (lambda x: x.astype(np.float16).astype(np.float64)) if precision == "fp16" else \
        (lambda x: x.astype(np.float64))
    pre = np.einsum("bmk,bkn->bmn", stored(a), stored(b)) + (stored(bv) if bias else 0)
    ref = gelu64(pre) if gelu else pre
    absprod = np.einsum("bmk,bkn->bmn", np.abs(a).astype(np.float64), np.abs(b)) + \
        (np.abs(bv) if bias else 0)
    err = np.abs(out - ref)
    tol = bound(absprod, ref, k, precision, gelu, arith=rt.arith)
    assert np.all(err <= tol), f"{slices} slices: max excess {np.max(err - tol):.3g}"


def test_split_rule():
    """K is split only where a call has at most half the target's work-groups, into equal slices
    of at least SPLIT_MIN_STEPS k-steps that keep it within the target; CPUs never split."""
    from math import ceil

    from sdsim.kernels import tuning
    cfg = tuning.GemmConfig(128, 128, 8, 16, 16, 4)
    t = tuning.Tuning("gpu", {c: cfg for c in tuning.CLASS_NAMES}, "test",
                      split_groups=tuning.split_groups("gpu", 132))
    assert t.split_groups == 264 and tuning.split_groups("cpu", 2) == 0
    assert t.gemm_split(1, 8192, 320, 2560, cfg) == 1          # 1280 work-groups
    assert t.gemm_split(1, 2000, 900, 2000, cfg) == 1          # 256 of 264
    assert t.gemm_split(1, 1500, 900, 1100, cfg) == 2          # 108 of 264: twice as many
    for m, k, n in [(512, 5120, 1280), (2, 1280, 1280), (154, 768, 320), (64, 70, 64)]:
        s = t.gemm_split(1, m, k, n, cfg)
        groups = ceil(m / 128) * ceil(n / 128)
        steps = ceil(k / 8)
        assert 1 <= s and groups * s <= 264 and (s == 1 or steps / s >= tuning.SPLIT_MIN_STEPS)
        assert ceil(steps / ceil(steps / s)) == s               # equal whole slices
    assert t.gemm_split(1, 512, 5120, 1280, cfg) == 6           # 40 work-groups -> 240
    assert t.gemm_split(1, 64, 70, 64, cfg) == 1                # 9 k-steps: too short to split
    assert tuning.for_device("cpu", 2).split_groups == 0


def test_tuning_configs_parse_and_refuse():
    from sdsim.errors import SdsimError
    from sdsim.kernels import tuning
    for cfg in _all_configs():
        assert not cfg.problems() and tuning.GemmConfig.parse(cfg.name) == cfg
    with pytest.raises(SdsimError, match="multiple of the work-group"):
        tuning.GemmConfig.parse("l100x64x16-16x16-v1")
    with pytest.raises(SdsimError, match="not of the form"):
        tuning.GemmConfig.parse("big")
    assert [tuning.gemm_class(1, 2, 1280), tuning.gemm_class(1, 4096, 320),
            tuning.gemm_class(36, 1280, 8), tuning.gemm_class(1, 77, 320),
            tuning.gemm_class(16, 4096, 4096)] == ["narrow", "medium", "narrow", "small",
                                                   "large"]


def test_transposed_rule():
    """A narrow C with fewer columns than rows runs transposed on local-memory (GPU) builds, its
    launch laid over C^T; never on the CPU micro-kernel, nor for narrow-row or wide calls."""
    from sdsim.kernels import tuning
    from sdsim.kernels.gemm import gemm_launch, transposed
    with tuning.use(tuning.DEFAULTS["gpu"]):   # narrow: 32x32 tiles of 8x8 work-items
        assert transposed(36, 1280, 8) and not transposed(1, 2, 1280)
        assert not transposed(1, 4096, 320)
        (cost,) = kernels_costs_wino()
        assert cost.launch.work_groups == 36 * 1 * (1280 // 32)    # C^T: 8 rows, 1280 columns
        assert cost.launch.active == pytest.approx(8 / 32)
        assert gemm_launch(36, 8, 1280, 1280).work_groups == cost.launch.work_groups
    with tuning.use(tuning.DEFAULTS["cpu"]):
        assert not transposed(36, 1280, 8)


def kernels_costs_wino():
    """The GEMM dispatch of a Winograd F(4x4) conv over an 8x8 latent (36 x (1280 x 8) C)."""
    from sdsim import kernels
    return [k for k in kernels.costs("conv2d", "winograd_f4", batch=2, cin=1280, cout=1280, h=8,
                                     w=8, k=3, stride=1, padding=1) if k.kernel_class == "gemm"]


@pytest.mark.parametrize("bias", [True, False])
def test_the_linear_record_runs_the_build_its_shape_names(rt, bias, monkeypatch):
    """A bias-less shape runs the bias-less build (BIAS=0) and computes x @ w.T alone, the
    record's operands and inputs have no bias, and the model key it is timed under says so: a
    calibration's `.nobias` points time the kernel SD's attention projections run."""
    from sdsim import kernels
    from sdsim.cl.bench import upload

    rec = kernels.get("linear", "tiled")
    shape = {"m": 37, "k": 70, "n": 65, "bias": bias}
    inputs = rec.make_inputs(shape, np.random.default_rng(3))
    assert ("b" in inputs["params"]) == bias == ("b" in rec.operands(shape)[1])
    built = []
    real = rt.kernel

    def kernel(family, name, precision="fp32", defines=None):
        if name == "gemm":
            built.append(defines["BIAS"])
        return real(family, name, precision, defines)

    monkeypatch.setattr(rt, "kernel", kernel)
    ins, params, out = upload(rt, rec, shape, inputs, "fp32")
    rt.finish()
    rec.launch(rt, shape, ins, params, out, "fp32")
    rt.finish()
    got = rt.from_device(out, (37, 65), "fp32")
    x, w = (inputs["ins"][0].astype(np.float64), inputs["params"]["w"].astype(np.float64))
    want = x @ w.T + (inputs["params"]["b"] if bias else 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert built == [1 if bias else 0]
    assert rec.costs("fp32", **shape)[0].model_key.endswith(".nobias") != bias
