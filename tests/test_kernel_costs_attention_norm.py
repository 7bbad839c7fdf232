"""Cost formulas of the attention, norm, GELU and elementwise variants (sdsim/kernels): the
traffic and workspace relations each optimization is about, checked from first principles."""

import math

import pytest

from sdsim.kernels import costs

SD = dict(batch=2, heads=8, nq=4096, nk=4096, head_dim=40)


def total(cs, attr):
    return sum(getattr(c, attr) for c in cs)


@pytest.mark.parametrize("precision,b", [("fp32", 4), ("fp16", 2)])
def test_attention_workspace_is_the_score_matrix_except_for_flash(precision, b):
    scores = 2 * 8 * 4096 * 4096 * b
    naive = costs("attention", "naive", precision=precision, **SD)
    partial = costs("attention", "partial_softmax", precision=precision, **SD)
    flash = costs("attention", "flash", precision=precision, **SD)
    assert max(c.workspace for c in naive) == scores
    assert max(c.workspace for c in partial) == scores
    assert total(flash, "workspace") == 0
    # the softmax matrix is written by naive only: partial writes S once, naive S and P
    assert total(naive, "bytes_written") - total(partial, "bytes_written") >= scores
    assert len(naive) == 5 and len(partial) == 3 and len(flash) == 1


def test_flash_reads_kv_once_per_query_tile():
    from sdsim.kernels.attention import flash_rows

    (c,) = costs("attention", "flash", precision="fp16", **SD)
    bh, n, d = 16, 4096, 40
    assert c.bytes_read == 2 * bh * (n * d + 2 * n * d * math.ceil(n / flash_rows()))
    assert c.bytes_written == 2 * bh * n * d
    # at least the 4 n^2 d multiply-add FLOPs of QK^T and P.V
    assert c.flops >= 4 * bh * n * n * d


def test_causal_flash_skips_future_key_tiles():
    kw = dict(batch=1, heads=12, nq=77, nk=77, head_dim=64, precision="fp32")
    full = costs("attention", "flash", causal=False, **kw)[0]
    causal = costs("attention", "flash", causal=True, **kw)[0]
    assert causal.flops < full.flops and causal.bytes_read < full.bytes_read
    # but no fewer than the lower triangle (77*78/2 scores per head)
    assert causal.flops >= 12 * 77 * 78 / 2 * 4 * 64


@pytest.mark.parametrize("act", [None, "silu"])
@pytest.mark.parametrize("channels,hw", [(1280, 256), (320, 4096), (128, 512 * 512)])
def test_group_norm_fused_has_less_traffic_than_naive(act, channels, hw):
    """The fused kernel reads x twice and writes y once, in one dispatch while a slice fits a
    chunk and in two (partial sums, normalize) beyond: SD1.4's 1280 ch at 16x16 (10,240 per
    slice), 320 ch at 64x64 (40,960) and the VAE's 128 ch at 512x512 (a million)."""
    from sdsim.kernels.norm import CHUNK

    kw = dict(batch=2, channels=channels, hw=hw, groups=32, act=act, precision="fp16")
    naive = costs("group_norm", "naive", **kw)
    fused = costs("group_norm", "fused", **kw)
    x = 2 * channels * hw * 2
    per_group = channels // 32 * hw
    assert len(naive) == 3 and len(fused) == (1 if per_group <= CHUNK else 2)
    assert total(naive, "bytes_read") >= 3 * x and total(fused, "bytes_read") >= 2 * x
    assert total(fused, "dram_bytes") < total(naive, "dram_bytes")
    assert fused[-1].bytes_written == x
    assert total(naive, "workspace") == 2 * 2 * 32 * 4     # fp32 mean and variance per group
    splits = math.ceil(per_group / CHUNK)
    # one work-group per chunk; the split form keeps a (sum, sum of squares) pair per chunk
    assert [c.launch.work_groups for c in fused] == [64 * splits] * len(fused)
    assert total(fused, "workspace") == (0 if splits == 1 else 64 * splits * 2 * 4)


def test_geglu_variants_traffic():
    kw = dict(tokens=8192, dim=1280, precision="fp16")
    n = 8192 * 1280 * 2
    standalone = costs("gelu", "standalone", **kw)
    fused = costs("gelu", "geglu_fused", **kw)
    assert [len(standalone), len(fused)] == [2, 1]
    assert total(fused, "dram_bytes") == 3 * n                 # read hidden|gate, write out
    assert total(standalone, "dram_bytes") == 5 * n            # + gelu temporary written and read
    assert total(standalone, "workspace") == n


def test_elementwise_bytes():
    (up,) = costs("elementwise", "upsample_nearest2x", in_shapes=[(10, 10, 10)],
                  out_shape=(10, 20, 20), precision="fp32")
    assert (up.bytes_read, up.bytes_written) == (4000, 16000)
    (add,) = costs("elementwise", "add", in_shapes=[(1, 10, 10, 10), (1, 10, 1, 1)],
                   out_shape=(1, 10, 10, 10), precision="fp16")
    assert (add.bytes_read, add.bytes_written) == (2020, 2000)
    (ln,) = costs("layer_norm", "rowwise", rows=77, dim=768, precision="fp32")
    assert ln.bytes_written == 77 * 768 * 4
