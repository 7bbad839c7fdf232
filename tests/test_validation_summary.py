"""benchmarks/validation_summary.py: each committed validation report's summary table (the
Markdown a run or its last --repredict wrote) against the same run predicted again by its
profile today; a profile recalibrated without its reports re-rendered fails here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("validation_summary",
                                              ROOT / "benchmarks/validation_summary.py")
summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summary)

FILES = summary.stored_runs()


def _markdown_summary(md: Path) -> dict:
    """{opt: {column: cell}} of the '## Summary' table of a validation report."""
    text = md.read_text().split("## Summary", 1)[1]
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]
            if not set(ln) <= set("|-: ")]
    out = {}
    for r in rows:   # the table ends where the next one (another header) starts
        if r.get("opt") in out or "goal" not in r:
            break
        out[r["opt"]] = r
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_report_says_what_its_profile_predicts_today(path):
    rows = summary.summary_rows([path])
    stored = _markdown_summary(path.with_suffix(".md"))
    assert {r["opt"] for r in rows} == set(stored)
    for r in rows:
        md = stored[r["opt"]]
        assert float(md["e2e_error_%"]) == pytest.approx(r["e2e %"], rel=2e-3, abs=2e-3)
        assert float(md["time_±10%"]) == pytest.approx(r["time within 10% %"], rel=2e-3,
                                                       abs=2e-2)
        assert md["goal"] == r["bar"]


def test_tally_counts_runs_by_device():
    rows = [{"device": "a", "bar": "met", "noise ceiling %": 95.0},
            {"device": "a", "bar": "missed", "noise ceiling %": 80.0},
            {"device": "b", "bar": "missed", "noise ceiling %": None}]
    assert summary.tally(rows) == [
        {"device": "a", "runs": 2, "met": 1, "noise ceiling under 90%": 1},
        {"device": "b", "runs": 1, "met": 0, "noise ceiling under 90%": 0}]


def test_the_committed_summary_names_every_stored_run():
    text = (ROOT / "reports/validations.md").read_text()
    for f in FILES:
        assert f"reports/{f.with_suffix('.md').name}" in text
    assert re.search(r"Command: `python benchmarks/validation_summary\.py", text)
