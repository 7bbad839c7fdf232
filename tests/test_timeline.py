"""Kernel timelines as Chrome/Perfetto trace files: the format, the tracks, and the slices
matching the kernel plan."""

import json
from collections import Counter

import jsonschema
import pytest

from sdsim.cli import main
from sdsim.cost.predict import predict
from sdsim.cost.profile import load_profile
from sdsim.lower.options import parse_opt
from sdsim.timeline import MEASURED, PREDICTED, SCHEMA


def _tracks(obj, pid):
    """{track name: [X events]} of one process, and the process name."""
    names = {e["tid"]: e["args"]["name"] for e in obj["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == pid}
    proc = next(e["args"]["name"] for e in obj["traceEvents"]
                if e["ph"] == "M" and e["name"] == "process_name" and e["pid"] == pid)
    out = {n: [] for n in names.values()}
    for e in obj["traceEvents"]:
        if e["ph"] == "X" and e["pid"] == pid:
            out[names[e["tid"]]].append(e)
    return proc, out


def _no_overlap(events):
    """Slices of one track follow each other exactly: Perfetto drops a complete event that
    overlaps its neighbour by any amount (seen: 109 dispatches of the S23 Ultra trace dropped as
    'slice_drop_overlapping_complete_event' when float sums overshot by a rounding error)."""
    def ns(us):   # how Perfetto's JSON importer reads a time
        return int(us * 1000.0)

    ev = sorted(events, key=lambda e: e["ts"])
    assert all(ns(a["ts"]) + ns(a["dur"]) <= ns(b["ts"]) for a, b in zip(ev, ev[1:]))


def test_predict_trace_tracks_match_the_plan(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["predict", "--device", "s23ultra", "--trace", str(out), "--format",
                 "json"]) == 0
    total = json.loads(capsys.readouterr().out)["total_s"]
    obj = json.loads(out.read_text())
    jsonschema.validate(obj, SCHEMA)
    proc, tracks = _tracks(obj, PREDICTED)
    assert proc == "predicted on s23ultra"
    pred = predict(load_profile("s23ultra"), parse_opt("paper"))
    assert set(tracks) == {"pipeline", "text_encoder", "unet", "vae_decoder"}
    for c in pred.components:
        slices = tracks[c.name]
        assert len(slices) == len(c.kernels)
        assert Counter(e["args"]["identity"] for e in slices) == Counter(
            k.call.identity for k in c.kernels)
        # each rounded to the nanosecond and drawn 1 ns short of the next (sdsim.timeline._process)
        assert sum(e["dur"] for e in slices) == pytest.approx(c.latency_per_call * 1e6,
                                                              abs=1.5e-3 * len(slices))
        assert all(e["args"]["why"] and e["args"]["flops"] >= 0 for e in slices)
        _no_overlap(slices)
    pipeline = tracks["pipeline"]
    assert [e["name"] for e in pipeline][:2] == ["text_encoder", "unet 1/21"]
    assert len(pipeline) == 1 + 21 + 1
    _no_overlap(pipeline)
    end = max(e["ts"] + e["dur"] for e in pipeline)
    # every dispatch rounded to the nanosecond: 23 s of 17,000 dispatches stay within 3 us
    assert end == pytest.approx(total * 1e6, rel=1e-7)
    for c in pred.components:   # the first call's dispatches lie inside its pipeline slice
        first = next(e for e in pipeline if e["name"].split()[0] == c.name)
        assert min(e["ts"] for e in tracks[c.name]) == first["ts"]
        assert max(e["ts"] + e["dur"] for e in tracks[c.name]) <= \
            first["ts"] + first["dur"] + 1e-3


def test_validate_trace_has_measured_beside_predicted(plat, tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["validate", "--device", "pocl-cpu", "--platform", plat, "--model", "tiny",
                 "--resolution", "32", "--precision", "fp32", "--warmup", "0", "--repeat", "1",
                 "--report", "none", "--trace", str(out), "--format", "json"]) == 0
    obj = json.loads(out.read_text())
    jsonschema.validate(obj, SCHEMA)
    _, pred = _tracks(obj, PREDICTED)
    proc, meas = _tracks(obj, MEASURED)
    assert proc.startswith("measured on ")
    assert len(pred["unet"]) == len(meas["unet"]) > 50
    assert [e["args"]["identity"] for e in pred["unet"]] == \
        [e["args"]["identity"] for e in meas["unet"]]
    assert all(e["dur"] > 0 for e in meas["unet"])
    _no_overlap(meas["unet"])


@pytest.mark.parametrize("field,value", [("dur", -1), ("tid", 0)])
def test_schema_rejects_what_viewers_reject(field, value):
    bad = {"traceEvents": [{"name": "k", "cat": "gemm", "ph": "X", "ts": 0, "dur": 1,
                            "pid": 1, "tid": 1, field: value}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
