"""`sdsim predict --plot`: a PNG of the time per component split by kernel class, whose bars
are the prediction's own numbers."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

import sdsim
from sdsim import plot
from sdsim.cli import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def result():
    return sdsim.predict(device="s23ultra", model="tiny", steps=5, scheduler="ddim")


def test_breakdown_is_the_kernel_rows_summed(result):
    """Per component and class: the --by kernel rows of one call (an independent listing of the
    dispatches), times the component's calls; per component: the JSON's latency_s."""
    data = plot.breakdown(result.prediction)
    obj = result.to_json()
    assert list(data) == list(obj["components"])
    want = {}
    for r in result.rows("kernel"):
        comp = r["id"].split("/", 1)[0]
        calls = obj["components"][comp]["calls"]
        by = want.setdefault(comp, {})
        by[r["class"]] = by.get(r["class"], 0.0) + r["latency_s"] * calls
    assert data.keys() == want.keys()
    for comp, by in data.items():
        assert by == pytest.approx(want[comp], rel=1e-12)
        assert sum(by.values()) == pytest.approx(obj["components"][comp]["latency_s"], rel=1e-12)


def test_the_bars_drawn_are_the_component_totals(result):
    """The figure's bar segments, summed per bar, are the components' totals; the title names
    device, resolution, steps, optimizations and total."""
    fig = plot.figure(result.prediction)
    (ax,) = fig.axes
    obj = result.to_json()
    bars = {}
    for patch in ax.patches:
        y = round(patch.get_y() + patch.get_height() / 2)
        bars[y] = bars.get(y, 0.0) + patch.get_width()
    # the first component is drawn on top (barh counts from the bottom)
    totals = [c["latency_s"] for c in obj["components"].values()][::-1]
    assert [bars[i] for i in range(len(totals))] == pytest.approx(totals, rel=1e-12)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == \
        {cls for c in plot.breakdown(result.prediction).values() for cls in c}
    title = ax.get_title()
    for part in ("s23ultra", f"{obj['total_s']:.3g} s", f"{obj['resolution']}x", "5 steps ddim",
                 obj["opt"]):
        assert part in title


def test_cli_writes_a_png_and_the_api_too(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["predict", "--device", "s23ultra", "--model", "tiny", "--plot", str(out),
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_s"] > 0   # stdout stays the JSON
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1000, 400)
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 5                 # not a blank canvas
    api = tmp_path / "a.png"
    sdsim.predict(device="s23ultra", model="tiny").plot(api)
    with Image.open(api) as img:
        assert img.size == (1000, 400)


def test_without_matplotlib_one_line_says_what_to_install(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)   # as if not installed: import fails
    out = tmp_path / "p.png"
    assert main(["predict", "--device", "s23ultra", "--model", "tiny", "--plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install sdsim[plot]" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
