"""`sdsim predict`, `ablate`, `devices`: every output format parses and the numbers add up."""

import csv
import io
import json
import re

import pytest

from sdsim.cli import main
from sdsim.model.schedulers import make_scheduler


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def sd14_json():
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", "--device", "s23ultra", "--format", "json"]) == 0
    return json.loads(buf.getvalue())


def test_json_contract(sd14_json):
    d = sd14_json
    assert d["device"] == "s23ultra" and d["peak_memory_bytes"] > 0
    comps = d["components"]
    assert set(comps) == {"text_encoder", "unet", "vae_decoder"}
    for c in comps.values():
        assert {"calls", "latency_s", "flops", "dram_bytes"} <= set(c)
    # PNDM: 20 steps -> 21 UNet calls, per the scheduler itself
    assert comps["unet"]["calls"] == make_scheduler("pndm").unet_calls(20) == 21
    assert d["total_s"] == pytest.approx(sum(c["latency_s"] for c in comps.values()))
    assert comps["unet"]["latency_s"] == pytest.approx(21 * comps["unet"]["latency_per_call_s"])
    # weights alone: SD1.4 has ~1.03 G parameters, 2 bytes each in fp16
    assert d["peak_memory_bytes"] > 2 * 1.0e9


def test_csv_and_markdown_parse(capsys):
    rc, out, _ = run(capsys, "predict", "--device", "s23ultra", "--model", "tiny",
                     "--resolution", "64", "--format", "csv", "--scheduler", "ddim", "--steps", "5")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [r["component"] for r in rows] == [
        "text encoder", "UNet (per call)", "UNet (all calls)", "VAE decoder", "total"]
    assert rows[2]["calls"] == "5"
    total = sum(float(rows[i]["latency_s"]) for i in (0, 2, 3))
    assert float(rows[4]["latency_s"]) == pytest.approx(total, rel=1e-6)
    rc, out, _ = run(capsys, "predict", "--device", "pixel7", "--model", "tiny", "--resolution",
                     "64", "--format", "markdown", "--by", "op")
    lines = out.strip().splitlines()
    assert rc == 0 and lines[0].startswith("| component") and set(lines[1]) <= set("|-: ")


def test_by_kernel_json_rows(capsys):
    rc, out, _ = run(capsys, "predict", "--device", "s22", "--model", "tiny", "--resolution", "64",
                     "--by", "kernel", "--format", "json", "--opt", "none,attention=flash")
    d = json.loads(out)
    assert rc == 0 and "attention=flash" in d["opt"] and "groupnorm=naive" in d["opt"]
    assert all(r["bound"] in ("compute", "memory") for r in d["rows"])
    assert len({r["id"] for r in d["rows"]}) == len(d["rows"])


def test_unknown_device_is_one_line_error(capsys):
    rc, out, err = run(capsys, "predict", "--device", "pixel8")
    assert rc == 2 and "Did you mean 'pixel7'" in err and err.count("\n") == 1


def test_ablate_table_shape(capsys):
    rc, out, _ = run(capsys, "ablate", "--device", "s23ultra", "--model", "tiny", "--resolution",
                     "64", "--format", "json")
    rows = json.loads(out)["rows"]
    labels = [r["configuration"] for r in rows]
    assert rc == 0 and labels[:2] == ["all (paper)", "none"] and len(rows) == 10
    assert rows[0]["vs_paper"] == 1.0 and rows[1]["speedup_vs_none"] == 1.0


def test_devices_lists_every_profile(capsys):
    rc, out, _ = run(capsys, "devices", "--format", "csv")
    names = {r["name"] for r in csv.DictReader(io.StringIO(out))}
    assert rc == 0 and {"s23ultra", "s22", "s24", "pixel7", "dimensity9200", "iphone14promax"} <= names


def test_workspace_over_max_allocation_is_flagged(capsys, tmp_path):
    import yaml

    from sdsim.paths import PROFILES_DIR

    d = yaml.safe_load((PROFILES_DIR / "s23ultra.yaml").read_text())
    d["max_allocation"] = {"value": 1, "unit": "KiB", "source": "test"}
    f = tmp_path / "small.yaml"
    f.write_text(yaml.safe_dump(d))
    rc, out, _ = run(capsys, "predict", "--device", str(f), "--model", "tiny", "--resolution", "64",
                     "--opt", "none")
    assert rc == 0 and "over the device's max single allocation (1.0 KiB)" in out


def test_closed_pipe_ends_quietly():
    """`sdsim ... | head -1`: the reader closes the pipe after one line; sdsim stops without a
    traceback or an error message (exit 141, as a shell reports SIGPIPE)."""
    import subprocess
    import sys
    argv = ["predict", "--device", "s23ultra", "--by", "kernel"]   # more than a pipe holds
    p = subprocess.Popen([sys.executable, "-m", "sdsim", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err, err


def test_table_says_what_bounds_the_time_and_where_it_goes(capsys):
    """The default table ends with the split of the time by bound and the kernels that take
    most of it; the shares agree with the per-dispatch predictions summed independently."""
    from sdsim.cost.predict import predict
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import parse_opt

    assert main(["predict", "--device", "s23ultra"]) == 0
    out = capsys.readouterr().out
    bound = next(ln for ln in out.splitlines() if ln.startswith("bound: "))
    most = next(ln for ln in out.splitlines() if ln.startswith("most time: "))
    p = predict(load_profile("s23ultra"), parse_opt("paper"))
    per = {}
    for c in p.components:
        for k in c.kernels:
            name = f"{k.call.family}/{k.call.variant} {k.call.kernel}"
            per[name] = per.get(name, 0.0) + k.time.total_s * c.calls
    first = max(per, key=per.get)
    assert most.startswith(f"most time: {first} {100 * per[first] / p.total_s:.0f}%")
    shares = [float(x) for x in re.findall(r"(\d+)% ", bound)]
    assert len(shares) == 3 and abs(sum(shares) - 100) <= 2


def test_sort_and_top_pick_the_largest_rows(capsys):
    assert main(["predict", "--device", "s23ultra", "--by", "kernel", "--format", "json"]) == 0
    every = json.loads(capsys.readouterr().out)["rows"]
    assert main(["predict", "--device", "s23ultra", "--by", "kernel", "--sort", "latency",
                 "--top", "5", "--format", "json"]) == 0
    top = json.loads(capsys.readouterr().out)["rows"]
    want = sorted(every, key=lambda r: r["latency_s"], reverse=True)[:5]
    assert [r["id"] for r in top] == [r["id"] for r in want]
    assert main(["predict", "--device", "s23ultra", "--top", "3"]) == 2
    assert "--by op or --by kernel" in capsys.readouterr().err


def test_a_published_time_is_set_beside_the_prediction(capsys):
    """The S23 Ultra profile carries the paper's 11.5 s with its source; predict prints it with
    the ratio, and JSON carries it."""
    assert main(["predict", "--device", "s23ultra", "--format", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    (pub,) = obj["published"]
    assert pub["time_s"] == 11.5 and "arXiv:2304.11267" in pub["source"]
    assert main(["predict", "--device", "s23ultra"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("published:"))
    assert line.startswith("published: 11.5 s for SD1.4") and \
        f"({obj['total_s'] / 11.5:.2f}x)" in line
    assert main(["predict", "--device", "pixel7"]) == 0
    assert "published:" not in capsys.readouterr().out


def test_kernel_rows_count_the_dispatches_the_run_makes(capsys):
    """`calls` of a --by kernel row (JSON, CSV, table) is how many times the run dispatches it:
    counted here by running the tiny pipeline (NumPy) with its component calls counted, times
    each dispatch's count in the component's kernel plan, lowered here under the profile's
    tuning."""
    import warnings
    from collections import Counter

    from sdsim.backends.trace import trace_pipeline
    from sdsim.cost.profile import load_profile
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt
    from sdsim.lower.plan import lower_graph
    from sdsim.model.pipeline import StableDiffusion
    from sdsim.model.presets import load_model_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = StableDiffusion.random("tiny", precision="fp16")
    stages, ran = sd.stages, Counter()

    class Counting:
        def __getattr__(self, name):
            def call(*a):
                ran[name] += 1
                return getattr(stages, name)(*a)
            return call

    sd.stages = Counting()
    sd("a cat", steps=3, scheduler="pndm", height=64, width=64, progress=False)
    assert ran["unet"] > 1
    graphs = trace_pipeline(load_model_config("tiny"), resolution=64, precision="fp16")
    want = Counter()
    with tuning.use(tuning.for_profile(load_profile("s22"))):
        for comp, g in graphs.items():
            for call in lower_graph(g, parse_opt("none,attention=flash"), "fp16"):
                want[call.identity] += ran[comp]

    argv = ["predict", "--device", "s22", "--model", "tiny", "--resolution", "64", "--steps", "3",
            "--opt", "none,attention=flash", "--by", "kernel", "--format"]
    rc, out, _ = run(capsys, *argv, "json")
    assert rc == 0 and {r["id"]: r["calls"] for r in json.loads(out)["rows"]} == dict(want)
    rc, out, _ = run(capsys, *argv, "csv")
    assert rc == 0 and {r["id"]: int(r["calls"]) for r in csv.DictReader(io.StringIO(out))} == \
        dict(want)
    rc, out, _ = run(capsys, *argv, "table")
    assert rc == 0 and re.search(r"^id +class +variant +calls ", out, re.M), out


def test_footer_sets_executed_flops_beside_the_models(capsys):
    """The default table says how many GFLOPs the plan executes (its components' FLOPs summed)
    and how many the model has as `sdsim info` counts them (per call, times the calls)."""
    rc, out, _ = run(capsys, "info", "--format", "json")
    info = json.loads(out)["components"]
    rc2, out, _ = run(capsys, "predict", "--device", "s23ultra", "--format", "json")
    comps = json.loads(out)["components"]
    assert rc == rc2 == 0
    executed = sum(c["flops"] for c in comps.values())
    model = sum(info[name]["flops"] * c["calls"] for name, c in comps.items())
    assert model > 1.5 * executed   # Winograd F(4x4, 3x3): far fewer multiplies
    rc, out, _ = run(capsys, "predict", "--device", "s23ultra")
    line = next(ln for ln in out.splitlines() if ln.startswith("FLOPs: "))
    assert rc == 0 and line.startswith(f"FLOPs: {executed / 1e9:,.1f} GFLOP executed")
    assert f"the model's {model / 1e9:,.1f} GFLOP as 'sdsim info' counts them" in line
    assert f"{comps['unet']['calls']} x {info['unet']['flops'] / 1e9:.2f}" in line


@pytest.mark.parametrize("command", ["predict", "ablate"])
def test_help_lists_every_opt_switch_and_its_choices(command, capsys):
    """`--help` names every --opt switch with its choices (predict) or the paper's and the
    baseline's value (ablate), as sdsim.lower.options defines them, and the syntax."""
    from sdsim.lower.options import CHOICES, SETS, SWITCHES

    with pytest.raises(SystemExit):
        main([command, "--help"])
    flat = re.sub(r"\s+", " ", capsys.readouterr().out)
    for s in SWITCHES:
        if command == "predict":
            assert f"{s}: {', '.join(CHOICES[s])}" in flat, s
        else:
            assert f"{s}: {getattr(SETS['paper'], s)} vs {getattr(SETS['none'], s)}" in flat, s
    if command == "predict":
        assert "comma list of SWITCH=CHOICE" in flat and "(default: paper)" in flat


def test_half_arithmetic_share_is_the_half_builds_flops(sd14_json, capsys):
    """On a native-half phone at fp16 storage the share of FLOPs priced at the fp16 rate is the
    executed FLOPs of dispatches with a half build, recounted here from the kernel rows; fp32
    storage prices none."""
    from sdsim import kernels

    half = {k.kernel for r in kernels.records() for size in ("quick", "full")
            for s in r.bench.get(size, []) + r.calibrate.get(size, [])
            for k in r.costs("fp16", **s) if k.half_arith}
    rc, out, _ = run(capsys, "predict", "--device", "s23ultra", "--by", "kernel", "--format",
                     "json")
    rows = json.loads(out)["rows"]
    flops = sum(r["flops"] * r["calls"] for r in rows)   # a row's flops are per call
    want = sum(r["flops"] * r["calls"] for r in rows
               if r["id"].rsplit(":", 1)[1].split("#")[0] in half) / flops
    assert 0 < sd14_json["half_arith_flops_share"] < 1
    assert sd14_json["half_arith_flops_share"] == pytest.approx(want, rel=1e-3)
    rc, out, _ = run(capsys, "predict", "--device", "s23ultra", "--precision", "fp32",
                     "--format", "json")
    assert json.loads(out)["half_arith_flops_share"] == 0


def test_a_prediction_past_its_calibration_sweep_says_so(capsys, tmp_path):
    """A calibrated profile whose bodies were swept over one work-group and one step: every
    call of more lies past its sweep and says so, the table gives the share of time those calls
    hold (the per-call rows summed), and a profile of specifications alone never claims one."""
    import yaml

    from sdsim.paths import PROFILES_DIR

    d = yaml.safe_load((PROFILES_DIR / "nvidia-h100-opencl.yaml").read_text())
    for key in [k for k in d if k.startswith("coefficients")]:
        for body in d[key]["kernels"].values():
            body["swept"] = {"work_groups": [1, 1], "steps": [1, 1], "active": [1, 1],
                             "footprint_mib": [0, 0]}
    f = tmp_path / "narrow.yaml"
    f.write_text(yaml.safe_dump(d))
    rc, out, _ = run(capsys, "predict", "--device", str(f), "--model", "tiny", "--resolution",
                     "64", "--precision", "fp32")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("beyond the sweep: "))
    rc, out, _ = run(capsys, "predict", "--device", str(f), "--model", "tiny", "--resolution",
                     "64", "--precision", "fp32", "--by", "kernel", "--format", "json")
    obj = json.loads(out)
    rows = obj["rows"]
    for r in rows:
        one = ("(1 work-groups" in r["why"] and r["why"].startswith("1 steps")
               and "lanes active" not in r["why"])   # what the narrow sweep measured
        # a body the calibration never swept is priced from specifications: no sweep to pass
        assert ("beyond the sweep (" in r["why"]) is not (one or "[spec]" in r["why"]), r["why"]
    share = (sum(r["latency_s"] * r["calls"] for r in rows if "beyond the sweep (" in r["why"])
             / sum(r["latency_s"] * r["calls"] for r in rows))
    assert line.startswith(f"beyond the sweep: {100 * share:.0f}% of the time")
    assert obj["time_beyond_sweep_s"] == pytest.approx(share * obj["total_s"], rel=1e-6)
    rc, out, _ = run(capsys, "predict", "--device", "s23ultra")
    assert rc == 0 and "beyond the sweep" not in out
