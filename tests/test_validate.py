"""`sdsim validate`: the metrics against hand-computed values, and a device run end to end."""

import json
import math

import numpy as np
import pytest

from conftest import KERNEL_PLATFORM

from sdsim import schemas
from sdsim.validation.compare import CallRow, metrics, noise


def _row(pred, meas, cls="gemm", i=0):
    return CallRow(f"unet/{i}/0:k", i, "linear", "s", "linear", "tiled", "k", cls, {}, 1.0, 1.0,
                   "compute", pred, meas)


def test_metrics_by_hand():
    rows = [_row(1.05, 1.0, i=0), _row(1.2, 1.0, i=1), _row(0.5, 2.0, i=2)]
    m = metrics(rows)
    assert m["measured_s"] == pytest.approx(4.0) and m["predicted_s"] == pytest.approx(2.75)
    assert m["e2e_error_pct"] == pytest.approx(100 * (2.75 - 4.0) / 4.0)
    assert m["rmspe_pct"] == pytest.approx(100 * math.sqrt((0.05**2 + 0.2**2 + 0.75**2) / 3))
    # within 10%: only the first call (1 of 3 calls, 1 of 4 s of measured time)
    assert m["acc10_calls_pct"] == pytest.approx(100 / 3)
    assert m["acc10_time_pct"] == pytest.approx(25.0)
    assert m["acc15_calls_pct"] == pytest.approx(100 / 3)
    assert m["acc15_time_pct"] == pytest.approx(25.0)


def test_calls_past_their_sweep_are_counted_and_listed():
    from dataclasses import replace

    from sdsim.cost.waves import BEYOND, Coefficients
    from sdsim.validation import report

    far = f"40 steps x 1 us + 2 us, {BEYOND} (320 steps, swept to 100) [calibrated]"
    rows = [_row(1.05, 1.0, i=0), replace(_row(2.0, 1.0, i=1), why=far),
            replace(_row(1.95, 2.0, i=2), why=far)]
    m = metrics(rows)
    assert m["beyond_time_pct"] == pytest.approx(75.0)          # 3 of 4 s of measured time
    assert m["beyond_acc10_time_pct"] == pytest.approx(100 * 2 / 3)   # 2 of those 3 s
    assert metrics(rows[:1])["beyond_acc10_time_pct"] is None
    class Profile:   # a profile whose one body records its sweep, or none that does
        def __init__(self, swept):
            self.swept = swept

        def coefficients_for(self, precision):
            return {"k": Coefficients(0, 0, 1e-6, 1, "calibrated", swept=self.swept)}

    swept = Profile(((1, 9), (1, 100), (1, 1), (0, 0)))
    text = "\n".join(report._beyond({"rows": rows, "metrics": m}, swept, "fp16"))
    assert "2, 75.0% of measured time, 67% of it within +-10%" in text
    assert "320 steps, swept to 100" in text and "unet/2/0:k" in text
    inside = {"rows": rows[:1], "metrics": metrics(rows[:1])}
    assert "No call lies beyond" in report._beyond(inside, swept, "fp16")[0]
    assert report._beyond(inside, Profile(()), "fp16") == []   # no sweep known: no claim


def test_noise_is_the_first_run_against_the_median_of_the_others():
    class Call:
        identity, op_index, op_kind, scope, family, variant, kernel = "c", 0, "k", "", "f", "v", "k"
        kernel_class, flops, dram_bytes = "gemm", 1.0, 1.0

    c = Call()
    runs = [[(c, 1.1)], [(c, 1.0)], [(c, 0.9)], [(c, 1.0)]]
    m = noise(runs)
    assert m["e2e_error_pct"] == pytest.approx(10.0)   # 1.1 against the median 1.0
    assert noise(runs[:1]) is None


def test_each_call_is_the_statistic_of_its_runs():
    """--statistic min takes each call's fastest run, in the times and in the noise ceiling
    (the fastest of the first half of the runs against that of the others); median its middle
    run (the noise ceiling: the first run against the median of the others)."""
    from types import SimpleNamespace

    from sdsim.validation.compare import timings

    a, b = SimpleNamespace(identity="a"), SimpleNamespace(identity="b")
    runs = [[(a, 3.0), (b, 1.0)], [(a, 2.0), (b, 4.0)], [(a, 5.0), (b, 2.0)]]
    assert [(c.identity, t) for c, t in timings(runs)] == [("a", 3.0), ("b", 2.0)]
    assert [(c.identity, t) for c, t in timings(runs, "min")] == [("a", 2.0), ("b", 1.0)]

    class Call:
        identity, op_index, op_kind, scope, family, variant, kernel = "c", 0, "k", "", "f", "v", "k"
        kernel_class, flops, dram_bytes = "gemm", 1.0, 1.0

    c = Call()
    runs = [[(c, 1.2)], [(c, 1.1)], [(c, 1.0)], [(c, 1.3)]]
    assert noise(runs, "min")["e2e_error_pct"] == pytest.approx(10.0)   # 1.1 against 1.0
    assert noise(runs)["e2e_error_pct"] == pytest.approx(100 * (1.2 - 1.1) / 1.1)
    assert noise(runs[:3], "min")["e2e_error_pct"] == pytest.approx(100 * (1.2 - 1.0) / 1.0)


def test_validate_times_calls_as_the_profile_s_calibration_did():
    """Without --statistic a validation reduces its runs as the calibration of the profile's
    coefficient set at that precision did; median where the set does not say (every profile
    calibrated before the option)."""
    import dataclasses

    from sdsim.commands.validate import _statistic
    from sdsim.cost.profile import load_profile

    pocl = load_profile("pocl-cpu")
    assert _statistic(pocl, "fp16") == _statistic(pocl, "fp32") == "median"
    sets = {p: (c, dict(m, statistic="min") if p == "fp32" else m)
            for p, (c, m) in pocl.coefficient_sets.items()}
    both = dataclasses.replace(pocl, coefficient_sets=sets)
    assert (_statistic(both, "fp32"), _statistic(both, "fp16")) == ("min", "median")


@pytest.mark.opencl
def test_validate_tiny_unet_json_and_report(plat, tmp_path, capsys):
    from sdsim.cli import main

    rep = tmp_path / "validation-t.md"
    assert main(["validate", "--device", "s23ultra", "--platform", plat, "--model", "tiny",
                 "--resolution", "64", "--opt", "paper", "none", "--precision", "fp32",
                 "--warmup", "0", "--repeat", "2", "--statistic", "min", "--report", str(rep),
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    schemas.validate("validate", out)
    assert out["statistic"] == "min" and "--repeat 2 leaves one run" in captured.err
    for key in ("e2e_error_pct", "rmspe_pct", "acc10_calls_pct", "acc10_time_pct", "measured_s",
                "predicted_s"):
        assert isinstance(out[key], float)
    assert out["e2e_error_pct"] == pytest.approx(
        100 * (out["predicted_s"] - out["measured_s"]) / out["measured_s"])
    assert [r["opt"] for r in out["runs"]] == ["paper", "none"]
    assert {e["optimization"] for e in out["optimization_effect"]} == {
        "groupnorm", "gelu", "attention", "conv3x3"}
    text = rep.read_text()
    assert "## Summary" in text and "largest absolute error" in text
    assert "## Noise ceiling" in text and "by kernel variant" in text
    assert "the fastest of 2 run(s)" in text and "the fastest of the others" in text
    assert rep.with_suffix(".png").stat().st_size > 1000
    # the raw results re-render the same report without a device
    again = tmp_path / "again.md"
    assert main(["validate", "--device", "s23ultra", "--replay", str(rep.with_suffix(".json")),
                 "--report", str(again), "--format", "json"]) == 0
    replayed = json.loads(capsys.readouterr().out)   # the run's JSON again, from its file
    schemas.validate("validate", replayed)
    assert dict(replayed, report=out["report"]) == out and replayed["report"] == str(again)
    assert again.read_text().split("## Summary")[1].replace("again.png", "validation-t.png") \
        == text.split("## Summary")[1]
    # without --device the stored run's profile is used; --report none is refused with --replay
    third = tmp_path / "third.md"
    assert main(["validate", "--replay", str(rep.with_suffix(".json")), "--report",
                 str(third)]) == 0
    assert third.read_text().split("## Summary")[1] == again.read_text().split("## Summary")[1] \
        .replace("again.png", "third.png")
    assert main(["validate", "--replay", str(rep.with_suffix(".json")), "--report", "none"]) == 2
    assert "--report none would write nothing" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.json").exists()
    _check_repredict(rep.with_suffix(".json"), tmp_path, capsys)


def _check_repredict(stored, tmp_path, capsys):
    """--replay --repredict keeps every measured time and predicts each call again with the
    profile given: the cost model's own prediction of the same plan on that profile."""
    from sdsim.backends.trace import trace_component
    from sdsim.cli import main
    from sdsim.cost.predict import predict_component
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import load_model_config
    from sdsim.validation import report

    other = tmp_path / "other.md"
    assert main(["validate", "--device", "pixel7", "--replay", str(stored), "--repredict",
                 "--report", str(other)]) == 0
    _, before, _ = report.load(stored)
    ctx, after, _ = report.load(other.with_suffix(".json"))
    assert ctx["repredicted"].startswith("every call predicted again") and \
        "Predictions: every call predicted again" in other.read_text()
    # the calibration cited is the new profile's (pixel7 has none), not the stored run's
    assert ctx["calibration"] == load_profile("pixel7").calibration.get("report")
    assert ctx["heldout"] is None and "held-out synthetic error" not in other.read_text()
    graph = trace_component("unet", load_model_config("tiny"), 64, 2, "fp32")
    for old, new in zip(before, after):
        want = {c.call.identity: c.time.total_s for c in predict_component(
            graph, 1, load_profile("pixel7"), parse_opt(new["opt"]), "fp32").kernels}
        assert [r.measured_s for r in new["rows"]] == [r.measured_s for r in old["rows"]]
        assert {r.identity: r.predicted_s for r in new["rows"]} == pytest.approx(want)
        assert any(a.predicted_s != b.predicted_s for a, b in zip(old["rows"], new["rows"]))
    capsys.readouterr()
    assert main(["validate", "--repredict", "--device", "pixel7"]) == 2
    assert "--replay" in capsys.readouterr().err


def test_validate_weights_runs_the_same_dispatches_on_a_checkpoint(tmp_path, capsys):
    """--weights PATH times a checkpoint: the device computes with the checkpoint's values (its
    output is the NumPy reference's on them, not the random run's), and the report names them.
    The kernel plan depends on shapes only, so the dispatches and their prediction are the
    random run's by construction; the CLI run checks the prediction through the whole command."""
    from sdsim.backends.numpy_backend import NumpyBackend
    from sdsim.backends.opencl.run import ComponentRunner, random_inputs
    from sdsim.cl.runtime import Runtime
    from sdsim.cli import main
    from sdsim.commands.validate import _checkpoint
    from sdsim.lower.options import parse_opt
    from sdsim.model.presets import PRESETS
    from sdsim.testing.fixtures import write_tiny_model

    folder = write_tiny_model(tmp_path / "m", seed=4)
    cfg, weights = _checkpoint(str(folder), "unet")
    assert cfg.unet.block_out_channels == PRESETS["tiny"].unet.block_out_channels  # its config
    rt = Runtime(KERNEL_PLATFORM)
    real = ComponentRunner(rt, "unet", cfg, parse_opt("paper"), "fp32", 32, 2, weights=weights)
    rand = ComponentRunner(rt, "unet", cfg, parse_opt("paper"), "fp32", 32, 2)
    inputs = random_inputs("unet", real.graph, cfg, 0)
    got, base = real.run(inputs), rand.run(inputs)
    F = NumpyBackend(weights, "fp32")
    want = real.fn(F, *(F.input(a) if a.ndim > 1 else a for a in inputs))
    np.testing.assert_allclose(got.output, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    assert not np.allclose(got.output, base.output)

    outs = []
    for extra in ([], ["--weights", str(folder)]):
        rep = tmp_path / f"v{len(extra)}.md"
        assert main(["validate", "--device", "s23ultra",
                     *(["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else []),
                     "--model", "tiny", "--resolution", "32", "--precision", "fp32",
                     "--warmup", "0", "--repeat", "1", "--report", str(rep),
                     "--format", "json", *extra]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["predicted_s"] == outs[1]["predicted_s"]
    assert f"weights of `{folder}`" in rep.read_text()


def test_validate_names_the_device_and_warns_before_a_long_cpu_run(capsys):
    from types import SimpleNamespace

    import pyopencl as cl

    from sdsim.cl.runtime import Runtime
    from sdsim.commands.validate import _slow_warning

    rt = Runtime(KERNEL_PLATFORM)
    cpu = bool(rt.device.type & cl.device_type.CPU)
    args = SimpleNamespace(component="unet", resolution=512, model="sd14")
    assert (_slow_warning(rt, args) is not None) == cpu
    assert _slow_warning(rt, SimpleNamespace(component="unet", resolution=256, model="sd14")) \
        is None
    assert _slow_warning(rt, SimpleNamespace(component="text_encoder", resolution=512,
                                             model="sd14")) is None


def test_text_encoder_workload_names_no_image_size():
    """The text encoder's runs take no image: its report's workload line states no pixel size
    (a stored run re-rendered from its JSON)."""
    from sdsim.cost.profile import load_profile
    from sdsim.paths import ROOT
    from sdsim.validation import report

    ctx, runs, effect = report.load(ROOT / "reports/validation-pocl-cpu-text_encoder-77.json")
    line = next(l for l in report.markdown(ctx, runs, effect, load_profile("pocl-cpu"), "x.png")
                .splitlines() if l.startswith("- Workload:"))
    assert "pixels" not in line and "token" in line
    ctx_unet = dict(ctx, component="unet", resolution=256)
    line = next(l for l in report.markdown(ctx_unet, runs, effect, load_profile("pocl-cpu"),
                                           "x.png").splitlines() if l.startswith("- Workload:"))
    assert "256x256 pixels" in line


def test_drift_reference_cases_are_the_longest_affordable_case_of_each_family():
    """A case's time is the sum of its dispatches; held-out cases and cases over MAX_CASE_S are
    passed over; one case per family, longest first, CASES at most."""
    from sdsim.validation import drift

    if drift.CASES < 5:
        pytest.skip("the cases below hold five families")
    def pt(variant, shape, t, heldout=False):
        return {"variant": variant, "shape": shape, "measured_s": t, "heldout": heldout}

    meas = {"points": [
        pt("linear/tiled", {"m": 1}, 0.004), pt("linear/tiled", {"m": 1}, 0.005),   # 9 ms
        pt("linear/tiled", {"m": 2}, 0.008),
        pt("linear/tiled", {"m": 3}, 0.5),                                         # too long
        pt("conv2d/direct", {"c": 1}, 0.002), pt("conv2d/direct", {"c": 2}, 0.02, heldout=True),
        pt("attention/naive", {"n": 1}, 0.001), pt("group_norm/fused", {"g": 1}, 0.003),
        pt("layer_norm/rowwise", {"r": 1}, 0.0005)]}
    got = drift.reference_cases(meas)
    assert [(v, s) for v, s, _ in got] == [("linear/tiled", {"m": 1}), ("group_norm/fused",
                                           {"g": 1}), ("conv2d/direct", {"c": 1}),
                                           ("attention/naive", {"n": 1}),
                                           ("layer_norm/rowwise", {"r": 1})]
    assert got[0][2] == pytest.approx(0.009)


def test_drift_measures_each_case_fed_as_the_calibration_fed_it(monkeypatch):
    """The drift check times its reference cases as their calibration did: behind a gate and
    behind its lead dispatches where it recorded them (host-fed with no lead for calibrations
    made before those options), its runs reduced by the validation's statistic."""
    from sdsim.calibration import sweep
    from sdsim.calibration.fit import Point
    from sdsim.validation import drift

    assert drift.feed({"sweep": {"feed": "gated", "lead": 100}}) == (True, 100)
    assert drift.feed({"sweep": {}}) == (False, 0)
    asked = []

    def measure(rt, record, shape, precision, gated, lead, statistic):
        asked.append((record.key, gated, lead, statistic))
        return [Point("k", record.key, shape, "k", None, 2e-3, 0.0)], False

    monkeypatch.setattr(sweep, "measure", measure)
    out = drift.measure(None, [("layer_norm/rowwise", {"rows": 8, "dim": 64, "eps": 1e-5}, 1e-3)],
                        "fp32", (True, 100), "min")
    assert asked == [("layer_norm/rowwise", True, 100, "min")] and out[0]["ratio"] == 2.0


def test_drift_sentence_flags_a_device_off_its_calibration_speed():
    from sdsim.validation import drift

    def cases(r):
        return [{"variant": "linear/tiled", "ratio": r}]

    steady = drift.summary(cases(1.02), cases(0.98))
    assert "**" not in drift.sentence(steady) and drift.warning(steady) is None
    slow = drift.summary(cases(1.30), cases(1.25))
    assert "30% slower than when it was calibrated" in drift.sentence(slow)
    assert "1.30x / 1.25x" in drift.warning(slow)
    assert "faster" in drift.sentence(drift.summary(cases(0.8), cases(0.9)))
    assert drift.sentence(None).startswith("not checked")


@pytest.mark.opencl
def test_validate_measures_the_device_against_its_calibration(tmp_path, capsys):
    """With a calibrated profile, validate measures calibration cases again before and after its
    runs, and the report, its stored run and the JSON output all carry the ratios."""
    from sdsim.cli import main
    from sdsim.paths import ROOT
    from sdsim.validation import drift

    if KERNEL_PLATFORM != "Portable Computing Language":
        pytest.skip("the pocl-cpu profile's calibration cases need PoCL building programs")
    rep = tmp_path / "validation-d.md"
    assert main(["validate", "--device", "pocl-cpu", "--platform", "Portable", "--model", "tiny",
                 "--resolution", "64", "--opt", "paper", "--precision", "fp32", "--warmup", "0",
                 "--repeat", "1", "--report", str(rep), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    schemas.validate("validate", out)
    assert out["device_drift"]["ratio_before"] > 0 and out["device_drift"]["ratio_after"] > 0
    ctx = json.loads(rep.with_suffix(".json").read_text())["ctx"]
    cal = json.loads((ROOT / "reports/calibration-pocl-cpu-fp32.json").read_text())
    for case in ctx["drift"]["before"]:   # calibrated times are the calibration's own
        then = sum(p["measured_s"] for p in cal["points"] if p["variant"] == case["variant"]
                   and p["shape"] == case["shape"])
        assert case["calibrated_s"] == pytest.approx(then)
        assert case["ratio"] == pytest.approx(case["now_s"] / then)
    families = {p["variant"].split("/")[0] for p in cal["points"]}
    n = min(len(families), drift.CASES)
    assert len({c["variant"].split("/")[0] for c in ctx["drift"]["before"]}) == n
    assert f"- Device speed against its calibration: {n} calibration cases" in rep.read_text()


def test_validate_opt_settings_are_predicts_spelling_split_at_set_names():
    from sdsim.lower.options import split_settings

    assert split_settings(["paper", "none"]) == split_settings(["paper,none"]) == ["paper", "none"]
    assert split_settings(["none,groupnorm=fused"]) == ["none,groupnorm=fused"]   # as predict
    assert split_settings(["paper,none,groupnorm=fused", "attention=flash,conv3x3=direct"]) == [
        "paper", "none,groupnorm=fused", "attention=flash,conv3x3=direct"]


@pytest.mark.opencl
def test_opt_comma_list_runs_what_the_words_run(plat, tmp_path, capsys):
    """`--opt paper,none` and `--opt paper none` give the same runs (same plans, so the same
    predictions); the CSV parses with one row per setting."""
    import csv
    import io


    from sdsim.cli import main

    argv = ["validate", "--device", "s23ultra", "--platform", plat, "--model", "tiny",
            "--resolution", "32", "--precision", "fp32", "--warmup", "0", "--repeat", "1",
            "--report", "none"]
    assert main([*argv, "--opt", "paper", "none", "--format", "json"]) == 0
    words = json.loads(capsys.readouterr().out)["runs"]
    assert main([*argv, "--opt", "paper,none", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["opt"] for r in rows] == [r["opt"] for r in words] == ["paper", "none"]
    assert [float(r["predicted_s"]) for r in rows] == pytest.approx(
        [r["predicted_s"] for r in words])


def predict_formats() -> tuple:
    """The --format choices of `sdsim predict`."""
    import argparse

    from sdsim.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(next(a.choices for a in sub.choices["predict"]._actions if a.dest == "format"))


@pytest.mark.parametrize("fmt", predict_formats())
def test_every_format_of_a_replayed_run_parses(tmp_path, capsys, fmt):
    """validate offers predict's --format choices; each output parses, and the readable ones
    open with the OpenCL device the stored run was measured on."""
    import csv
    import io

    from sdsim.cli import main
    from sdsim.paths import ROOT

    stored = ROOT / "reports/validation-pocl-cpu-text_encoder-77.json"
    device = json.loads(stored.read_text())["ctx"]["device"]
    assert main(["validate", "--replay", str(stored), "--report", str(tmp_path / "r.md"),
                 "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        schemas.validate("validate", json.loads(out))
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["opt"] for r in rows] == ["paper", "none"]
        assert all(math.isfinite(float(r["e2e_error_pct"])) for r in rows)
    else:
        assert device in out.splitlines()[0] and "optimization" in out
        tables = [line for line in out.splitlines() if line.startswith("|")]
        assert bool(tables) == (fmt == "markdown")


@pytest.mark.opencl
@pytest.mark.parametrize("component", ["unet", "text_encoder", "vae_decoder"])
def test_validate_weights_dispatches_call_for_call_as_the_random_run(tmp_path, capsys,
                                                                    component):
    """`validate --weights PATH` enqueues exactly the random-weight run's dispatches, so its
    times can differ from that run's only by noise: for every --opt, the stored results hold the
    same number of calls and the same rows in the same order (identity, op, variant, kernel,
    FLOPs, bytes, the predicted time and its one-line explanation: everything but the measured
    time), and the --trace timelines are the same events but for their times (each measured
    dispatch with its global size, local size and steps: the geometry its launcher enqueues,
    tests/test_kernel_records.py). Measured times are not compared."""
    from sdsim.cli import main
    from sdsim.testing.fixtures import write_tiny_model
    from sdsim.timeline import MEASURED, PIPELINE_TID

    folder = write_tiny_model(tmp_path / "m", seed=4)
    stored, traces = [], []
    for name, extra in (("random", []), ("weights", ["--weights", str(folder)])):
        rep, trace = tmp_path / f"{name}.md", tmp_path / f"{name}-trace.json"
        assert main(["validate", "--device", "s23ultra",
                     *(["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else []),
                     "--model", "tiny", "--component", component, "--resolution", "32",
                     "--precision", "fp32", "--opt", "paper", "none", "--warmup", "0",
                     "--repeat", "1", "--report", str(rep), "--trace", str(trace),
                     "--format", "json", *extra]) == 0
        capsys.readouterr()
        stored.append(json.loads(rep.with_suffix(".json").read_text()))
        traces.append(json.loads(trace.read_text()))
    rand, real = stored
    assert rand["ctx"]["weights"] is None and real["ctx"]["weights"] == str(folder)
    assert [r["opt"] for r in rand["runs"]] == [r["opt"] for r in real["runs"]] == ["paper", "none"]

    def untimed(rows):
        return [{k: v for k, v in r.items() if k != "measured_s"} for r in rows]

    for a, b in zip(rand["runs"], real["runs"]):
        assert len(b["rows"]) == len(a["rows"]) > 0
        assert untimed(b["rows"]) == untimed(a["rows"])

    def timeless(events):
        return [{k: v for k, v in e.items() if k not in ("ts", "dur")} for e in events]

    assert timeless(traces[1]["traceEvents"]) == timeless(traces[0]["traceEvents"])
    assert traces[1]["metadata"] == traces[0]["metadata"]
    # the trace is the first --opt's run: one measured slice per row, each with its geometry
    dispatched = [e["args"] for e in traces[1]["traceEvents"]
                  if e["ph"] == "X" and e["pid"] == MEASURED and e["tid"] != PIPELINE_TID]
    assert [d["identity"] for d in dispatched] == [r["identity"] for r in real["runs"][0]["rows"]]
    assert all("global_size" in d and "local_size" in d and "steps" in d for d in dispatched)
