"""`sdsim bench`: JSON records, family/precision filters, exit status, device errors."""

import json

import pytest

from sdsim.cli import main

pytestmark = pytest.mark.opencl

FIELDS = {"family", "variant", "shape", "precision", "time_s", "flops_per_s", "bytes_per_s",
          "max_abs_err", "ok"}


def run_json(capsys, *argv):
    """Exit status, the JSON's rows and stderr of a quick bench."""
    rc = main(["bench", "--quick", "--format", "json", "--repeat", "1", *argv])
    out = capsys.readouterr()
    return rc, json.loads(out.out)["rows"], out.err


def test_quick_conv_and_gemm_json(capsys):
    rc, rows, _ = run_json(capsys, "--family", "conv2d", "linear")
    assert rc == 0
    assert {r["family"] for r in rows} == {"conv2d", "linear"}
    variants = {(r["family"], r["variant"]) for r in rows}
    assert {("conv2d", v) for v in ("direct", "im2col_gemm", "winograd_f2", "winograd_f4",
                                     "winograd_f6")} <= variants
    assert {("linear", "tiled"), ("linear", "tiled_gelu")} <= variants
    assert {r["precision"] for r in rows} == {"fp32", "fp16"}
    for r in rows:
        assert FIELDS <= set(r)
        assert r["ok"] is True
        assert r["time_s"] > 0 and r["flops_per_s"] > 0 and r["bytes_per_s"] > 0
        assert 0 <= r["max_abs_err"] < float("inf")   # within tolerance is what "ok" says


def test_flops_per_s_is_cost_flops_over_time(capsys):
    """FLOP/s in a record is the variant's cost-formula FLOPs over its measured time."""
    from sdsim.kernels import costs
    rc, rows, _ = run_json(capsys, "--family", "linear/tiled", "--precision", "fp32")
    assert rc == 0 and len(rows) == 1
    r = rows[0]
    shape = dict(kv.split("=") for kv in r["shape"].split())
    m, k, n = (int(shape[d]) for d in "mkn")
    flops = sum(c.flops for c in costs("linear", "tiled", precision="fp32", m=m, k=k, n=n))
    assert flops == 2 * m * k * n + m * n   # multiply-adds and the bias
    assert r["flops_per_s"] == pytest.approx(flops / r["time_s"], rel=1e-9)


def test_failing_case_exits_1(capsys, monkeypatch):
    """A result outside tolerance gives ok: false and exit status 1, naming the variant."""
    from sdsim.cl.bench import BenchCase
    real = BenchCase.reference
    monkeypatch.setattr(BenchCase, "reference", lambda self, i: real(self, i) + 1.0)
    rc, rows, err = run_json(capsys, "--family", "linear/tiled", "--precision", "fp16")
    assert rc == 1 and rows and not any(r["ok"] for r in rows)
    assert "linear/tiled fp16" in err


@pytest.mark.parametrize("argv,msg", [
    (["--cl-device", "no-such-gpu"], "no OpenCL device matches 'no-such-gpu'"),
    (["--device", "no-such-gpu"], "unknown device 'no-such-gpu'"),   # a profile, as in predict
    (["--device", "pocl-cpu", "--tuning", "pixel7"], "name different profiles"),
    (["--family", "no_such_family"], "no bench cases for --family no_such_family"),
    (["--repeat", "0"], "--repeat must be at least 1"),
])
def test_user_errors_are_one_line(capsys, argv, msg):
    assert main(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_arith_needs_half_hardware_and_is_named(capsys):
    """--arith picks the arithmetic of the fp16 builds; a device without cl_khr_fp16 refuses
    half arithmetic in one line; the arithmetic a run used is printed."""
    from sdsim.cl.runtime import Runtime
    from sdsim.cl.vendors import intel_library
    rt = Runtime()
    if not rt.has_fp16:
        assert main(["bench", "--quick", "--arith", "fp16", "--family", "linear"]) == 2
        err = capsys.readouterr().err
        assert "no cl_khr_fp16" in err and err.count("\n") == 1
    if intel_library() is None:
        pytest.skip("Intel's OpenCL CPU runtime is not installed")
    rc, rows, _ = run_json(capsys, "--platform", "Intel", "--arith", "fp16acc", "--family",
                           "linear", "--precision", "fp16")
    assert rc == 0 and rows and all(r["ok"] for r in rows)
    assert {r["arith"] for r in rows} == {"fp16acc"}


def test_table_format(capsys):
    assert main(["bench", "--quick", "--family", "linear", "--precision", "fp32",
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "max_abs_err" in out and "tiled_gelu" in out


def test_first_line_names_the_device(capsys):
    """A table's first line names the device the cases ran on."""
    from sdsim.cl.runtime import Runtime

    assert main(["bench", "--quick", "--family", "gelu", "--precision", "fp32", "--repeat", "1",
                 "--format", "table"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("bench on ") and Runtime().name in first
