"""The launch-overlap term: the probe's fit (sdsim/calibration/overlap.py) and the predictor's
sequence term (sdsim/cost/overlap.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sdsim.calibration import overlap as probe
from sdsim.cost.overlap import Overlap, hide
from sdsim.cost.waves import KernelTime
from sdsim.errors import SdsimError

LENGTHS = [5.0, 10.0, 20.0, 40.0, 80.0, 160.0]


def _deltas(hidden, over, lead, noise=0.0, probes=4, seed=0):
    """Each probe's deltas as the model makes them (hand-written here: hidden x (min(1, P /
    over) - min(1, lead / over))), plus uniform noise of +-`noise` us."""
    rng = np.random.default_rng(seed)
    exact = [hidden * (min(1.0, p / over) - min(1.0, lead / over)) for p in LENGTHS]
    return [[d + rng.uniform(-noise, noise) for d in exact] for _ in range(probes)]


@pytest.mark.parametrize("hidden, over", [(2.0, 50.0), (1.2, 25.0), (3.0, 120.0)])
def test_fit_recovers_the_term_that_made_the_deltas(hidden, over):
    h, o = probe.fit(LENGTHS, _deltas(hidden, over, 3.0, noise=0.05), 3.0)
    assert h == pytest.approx(hidden, rel=0.1) and o == pytest.approx(over, rel=0.15)


def test_deltas_that_saturate_at_once_do_not_claim_a_short_predecessor_hides_it_all():
    """Flat deltas fit any over_us up to the shortest length equally; the fit keeps the longest
    of those, so a predecessor shorter than anything measured is not credited in full."""
    flat = [[1.5] * len(LENGTHS) for _ in range(4)]
    h, o = probe.fit(LENGTHS, flat, 2.0)
    assert o == pytest.approx(LENGTHS[0], rel=0.1) and h > 1.5


def test_no_term_unless_every_probe_gains_after_the_longest_dispatches():
    deltas = _deltas(2.0, 50.0, 3.0)
    deltas[2][-2] = -0.1      # one probe measured slower after the 80 us dispatch
    assert probe.fit(LENGTHS, deltas, 3.0) == (0.0, 0.0)
    assert probe.fit(LENGTHS, [[-1.0] * len(LENGTHS)] * 4, 3.0) == (0.0, 0.0)


def test_the_probes_are_synthetic_shapes_the_sweep_would_accept():
    from sdsim import kernels
    from sdsim.calibration.sweep import is_sd_layer

    for key, shape in probe.PROBES:
        assert not is_sd_layer(kernels.get(*key.split("/")), shape)
    gemm = kernels.get(*probe.PREDECESSOR.split("/"))
    for n in probe.PREDECESSORS:
        assert not is_sd_layer(gemm, {"m": n, "k": n, "n": n, "bias": True})


def _t(us, why="model"):
    return KernelTime(0.0, 0.0, us * 1e-6, "memory", why)


def test_a_dispatch_is_priced_by_what_its_predecessor_hides_beyond_a_lead_dispatch():
    """hidden 2 us, over 50 us, lead 2.5 us: after 100 us, 2 x (1 - 0.05) = 1.9 us hidden; after
    5 us, 2 x (0.1 - 0.05) = 0.1 us; after 8 us, 2 x (0.16 - 0.05) = 0.22 us; after 2 us
    (shorter than a lead dispatch) nothing; never more than half a dispatch; the first dispatch
    follows none."""
    term = Overlap(2e-6, 50e-6, 2.5e-6)
    times = [_t(100), _t(5), _t(2), _t(8), _t(100), _t(3)]
    out = hide(times, term)
    got = [t.total_s * 1e6 for t in out]
    assert got == pytest.approx([100, 5 - 1.9, 2 - 0.1, 8, 100 - 0.22, 1.5])
    assert out[0] is times[0] and out[3] is times[3]
    assert "1.9 us hidden behind the previous dispatch (100 us)" in out[1].why
    assert out[1].why.startswith("model")
    assert hide(times, None) == times


def test_only_an_op_s_first_dispatch_is_priced_by_its_predecessor():
    """A later dispatch of an op (a split GEMM's reduction) was calibrated right behind the
    same predecessor it follows in a plan, so the term leaves it as fitted; the op's first
    dispatch after another op's long one still gains."""
    term = Overlap(2e-6, 50e-6, 2.5e-6)
    times = [_t(100), _t(5), _t(100), _t(5)]
    out = hide(times, term, [True, False, True, True])
    assert [t.total_s * 1e6 for t in out] == pytest.approx([100, 5, 100 - 0.1, 5 - 1.9])
    assert out[1] is times[1]


def test_the_profile_s_overlap_section_reaches_the_predictor(tmp_path):
    """A coefficient set's `overlap` section prices the calls of its precision only; hidden_us 0
    (a probe that measured none) is no term; a negative one is refused naming the field."""
    from sdsim.backends.trace import trace_component
    from sdsim.cost.predict import predict_component
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import PRESETS
    from sdsim.testing.fixtures import h100_profile_with

    def load(section, name):
        return h100_profile_with(tmp_path, "overlap", section, name)

    plain = load(None, "plain.yaml")
    term = load({"hidden_us": 1.5, "over_us": 40.0, "lead_us": 2.0}, "term.yaml")
    assert plain.overlap_for("fp16") is None
    got = term.overlap_for("fp16")
    assert (got.hidden, got.over, got.lead) == pytest.approx((1.5e-6, 40e-6, 2e-6))
    assert term.overlap_for("fp32") is None
    assert load({"hidden_us": 0, "over_us": 0, "lead_us": 2.0}, "zero.yaml") \
        .overlap_for("fp16") is None
    with pytest.raises(SdsimError, match="hidden_us"):
        load({"hidden_us": -1.0, "over_us": 40.0, "lead_us": 2.0}, "bad.yaml")

    g = trace_component("unet", PRESETS["tiny"], 32, 2, "fp16")
    opt = parse_opt("paper")
    a = predict_component(g, 1, plain, opt, "fp16").kernels
    b = predict_component(g, 1, term, opt, "fp16").kernels
    assert b[0].time == a[0].time
    same_op = 0
    for prev, x, y in zip(a, a[1:], b[1:]):
        expect = min(1.5e-6 * (min(1, prev.time.total_s / 40e-6) - 2 / 40), x.time.total_s / 2)
        if x.call.op_index == prev.call.op_index:   # timed behind it in calibration: no term
            expect, same_op = 0.0, same_op + 1
        assert x.time.total_s - y.time.total_s == pytest.approx(max(0.0, expect), abs=1e-12)
    assert same_op
    assert any("hidden behind the previous dispatch" in k.time.why for k in b)
    fp32 = [k.time for k in predict_component(g, 1, term, opt, "fp32").kernels]
    assert fp32 == [k.time for k in predict_component(g, 1, plain, opt, "fp32").kernels]


def test_only_a_probe_behind_synthetic_gemms_makes_the_profile_s_term():
    """A probe stored before the GEMM predecessor (behind a compute-only dispatch) is reported
    but makes no `overlap` section; one behind GEMMs does, its report says it is applied."""
    from sdsim.calibration.write import _overlap_lines, overlap_applied, overlap_section

    rows = [{"variant": "elementwise/add", "shape": dict(probe.PROBES[0][1]), "lead_us": 6.0,
             "after_us": [6.0, 4.5]}]
    old = {"lengths_us": [5.0, 80.0], "lead_dispatch_us": 5.7, "lead": 100, "repeat": 9,
           "probes": rows, "hidden_us": 1.6, "over_us": 24.0}
    new = dict(old, predecessor=probe.PREDECESSOR, sizes=[32, 1024])
    assert not overlap_applied(old) and not overlap_applied(None) and overlap_applied(new)
    assert overlap_section(new) == {"hidden_us": 1.6, "over_us": 24.0, "lead_us": 5.7}
    text_old, text_new = "\n".join(_overlap_lines(old)), "\n".join(_overlap_lines(new))
    assert "Not applied" in text_old and "compute-only dispatch" in text_old
    assert "the predictor applies it" in text_new and "m = n = k = 32, 1024" in text_new
    row = next(line for line in text_new.splitlines() if line.startswith("| elementwise/add"))
    assert [c.strip() for c in row.strip("|").split("|")][-2:] == ["0", "1.5"]   # 6-6, 6-4.5
