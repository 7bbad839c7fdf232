"""conv2d kernels (opencl/conv.cl) against an independent float64 NumPy convolution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdsim.errors import SdsimError

pytestmark = pytest.mark.opencl

U16 = 2.0 ** -11   # unit roundoff of fp16 storage (round to nearest)
U32 = 2.0 ** -24   # unit roundoff of float32 accumulation

# Winograd error bounds relative to max of the absolute conv |x|*|w| + |b| ("scale"): the
# transforms add and subtract tile values scaled by up to 21/4 (F6) before rounding, so the
# usual gamma_n bound is 1e3..1e6 times too loose to be useful. These are ~3-8x the worst error
# the fp16-exact sim (sdsim.sim.winograd) shows over 150 random shapes with inputs of scale 1
# and 30 (F2/F4/F6 fp32: 2.4e-7, 1.5e-6, 3.1e-6; fp16: 9.7e-4, 1.1e-2, 2.3e-2), and far below
# the O(1e-1..1) errors of a wrong index or transform.
WINO_TOL = {("winograd_f2", "fp32"): 2e-6, ("winograd_f4", "fp32"): 1e-5,
            ("winograd_f6", "fp32"): 2e-5, ("winograd_f2", "fp16"): 4e-3,
            ("winograd_f4", "fp16"): 3e-2, ("winograd_f6", "fp16"): 6e-2}


def conv_ref(x, w, b, stride, padding):
    """float64 conv by explicit zero padding and one einsum per kernel tap (not sdsim code)."""
    t, bo, l, r = (padding,) * 4 if isinstance(padding, int) else padding
    k = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    ho = (xp.shape[2] - k) // stride + 1
    wo = (xp.shape[3] - k) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for ky in range(k):
        for kx in range(k):
            win = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,kc->nkhw", win, w[:, :, ky, kx].astype(np.float64),
                           optimize=True)
    return y + (0 if b is None else b.astype(np.float64)[None, :, None, None])


def tolerance(variant, precision, x, w, b, stride, padding, ref, cheap=False):
    """Elementwise bound on |out - ref|; `cheap` bounds the absolute conv by max|x| * sum|w| + |b|
    (an upper bound, no second convolution) for the large SD1.4 shapes."""
    if cheap:
        scale = np.abs(x).max() * np.abs(w).sum(axis=(1, 2, 3))[None, :, None, None] \
            + (0 if b is None else np.abs(b)[None, :, None, None])
    else:
        scale = conv_ref(np.abs(x), np.abs(w), None if b is None else np.abs(b), stride, padding)
    if variant.startswith("winograd"):
        # the transforms mix every tap of a window, including those on the zero padding: their
        # rounding (fp16 storage of U, V and M) is relative to max|x| * sum|w|, even where the
        # taps that land on the image are few (a 1x1 input) and the output small
        window = np.abs(x).max() * np.abs(w).sum(axis=(1, 2, 3))[None, :, None, None]
        return WINO_TOL[(variant, precision)] * max(scale.max(), window.max()) + 1e-6
    n = w.shape[1] * w.shape[2] * w.shape[3] + 1
    # gamma_n bound of float32 accumulation; fp16 adds rounding of x, w, b (u16 each, relative
    # to the absolute conv) and of the stored output (u16 * |ref|).
    bound = n * U32 * scale
    if precision == "fp16":
        bound = bound + 3 * U16 * scale + U16 * np.abs(ref)
    return bound * 1.01 + 1e-7


def make(rng, n, cin, cout, h, w, k, big, bias):
    amp = 30.0 if big else 1.0
    x = (rng.standard_normal((n, cin, h, w)) * amp).astype(np.float32)
    wt = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return x, wt, b


def check(rt, variant, precision, x, wt, b, stride, padding, cheap=False):
    from sdsim.kernels.conv import conv2d_host
    out, events = conv2d_host(rt, x, wt, b, stride, padding, variant=variant, precision=precision)
    ref = conv_ref(x, wt, b, stride, padding)
    assert out.shape == ref.shape
    assert events and all(e.profile.end >= e.profile.start for e in events)
    err = np.abs(out - ref)
    tol = np.broadcast_to(tolerance(variant, precision, x, wt, b, stride, padding, ref, cheap),
                          err.shape)
    worst = np.argmax(err - tol)
    assert np.all(err <= tol), f"err {err.flat[worst]:.3g} > tol {tol.flat[worst]:.3g}"


dims = st.integers(1, 21)


@settings(max_examples=25, deadline=None)
@given(variant=st.sampled_from(["direct", "im2col_gemm"]),
       precision=st.sampled_from(["fp32", "fp16"]),
       n=st.integers(1, 2), cin=dims, cout=dims, h=dims, w=dims,
       k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       padding=st.one_of(st.integers(0, 1), st.tuples(*[st.integers(0, 1)] * 4)),
       big=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_direct_and_im2col(rt, variant, precision, n, cin, cout, h, w, k, stride, padding, big,
                           bias, seed):
    t, bo, l, r = (padding,) * 4 if isinstance(padding, int) else padding
    if h + t + bo < k or w + l + r < k:
        return
    x, wt, b = make(np.random.default_rng(seed), n, cin, cout, h, w, k, big, bias)
    check(rt, variant, precision, x, wt, b, stride, padding)


@settings(max_examples=30, deadline=None)
@given(variant=st.sampled_from(["winograd_f2", "winograd_f4", "winograd_f6"]),
       precision=st.sampled_from(["fp32", "fp16"]),
       n=st.integers(1, 2), cin=dims, cout=dims, h=st.integers(1, 27), w=st.integers(1, 27),
       big=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_winograd(rt, variant, precision, n, cin, cout, h, w, big, bias, seed):
    x, wt, b = make(np.random.default_rng(seed), n, cin, cout, h, w, 3, big, bias)
    check(rt, variant, precision, x, wt, b, 1, 1)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_winograd_fp16_rounds_where_the_sim_rounds(rt, m):
    """With fp16 storage the kernel and the sim agree far more closely than either agrees with
    float64: on a float build only the float32 summation order and FMA contraction differ; with
    half arithmetic (a device with cl_khr_fp16) the sim runs the kernels' arithmetic op by op
    (bit for bit: tests/test_fp16_arith_conv.py)."""
    from sdsim.kernels.conv import conv2d_host
    from sdsim.sim.winograd import conv3x3
    x, wt, b = make(np.random.default_rng(m), 1, 24, 16, 22, 19, 3, False, True)
    out, _ = conv2d_host(rt, x, wt, b, variant=f"winograd_f{m}", precision="fp16")
    sim = conv3x3(x, wt, b, m, "fp16", arith=rt.arith)
    ref = conv_ref(x, wt, b, 1, 1)
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    assert rms(out - sim) < 0.25 * rms(sim - ref)


@pytest.mark.parametrize("variant", ["winograd_f4", "direct"])
def test_sd14_shape(rt, variant):
    """SD1.4 UNet resnet conv at 64x64 latents: 320 -> 320 channels, batch 1, fp16 storage."""
    x, wt, b = make(np.random.default_rng(0), 1, 320, 320, 64, 64, 3, False, True)
    if variant == "direct":   # the 7.5-GFLOP direct conv is slow on a CPU: check 32 channels out
        wt, b = wt[:32], b[:32]
    check(rt, variant, "fp16", x, wt, b, 1, 1, cheap=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("n, cin, cout, h, w, k, stride, padding, blocking", [
    (2, 5, 4, 16, 17, 3, 1, 1, (4, 256)),            # a latent's 4 channels, 272 pixels
    (1, 19, 3, 40, 20, 5, 2, (2, 1, 0, 2), (4, 256)),  # cin not a multiple of CB=16, k=5
    (1, 9, 8, 13, 12, 3, 1, (1, 0, 0, 1), (8, 128)),  # 8 channels, 2 groups, one partial
    (2, 6, 7, 21, 21, 1, 2, 0, (8, 128)),             # 1x1 stride 2 (skips rows and columns)
    (2, 7, 40, 8, 8, 3, 1, 1, (16, 64)),              # 8x8 fills a 64-pixel group exactly
    (1, 3, 20, 5, 4, 3, 1, 1, (16, 64)),              # 20 pixels, 12 idle channels of 32
])
def test_direct_blockings(rt, precision, n, cin, cout, h, w, k, stride, padding, blocking):
    """Each (output channels, work-group pixels) blocking `direct_config` picks, at shapes that
    end in a partial channel block or pixel group: the choice and the result."""
    from sdsim.kernels.conv import direct_config
    from sdsim.ops import conv_out_hw
    ho, wo = conv_out_hw(h, w, k, stride, padding)
    cfg = direct_config(n, cin, cout, ho, wo, k)
    assert (cfg.cob, cfg.group) == blocking
    x, wt, b = make(np.random.default_rng(cin), n, cin, cout, h, w, k, False, True)
    check(rt, "direct", precision, x, wt, b, stride, padding)


def test_sd14_downsampler_and_vae_padding(rt):
    """Stride-2 downsampler (padding 1) and the VAE encoder's asymmetric (0, 1, 0, 1) padding."""
    rng = np.random.default_rng(1)
    x, wt, b = make(rng, 1, 64, 32, 32, 32, 3, False, True)
    for padding in (1, (0, 1, 0, 1)):
        for variant in ("direct", "im2col_gemm"):
            check(rt, variant, "fp32", x, wt, b, 2, padding)


def test_winograd_refuses_stride_2(rt):
    from sdsim.kernels.conv import conv2d_host
    x, wt, b = make(np.random.default_rng(0), 1, 2, 2, 8, 8, 3, False, False)
    with pytest.raises(SdsimError, match="stride 1"):
        conv2d_host(rt, x, wt, b, 2, 1, variant="winograd_f4")


@pytest.mark.parametrize("variant", ["im2col_gemm", "winograd_f2", "winograd_f4", "winograd_f6"])
def test_cost_workspace_is_what_the_kernels_allocate(rt, monkeypatch, variant):
    """The workspace of sdsim.kernels.conv equals the intermediate buffers conv2d really
    allocates (output and Winograd weights excluded), and Winograd's GEMM does alpha^2/(9 m^2)
    of the direct conv's multiplies."""
    from sdsim.kernels.conv import conv2d_host
    from sdsim.kernels import costs
    n, cin, cout, h, w = 2, 5, 7, 11, 9
    sizes = {}
    real = rt.alloc

    def alloc(n_elems, precision="fp32", what="buffer"):
        sizes[what] = sizes.get(what, 0) + n_elems * (2 if precision == "fp16" else 4)
        return real(n_elems, precision, what)

    monkeypatch.setattr(rt, "alloc", alloc)
    x, wt, b = make(np.random.default_rng(0), n, cin, cout, h, w, 3, False, True)
    conv2d_host(rt, x, wt, b, 1, 1, variant=variant, precision="fp16")
    scratch = sum(v for k, v in sizes.items()
                  if k not in ("conv output", "dummy bias") and "weights" not in k)
    cost = costs("conv2d", variant, batch=n, cin=cin, cout=cout, h=h, w=w, k=3, stride=1,
                 padding=1, precision="fp16")
    assert sum(c.workspace for c in cost) == scratch, sizes
    if variant.startswith("winograd"):
        m = int(variant[-1])
        tiles = n * -(-h // m) * -(-w // m)
        gemm = [c for c in cost if "gemm" in c.kernel][0]
        assert gemm.flops == 2 * (m + 2) ** 2 * cout * cin * tiles


def test_device_buffers_chain_without_host_copies(rt):
    """conv2d works on device buffers: a strided conv's output buffer feeds a Winograd conv
    (weights transformed once), as an OpenCL model backend chains them; fp32 storage."""
    from sdsim.kernels.conv import conv2d, winograd_weights
    rng = np.random.default_rng(5)
    x, w1, b1 = make(rng, 1, 6, 8, 13, 12, 3, False, True)
    _, w2, b2 = make(rng, 1, 8, 5, 1, 1, 3, False, True)
    dev = [rt.to_device(a) for a in (x, w1, b1, w2, b2)]
    y1, ev1 = conv2d(rt, dev[0], dev[1], dev[2], 1, 6, 13, 12, 8, 3, 2, (0, 1, 0, 1),
                     variant="im2col_gemm")
    u, _ = winograd_weights(rt, dev[3], 5, 8, 4)
    y2, ev2 = conv2d(rt, y1, dev[3], dev[4], 1, 8, 6, 6, 5, variant="winograd_f4", u=u)
    out = rt.from_device(y2, (1, 5, 6, 6))   # (13 + 1 - 3) // 2 + 1 = (12 + 1 - 3) // 2 + 1 = 6
    mid = conv_ref(x, w1, b1, 2, (0, 1, 0, 1))
    ref = conv_ref(mid, w2, b2, 1, 1)
    scale = conv_ref(np.abs(mid), np.abs(w2), np.abs(b2), 1, 1).max()
    assert len(ev1) == 2 and len(ev2) == 3
    assert np.abs(out - ref).max() <= WINO_TOL[("winograd_f4", "fp32")] * scale + 1e-5 * scale
