"""`sdsim bench --suite sd`: every variant at the UNet's own layer shapes (the tiny preset, on the
default OpenCL device), checked against an independent trace of the same UNet."""

import contextlib
import io
import json
from collections import Counter

import pytest

from sdsim import schemas
from sdsim.cli import main

pytestmark = pytest.mark.opencl

RES = 32            # the tiny UNet at a 16x16 latent: every block type, a few seconds on PoCL
#: the op kind each family runs; elementwise records are named for their op kind
FAMILY_KINDS = {"conv2d": {"conv2d"}, "linear": {"linear"}, "attention": {"attention"},
                "group_norm": {"group_norm"}, "layer_norm": {"layer_norm"}, "gelu": {"geglu"}}
ELEMENTWISE = {"add", "concat", "silu", "nchw_to_nlc", "nlc_to_nchw", "upsample_nearest2x",
               "timestep_embedding", "gelu", "quick_gelu", "embedding"}


def bench(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["bench", "--suite", "sd", "--model", "tiny", "--resolution", str(RES),
                   "--format", "json", *argv])
    return rc, json.loads(out.getvalue()), err.getvalue()


@pytest.fixture(scope="module")
def suite():
    """The whole tiny-UNet suite, peak and bandwidth measured in the run, no case skipped."""
    return bench("--repeat", "1", "--point-budget-s", "1000")


def fmt(v) -> str:
    """A value as the bench's shape strings write it (1x2x3, shapes joined by commas)."""
    if isinstance(v, (tuple, list)):
        if v and isinstance(v[0], (tuple, list)):
            return ",".join(fmt(x) for x in v)
        return "x".join(str(x) for x in v)
    return str(v)


def parse(shape: str) -> frozenset:
    return frozenset(tuple(kv.split("=", 1)) for kv in shape.split())


@pytest.fixture(scope="module")
def unet_ops():
    """Counter of (op kind, shape items) over an independent trace of the tiny UNet: the op's
    attributes, its tensor shapes for elementwise ops, and the timestep embedding's call
    arguments from the model config."""
    from sdsim.backends.trace import trace_component
    from sdsim.model.presets import load_model_config

    cfg = load_model_config("tiny")
    graph = trace_component("unet", cfg, resolution=RES, batch=2, precision="fp32")
    found = Counter()
    for op in graph.ops:
        items = {k: fmt(v) for k, v in op.attrs.items()}
        if op.kind in ELEMENTWISE:
            items["in"] = fmt([tuple(t.shape) for t in op.inputs])
            items["out"] = fmt(tuple(op.output.shape))
        if op.kind == "timestep_embedding":
            items.update(flip_sin_to_cos=str(cfg.unet.flip_sin_to_cos),
                         shift=str(float(cfg.unet.freq_shift)))
        found[(op.kind, frozenset(items.items()))] += 1
    return found


def test_every_case_ran_and_passed_its_check(suite):
    rc, res, _ = suite
    assert rc == 0
    schemas.validate("bench", res)
    rows = res["rows"]
    assert rows and res["peak_source"].startswith("measured")
    for r in rows:
        assert r["status"] == "ran" and r["ok"] is True, r
        assert r["repeat"] == 1 and r["time_s"] > 0
        assert 0 <= r["max_abs_err"] < float("inf")
    assert {r["family"] for r in rows} == set(FAMILY_KINDS) | {"elementwise"}


def test_shapes_and_calls_are_the_unets(suite, unet_ops):
    """The shapes listed are exactly the traced UNet's distinct ops, each with its number of
    calls, and the calls add up to the number of ops of each family's kinds."""
    rows = suite[1]["rows"]
    listed = {(r["op"], parse(r["shape"])): r["calls"] for r in rows}
    assert dict(listed) == dict(unet_ops)
    for r in rows:
        assert r["op"] in FAMILY_KINDS.get(r["family"], {r["variant"]})
    for kinds in FAMILY_KINDS.values():
        listed_calls = sum(n for (kind, _), n in listed.items() if kind in kinds)
        assert listed_calls == sum(n for (kind, _), n in unet_ops.items() if kind in kinds)
    assert sum(listed.values()) == sum(unet_ops.values())


def test_variants_per_shape(suite):
    """Every record that can run a shape runs it: Winograd only at 3x3 stride-1 convs, all three
    attention variants, both GroupNorms and GEGLUs; the baseline first."""
    by_shape = {}
    for r in suite[1]["rows"]:
        by_shape.setdefault((r["family"], r["op"], r["shape"]), []).append(r["variant"])
    for (family, op, shape), variants in by_shape.items():
        items = dict(parse(shape))
        if family == "conv2d":
            want = {"direct", "im2col_gemm"}
            if items["k"] == "3" and items["stride"] == "1":
                want |= {"winograd_f2", "winograd_f4", "winograd_f6"}
            base = "direct"
        else:
            want, base = {"attention": ({"naive", "partial_softmax", "flash"}, "naive"),
                          "group_norm": ({"naive", "fused"}, "naive"),
                          "gelu": ({"standalone", "geglu_fused"}, "standalone"),
                          "linear": ({"tiled"}, "tiled"),
                          "layer_norm": ({"rowwise"}, "rowwise"),
                          "elementwise": ({op}, op)}[family]
        assert set(variants) == want and len(variants) == len(want), (family, shape)
        assert variants[0] == base


def test_fractions_speedups_and_fastest(suite):
    res = suite[1]
    rows = res["rows"]
    bw = res["bandwidth_bytes_per_s"]
    shapes = {}
    for r in rows:
        peak = res["peak_flops_per_s"][r["precision"]]
        assert r["frac_peak"] == pytest.approx(r["flops_per_s"] / peak, rel=1e-9)
        if r["bound"] == "memory":
            assert r["frac_bw"] == pytest.approx(r["bytes_per_s"] / bw, rel=1e-9)
        else:
            assert r["bound"] == "compute" and r["frac_bw"] is None
        shapes.setdefault((r["op"], r["shape"]), []).append(r)
    for group in shapes.values():
        base = next(r for r in group if r["variant"] == r["baseline"])
        for r in group:
            assert r["speedup"] == pytest.approx(base["time_s"] / r["time_s"], rel=1e-9)
        fastest = [r for r in group if r["fastest"]]
        assert len(fastest) == 1
        assert fastest[0]["time_s"] == min(r["time_s"] for r in group)


def test_summary_is_time_weighted(suite):
    """Each family/variant summary: total FLOPs over total time (by calls), over the peak."""
    res = suite[1]
    rows = res["rows"]
    peak = res["peak_flops_per_s"]["fp32"]
    for s in res["summary"]:
        if s["family"] == "all":
            sel = [r for r in rows if r["fastest"]]
        elif s["variant"] == "(fastest)":
            sel = [r for r in rows if r["family"] == s["family"] and r["fastest"]]
        else:
            sel = [r for r in rows if (r["family"], r["variant"]) == (s["family"], s["variant"])]
        t = sum(r["calls"] * r["time_s"] for r in sel)
        flops = sum(r["calls"] * r["flops_per_s"] * r["time_s"] for r in sel)
        assert s["shapes_run"] == s["shapes"] == len(sel)
        assert s["calls"] == sum(r["calls"] for r in sel)
        assert s["time_per_call_s"] == pytest.approx(t, rel=1e-9)
        assert s["frac_peak"] == pytest.approx(flops / t / peak, rel=1e-9)
    conv = {s["variant"]: s for s in res["summary"] if s["family"] == "conv2d"}
    assert conv["(fastest)"]["time_per_call_s"] <= min(
        conv[v]["time_per_call_s"] for v in ("direct", "im2col_gemm"))


def test_over_budget_cases_are_listed_as_skipped():
    """A case over the per-point budget is a row marked skipped, never dropped; nothing runs."""
    rc, res, _ = bench("--family", "group_norm", "--peak", "10", "--bandwidth", "10",
                       "--point-budget-s", "1e-9")
    assert rc == 0
    schemas.validate("bench", res)   # nulls where nothing ran
    rows = res["rows"]
    assert rows and all(r["status"].startswith("skipped: ") and "per point" in r["status"]
                        and r["ok"] is None and r["time_s"] is None for r in rows)
    assert {r["variant"] for r in rows} == {"naive", "fused"}
    assert res["peak_source"] == "--peak" and res["peak_flops_per_s"] == {"fp32": 10e9}
    assert not any(r["fastest"] for r in rows)


def test_limit_keeps_the_heaviest_shapes_per_family():
    """--limit 1 keeps the group norm shape with the most calls x roofline time of the baseline
    (FLOPs at --peak, bytes at --bandwidth per dispatch) and lists the others as left out."""
    from sdsim.kernels import costs

    rc, res, _ = bench("--family", "group_norm", "--limit", "1", "--peak", "10",
                       "--bandwidth", "10", "--point-budget-s", "1e-9")
    assert rc == 0
    assert len({r["shape"] for r in res["rows"]}) == 1
    left = res["left_out_by_limit"]
    assert left and all(x["family"] == "group_norm" for x in left)

    def weight(x):
        a = dict(parse(x["shape"]))
        shape = {"batch": int(a["batch"]), "channels": int(a["channels"]), "hw": int(a["hw"]),
                 "groups": int(a["groups"]), "eps": float(a["eps"]),
                 "act": None if a["act"] == "None" else a["act"]}
        return x["calls"] * sum(max(k.flops / 10e9, k.dram_bytes / 10e9)
                                for k in costs("group_norm", "naive", "fp32", **shape))

    assert weight(res["rows"][0]) >= max(weight(x) for x in left)


@pytest.mark.parametrize("argv,msg", [
    (["--suite", "foo"], "--suite: unknown suite 'foo'; expected one of records, sd"),
    (["--suite", "sd", "--quick"], "--quick selects the small shapes of --suite records"),
    (["--resolution", "256"], "--resolution applies to --suite sd only"),
    (["--suite", "sd", "--limit", "0"], "--limit must be at least 1"),
    (["--suite", "sd", "--model", "tiny", "--resolution", "31"], "resolution 31x31: the height must be"),
    (["--suite", "sd", "--family", "nosuch"], "unknown family or variant 'nosuch'"),
    (["--suite", "sd", "--peak", "0"], "--peak must be a positive number"),
])
def test_user_errors_are_one_line(capsys, argv, msg):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_slow_case_is_timed_by_its_check_run(rt):
    """A case whose check run alone exceeds the per-point time is not run again: its timing is
    the check run's (repeat 0); one that fits is timed `repeat` times."""
    from sdsim import kernels
    from sdsim.cl.bench import BenchCase, run_case

    case = BenchCase(kernels.get("linear", "tiled"), {"m": 5, "k": 7, "n": 9, "bias": True},
                     "fp32")
    slow = run_case(rt, case, repeat=3, max_timed_s=1e-12)
    assert slow["repeat"] == 0 and slow["ok"] and slow["time_s"] > 0
    assert run_case(rt, case, repeat=3, max_timed_s=1000)["repeat"] == 3
    assert "repeat" not in run_case(rt, case, repeat=1)   # the records suite's rows as before


def test_report_records_where_and_how_it_was_measured(tmp_path):
    """--report writes the tables with the command, date, commit, load, device and the kernel
    builds that ran, and the same rows as JSON beside it."""
    rep = tmp_path / "suite.md"
    rc, data, _ = bench("--repeat", "1", "--family", "linear", "--report", str(rep))
    assert rc == 0
    text = rep.read_text()
    assert text.startswith("# Kernel variants at the UNet's own layer shapes: ")
    assert "Produced by `sdsim bench --suite sd" in text and "GEMM builds: " in text
    assert "1-minute load" in text and data["opencl_device"] in text
    stored = json.loads(rep.with_suffix(".json").read_text())
    assert stored["rows"] == data["rows"] and stored["context"]["tuning"]["gemm"]
    schemas.validate("bench", stored)
