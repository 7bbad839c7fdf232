"""benchmarks/timing_statistic.py: the spreads between passes by hand, the cases it picks, and a
short run on this machine's OpenCL device."""

import json
import sys
from pathlib import Path

import pytest
from conftest import KERNEL_PLATFORM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
bench = pytest.importorskip("benchmarks.timing_statistic")


def test_spreads_and_passes_by_hand():
    """Two cases, two passes of five runs: the median moves with a slow spell that leaves the
    fastest run alone."""
    steady = [[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
    spell = [[2.0, 2.0, 2.0, 2.0, 2.0], [1.0, 3.0, 3.0, 3.0, 2.0]]   # pass 1 all slow
    rows = {r["statistic"]: r for r in bench.spreads([steady, spell])}
    # the median: 0% and 3/2 - 1 = 50%; the fastest run: 0% and 2/1 - 1 = 100%
    assert rows["median"]["median_spread_%"] == pytest.approx(25.0)
    assert rows["min"]["median_spread_%"] == pytest.approx(50.0)
    assert rows["min of first 3"]["p90_spread_%"] == pytest.approx(90.0)
    by_pass = bench.passes([steady, spell])
    assert [r["max_over_best_%"] for r in by_pass] == pytest.approx([100.0, 0.0])
    assert [r["median_over_best_%"] for r in by_pass] == pytest.approx([50.0, 0.0])


def test_pick_takes_distinct_cases_of_each_variant_in_turn():
    pts = ([{"variant": "a/x", "shape": {"n": i}, "measured_s": 0.01} for i in range(3)]
           + [{"variant": "b/y", "shape": {"n": 0}, "measured_s": 0.01}] * 2   # one case twice
           + [{"variant": "c/z", "shape": {"n": 0}, "measured_s": 0.5}])      # too long
    got = bench.pick(pts, 4)
    assert sorted(p["variant"] for p in got) == ["a/x", "a/x", "a/x", "b/y"]
    assert got[1]["variant"] != got[0]["variant"]   # variants alternate
    assert len({(p["variant"], p["shape"]["n"]) for p in got}) == 4


@pytest.mark.opencl
def test_a_short_run_reports_every_statistic_and_pass(tmp_path):
    out = tmp_path / "ts"
    source = Path(__file__).resolve().parents[1] / "reports/calibration-pocl-cpu.json"
    argv = ["--from", str(source), "--cases", "2", "--repeat", "5",
            "--passes", "2", "--report", str(out)]
    assert bench.main(argv + (["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else [])) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["statistic"] for r in data["statistics"]] == list(bench.STATISTICS)
    assert len(data["cases"]) == 2 and all(len(c["passes"]) == 2 for c in data["cases"])
    assert all(len(p) == 5 and min(p) > 0 for c in data["cases"] for p in c["passes"])
    assert "python benchmarks/timing_statistic.py --from" in out.with_suffix(".md").read_text()
