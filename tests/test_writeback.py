"""The write-back term: the probe's fit (sdsim/calibration/writeback.py), the runtime's copy that
writes its inputs, and the predictor's term (sdsim/cost/writeback.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sdsim.calibration import writeback as probe
from sdsim.cost.waves import KernelTime
from sdsim.cost.writeback import Writeback, charge
from sdsim.errors import SdsimError

BW = 3e12          # bytes/s
SIZES_MB = [4.0, 16.0, 64.0, 160.0, 400.0]


def _probes(dirty_mb, us_per_mb, share=0.8, noise_us=0.0, hidden_us=0.0, seed=0):
    """Two variants' probe rows as the model makes them (hand-written: min(W, dirty) x per MB x
    share, less what the launch overlap hides behind the copy), each dispatch's bytes set so
    that its memory share is `share`, plus uniform noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant in ("elementwise/add", "group_norm/fused"):
        for w in SIZES_MB:
            clean = 10.0 + w / 2
            delta = min(w, dirty_mb) * us_per_mb * share + rng.uniform(-noise_us, noise_us)
            rows.append({"variant": variant, "shape": {}, "written_bytes": int(w * 1e6),
                         "dispatch_bytes": share * BW * clean * 1e-6, "copy_us": w / 3,
                         "clean_us": clean, "after_us": clean + delta - hidden_us,
                         "hidden_us": hidden_us})
    return rows


@pytest.mark.parametrize("dirty_mb, us_per_mb", [(50.0, 0.33), (20.0, 0.5), (120.0, 0.2)])
def test_fit_recovers_the_term_that_made_the_deltas(dirty_mb, us_per_mb):
    dirty, per_byte = probe.fit(_probes(dirty_mb, us_per_mb, noise_us=0.2), BW)
    assert dirty / 1e6 == pytest.approx(dirty_mb, rel=0.1)
    assert per_byte * 1e12 == pytest.approx(us_per_mb, rel=0.1)


def test_what_the_launch_overlap_hid_behind_the_copy_is_added_back():
    """The predictor subtracts the launch overlap from a pipeline's dispatch and adds the
    write-back: a probe measured 2 us faster after its copy than the term alone makes it must
    fit the same term, not a smaller one."""
    plain = probe.fit(_probes(50.0, 0.1), BW)
    hid = probe.fit(_probes(50.0, 0.1, hidden_us=2.0), BW)
    assert hid == pytest.approx(plain)
    rows = _probes(50.0, 0.1, hidden_us=2.0)
    assert probe.delta(rows[-1]) == pytest.approx(50.0 * 0.1 * 0.8)
    overlap = {"predecessor": "linear/tiled", "hidden_us": 3.0, "over_us": 30.0,
               "lead_dispatch_us": 6.0}
    assert probe._hidden(overlap, 60.0) == pytest.approx(3.0e-6 * (1 - 0.2))
    assert probe._hidden(overlap, 3.0) == 0.0
    assert probe._hidden(None, 60.0) == 0.0
    assert probe._hidden(dict(overlap, hidden_us=0.0), 60.0) == 0.0


def test_the_fit_divides_each_delta_by_the_dispatch_s_memory_share():
    """The same deltas from dispatches half as memory-bound mean twice the cost per byte for a
    fully memory-bound one: the predictor multiplies by the share again."""
    full = probe.fit(_probes(50.0, 0.3, share=1.0), BW)
    half = probe.fit(_probes(50.0, 0.6, share=0.5), BW)
    assert half[1] == pytest.approx(full[1], rel=0.02)
    rows = _probes(50.0, 0.3, share=0.5)
    assert probe.share(rows[0], BW) == pytest.approx(0.5)
    assert probe.share(dict(rows[0], dispatch_bytes=10 * rows[0]["dispatch_bytes"]), BW) == 1.0


def test_deltas_growing_past_every_input_measured_credit_no_more_than_the_largest():
    """Deltas still growing at the largest input fit any dirty from it up equally; the fit keeps
    the smallest, so inputs larger than any probed are not charged for more."""
    dirty, _ = probe.fit(_probes(5000.0, 0.3), BW)
    assert dirty / 1e6 == pytest.approx(max(SIZES_MB), rel=0.05)


def test_no_term_unless_every_variant_pays_at_its_two_largest_inputs():
    rows = _probes(50.0, 0.3)
    rows[4]["after_us"] = rows[4]["clean_us"] - 0.1      # add: faster after its largest copy
    assert probe.fit(rows, BW) == (0.0, 0.0)
    rows = _probes(50.0, 0.3)
    rows[0]["after_us"] = rows[0]["clean_us"] - 1.0      # a small input's noise is allowed
    assert probe.fit(rows, BW)[0] > 0
    assert probe.fit([], BW) == (0.0, 0.0)


@pytest.mark.parametrize("noise_us", [0.0, 1.0])
def test_deltas_that_do_not_rise_with_the_bytes_written_give_no_term(noise_us):
    """Every probe paying the same (a knee below the smallest input written, as an H100's
    probes of 2026-12-07 23:14 fitted: 0.48 MB under inputs of 0.96 MB and more; with noise the
    knee may land on the smallest) is a constant the probe cannot tell from noise or the launch
    overlap; the same deltas rising with the written bytes up to their knee make the term."""
    flat = _probes(1.0, 3.0, noise_us=noise_us, seed=3)
    assert all(probe.delta(r) > 0 for r in flat)
    assert probe.fit(flat, BW) == (0.0, 0.0)
    assert probe.fit(_probes(40.0, 3.0 / 40, noise_us=noise_us, seed=3), BW)[0] > 0


def test_the_probes_are_synthetic_shapes_the_sweep_would_accept():
    from sdsim import kernels
    from sdsim.calibration.sweep import is_sd_layer

    for key, shapes in probe.PROBES:
        record = kernels.get(*key.split("/"))
        sizes = [record.costs("fp32", **s)[0].bytes_read for s in shapes]
        assert sizes == sorted(sizes) and sizes[0] < 8e6 and sizes[-1] > 200e6
        for s in shapes:
            assert not is_sd_layer(record, s)


def _t(us, memory_us, why="model"):
    return KernelTime(0.0, memory_us * 1e-6, us * 1e-6, "memory", why)


def test_an_op_s_first_dispatch_pays_the_write_back_of_what_the_one_before_wrote():
    """dirty 50 MB at 0.3 us per MB: behind 100 MB written, a fully memory-bound dispatch pays
    15 us, one half memory-bound 7.5 us; behind 10 MB, 3 us; a later dispatch of an op and the
    first of a component pay nothing."""
    term = Writeback(50e6, 0.3e-12)
    times = [_t(40, 40), _t(40, 40), _t(40, 20), _t(20, 30), _t(10, 1)]
    written = [100e6, 100e6, 10e6, 1e6]
    out = charge(times, written, term, [True, True, True, True, False])
    assert [t.total_s * 1e6 for t in out] == pytest.approx([40, 55, 47.5, 23, 10])
    assert out[0] is times[0] and out[4] is times[4]
    assert "plus 15 us writing back the 50 MB the previous dispatch left dirty" in out[1].why
    assert out[1].why.startswith("model")
    assert charge(times, written, None, [True] * 5) == times


def test_the_profile_s_writeback_section_reaches_the_predictor(tmp_path):
    """A coefficient set's `writeback` section prices the calls of its precision only, each op's
    first dispatch by its predecessor's written bytes; zero is no term; a negative field is
    refused by name."""
    from sdsim.backends.trace import trace_component
    from sdsim.cost.predict import predict_component
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import PRESETS
    from sdsim.testing.fixtures import h100_profile_with

    def load(section, name):
        return h100_profile_with(tmp_path, "writeback", section, name)

    plain = load(None, "plain.yaml")
    term = load({"dirty_mb": 0.05, "us_per_mb": 20.0}, "term.yaml")
    assert plain.writeback_for("fp16") is None and term.writeback_for("fp32") is None
    got = term.writeback_for("fp16")
    assert (got.dirty, got.per_byte) == pytest.approx((5e4, 20e-12))
    assert load({"dirty_mb": 0, "us_per_mb": 0}, "zero.yaml").writeback_for("fp16") is None
    with pytest.raises(SdsimError, match="us_per_mb"):
        load({"dirty_mb": 50, "us_per_mb": -1.0}, "bad.yaml")

    g = trace_component("unet", PRESETS["tiny"], 32, 2, "fp16")
    opt = parse_opt("paper")
    a = predict_component(g, 1, plain, opt, "fp16").kernels
    b = predict_component(g, 1, term, opt, "fp16").kernels
    assert b[0].time == a[0].time
    charged = 0
    for prev, x, y in zip(a, a[1:], b[1:]):
        t = x.time
        expect = min(prev.call.bytes_written, 5e4) * 20e-12 * min(1, t.memory_s / t.total_s)
        if x.call.op_index == prev.call.op_index:   # timed behind it in calibration: no term
            expect = 0.0
        charged += expect > 0
        assert y.time.total_s - t.total_s == pytest.approx(expect, abs=1e-15)
    assert charged
    fp32 = [k.time for k in predict_component(g, 1, term, opt, "fp32").kernels]
    assert fp32 == [k.time for k in predict_component(g, 1, plain, opt, "fp32").kernels]


def test_the_calibration_writes_the_probe_s_fit_and_reports_every_probe():
    from sdsim.calibration.write import _copied, _writeback, _writeback_lines

    rows = _probes(50.0, 0.3, share=1.0)
    stored = {"lead": 100, "repeat": 9, "bandwidth": BW, "probes": rows}
    assert _writeback(stored) == {"dirty_mb": pytest.approx(50.0, rel=0.01),
                                  "us_per_mb": pytest.approx(0.3, rel=0.01)}
    text = "\n".join(_writeback_lines(stored))
    assert "dirty 50 MB, 0.3 us per MB" in text and "3000 GB/s" in text
    assert all(f" {c} " in text for c in ("written MB", "copy us", "after copy us", "overlap us",
                                          "delta us", "memory share"))
    table = [line for line in text.splitlines() if line.startswith("| elementwise/add")]
    assert len(table) == len(SIZES_MB)
    # the section and the report fit the stored probes by today's rule
    flat = dict(stored, probes=_probes(1.0, 3.0))
    assert probe.term(flat) == (0.0, 0.0) and probe.term(stored)[0] > 0
    assert "no term" in "\n".join(_writeback_lines(flat))
    assert "Not measured" in "\n".join(_writeback_lines(None))
    inplace = dict(stored, probes=[{k.replace("written_bytes", "rewritten_bytes"): v
                                    for k, v in p.items()} for p in rows])
    assert "not applied" in "\n".join(_writeback_lines(inplace))
    assert not _copied(inplace) and _copied(stored) and not _copied(None)


def test_copy_words_writes_each_destination_with_its_source_s_values():
    """The probe's copy writes each input from its duplicate: the timed dispatch after it reads
    the same inputs as the clean run."""
    pytest.importorskip("pyopencl")
    from sdsim.cl.runtime import Runtime

    rt = Runtime()
    x = np.random.default_rng(0).standard_normal(100_003).astype(np.float32)
    h = np.arange(8, dtype=np.float16)
    bufs = [rt.to_device(x, "fp32", "x"), rt.to_device(h, "fp16", "h")]
    pairs = [(rt.duplicate(b), b) for b in bufs]
    zeros = [rt.to_device(np.zeros_like(x), "fp32", "z"), rt.to_device(np.zeros_like(h), "fp16",
                                                                        "z16")]
    events = rt.copy_words([(pairs[0][0], zeros[0]), (pairs[1][0], zeros[1])])
    rt.finish()
    assert len(events) == 2 and all(e.profile.end >= e.profile.start for e in events)
    np.testing.assert_array_equal(rt.from_device(zeros[0], x.shape, "fp32"), x)
    np.testing.assert_array_equal(rt.from_device(zeros[1], h.shape, "fp16"), h)
    rt.copy_words(pairs)
    np.testing.assert_array_equal(rt.from_device(bufs[0], x.shape, "fp32"), x)
