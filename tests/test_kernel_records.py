"""Every kernel variant is named in its record only: `--opt` choices, bench cases and calibration
mixes resolve to records, every record is chosen by some lowering of some model, records agree
with themselves (costs, operands, launch), and no variant name is typed elsewhere in sdsim/."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sdsim import kernels
from sdsim.kernels import gemm
from sdsim.backends.trace import trace_pipeline
from sdsim.calibration import sweep
from sdsim.cl.bench import SIZES, BenchCase, all_cases, upload
from sdsim.cost.traffic import TRAFFIC
from sdsim.lower.options import CHOICES, RULES, SETS, SWITCHES, Options, parse_opt
from sdsim.lower.plan import lower_graph
from sdsim.model.presets import load_model_config

SDSIM = Path(__file__).resolve().parents[1] / "sdsim"
#: op kinds whose elementwise record carries the op's own name
EW_OPS = {r.name for r in kernels.records("elementwise")}


def test_every_opt_choice_resolves_to_a_record():
    for switch, values in CHOICES.items():
        for value in values:
            if value in RULES.get(switch, ()):
                continue
            assert [r for r in kernels.records() if r.option == (switch, value)], (switch, value)
    for opt in SETS.values():
        for s in SWITCHES:
            assert getattr(opt, s) in CHOICES[s]


def test_bench_and_calibration_entries_are_records_with_consistent_shapes():
    for size in SIZES:
        bench = all_cases(size)
        assert {c.record.key for c in bench} == {r.key for r in kernels.records()}, size
    for size in ("quick", "full"):
        for record, shape in sweep.cases(size)[0]:
            assert kernels.get(record.family, record.name) is record
    for r in kernels.records():
        for shape in [s for size in SIZES for s in r.bench[size]]:
            costs = r.costs("fp16", **shape)
            assert costs and all(k.flops >= 0 and k.dram_bytes > 0 for k in costs), r.key
            ins, params, out = r.operands(shape)
            inputs = r.make_inputs(shape, np.random.default_rng(0))
            assert [np.size(a) for a in inputs["ins"]] == ins, r.key
            assert {k: np.size(v) for k, v in inputs["params"].items()} == params, r.key
            assert np.size(r.reference(shape, inputs, "fp16")) == out, r.key
            assert set(r.tolerance) == {"fp32", "fp16"}


def _plans(cfg, opts):
    graphs = trace_pipeline(cfg, resolution=64, batch=2, precision="fp16").values()
    return [c for g in graphs for o in opts for c in lower_graph(g, o, "fp16")]


def test_every_record_is_chosen_by_a_lowering():
    """SD1.4 under every set and every switch value, plus an erf-GELU text encoder (as OpenCLIP
    has) for the GEMM-epilogue GELU, together lower to every record."""
    opts = list(SETS.values()) + [parse_opt(f"{s}={v}") for s in SWITCHES for v in CHOICES[s]]
    sd14 = load_model_config("sd14")
    erf_clip = dataclasses.replace(sd14, text_encoder=dataclasses.replace(
        sd14.text_encoder, hidden_act="gelu"))
    chosen = {(c.family, c.variant)
              for c in _plans(sd14, opts) + _plans(erf_clip, SETS.values())}
    assert chosen == set(kernels.variants())


def test_the_plan_records_the_switch_that_chose_each_call():
    g = trace_pipeline(load_model_config("sd14"), resolution=64, batch=2,
                       precision="fp16")["unet"]
    plan = lower_graph(g, Options(), "fp16")
    for c in plan:
        rec = kernels.get(c.family, c.variant)
        if c.switch is not None and c.family != "linear":
            assert c.switch == rec.option[0], c.identity
        if c.op_kind == "conv2d":   # every 3x3 conv is the conv3x3 switch's; 1x1 convs nobody's
            assert (c.switch == "conv3x3") == (g.ops[c.op_index].attrs["k"] == 3), c.identity
    assert {c.switch for c in plan} == {None, "conv3x3", "gelu", "attention", "groupnorm"}
    assert len({c.identity for c in plan}) == len(plan)
    conv = next(c for c in plan if c.scope == "down_blocks.0.resnets.0.conv1")
    assert conv.identity.startswith("unet/down_blocks.0.resnets.0.conv1:")


def _string_literals(path):
    tree = ast.parse(path.read_text())
    doc_nodes = {id(n.body[0].value) for n in ast.walk(tree)
                 if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                 and n.body and isinstance(n.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in doc_nodes:
            yield node.lineno, node.value


def test_no_variant_name_is_typed_outside_the_records():
    """Variant names that are neither an `--opt` value, an op kind nor a traffic mode (`tiled`
    traffic) appear as string literals only in sdsim/kernels (the records)."""
    values = {v for vs in CHOICES.values() for v in vs}
    names = {r.name for r in kernels.records()} - values - EW_OPS - set(TRAFFIC)
    assert names  # e.g. im2col_gemm, tiled_gelu, rowwise
    found = [f"{p.relative_to(SDSIM)}:{line}: {text!r}"
             for p in SDSIM.rglob("*.py") if "kernels" not in p.parts
             for line, text in _string_literals(p) if text in names]
    assert not found, found


@pytest.fixture(scope="module")
def default_rt():
    """Launch geometry does not depend on the platform: the default device only."""
    from sdsim.cl.runtime import Runtime
    return Runtime()


@pytest.mark.opencl
@pytest.mark.parametrize("split", [False, True], ids=["device-defaults", "gpu-split-k"])
def test_runtime_enqueues_the_geometry_the_cost_model_sees(default_rt, monkeypatch, split):
    """At every tiny and quick bench shape, a record's launcher enqueues exactly the dispatches
    its cost formula lists, each with the global and local size the cost's launch geometry
    states (so measured and predicted calls pair one to one, with the same geometry); under the
    device's own defaults, and under GPU builds that split K wherever they can."""
    import contextlib

    from sdsim.kernels import tuning
    splitting = dataclasses.replace(tuning.DEFAULTS["gpu"], split_groups=100_000)
    deep = _deep_k_cases("fp32")
    with tuning.use(splitting) if split else contextlib.nullcontext():
        reduces, _ = _enqueued_geometry(default_rt, monkeypatch, deep)
    assert (reduces >= len(deep)) == split


@pytest.mark.opencl
def test_a_tuned_winograd_work_group_is_what_runs_and_what_is_priced(default_rt, monkeypatch):
    """Under a tuning whose Winograd transforms run in 16 x 4 work-groups, the transforms are
    enqueued in 16 x 4 groups and the cost model's geometry says so (other shapes, too, as
    enqueued)."""
    from sdsim.kernels import tuning

    wino = [c for c in all_cases("tiny", precisions=("fp32",))
            if c.record.key.startswith("conv2d/winograd")]
    with tuning.use(dataclasses.replace(tuning.DEFAULTS["gpu"], wino_group=(16, 4))):
        _, launched = _enqueued_geometry(default_rt, monkeypatch, wino)
        assert any(k.model_key.startswith("wino_input") and k.launch.local_size == (16, 4, 1)
                   for c in wino for k in c.cost)
    assert (16, 4, 1) in {local for _, local in launched}


def _deep_k_cases(precision):
    """Deep-K calls of each GEMM caller (the bench shapes are too shallow to split)."""
    return [BenchCase(kernels.get(f, v), shape, precision) for f, v, shape in [
        ("linear", "tiled", dict(m=2, k=512, n=40, bias=True)),
        ("linear", "tiled_gelu", dict(m=3, k=300, n=70, bias=True)),
        *[("conv2d", v, dict(batch=1, cin=256, cout=8, h=4, w=4, k=3, stride=1, padding=1,
                             bias=True)) for v in ("im2col_gemm", "winograd_f4")]]]


@pytest.mark.opencl
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_split_k_callers_match_their_references(rt, precision):
    """Linear (bias, GELU epilogue), im2col and Winograd convolutions split along K give their
    records' float64 references within the bench tolerance."""
    import dataclasses

    from sdsim.kernels import tuning
    with tuning.use(dataclasses.replace(tuning.DEFAULTS["gpu"], split_groups=100_000)):
        for case in _deep_k_cases(precision):
            assert any(k.model_key.startswith("gemm_split_reduce") for k in case.cost)
            inputs = case.make_inputs(np.random.default_rng(1))
            out, _ = case.run(rt, inputs)
            err, ok = case.check(out, case.reference(inputs))
            assert ok, (case.record.key, precision, err)


def _enqueued_geometry(rt, monkeypatch, extra) -> tuple[int, list]:
    """Check every bench case's launches against its costs: how many were split-K reductions,
    and every (global, local) size enqueued."""
    reduces = 0
    launched, every = [], []
    real = rt.launch

    def launch(kernel, global_size, local_size, *args, wait_for=None):
        launched.append((tuple(-(-g // l) * l for g, l in zip(global_size, local_size)),
                         tuple(local_size)))
        return real(kernel, global_size, local_size, *args, wait_for=wait_for)

    monkeypatch.setattr(rt, "launch", launch)
    for case in all_cases("tiny", precisions=("fp32",)) + all_cases(
            "quick", precisions=("fp16",)) + extra:
        inputs = case.make_inputs(np.random.default_rng(0))
        ins, params, out = upload(rt, case.record, case.shape, inputs, case.precision)
        launched.clear()
        events = case.record.launch(rt, case.shape, ins, params, out, case.precision)
        want = [(k.launch.global_size, k.launch.local_size) for k in case.cost]
        assert len(events) == len(case.cost), case.record.key
        assert launched == want, (case.record.key, case.shape)
        every += launched
        reduces += sum(k.model_key.startswith("gemm_split_reduce") for k in case.cost)
    return reduces, every


def test_launch_geometry_counts():
    """Work-groups, serial steps and active lanes of a few dispatches worked out by hand."""
    from sdsim.kernels import tuning
    with tuning.use(tuning.DEFAULTS["gpu"]):   # a small C: 32x32 tiles of 8x8 work-items
        (gemm,) = kernels.costs("linear", "tiled", m=100, k=40, n=130)
    assert (gemm.launch.work_groups, gemm.launch.steps) == (4 * 5, 3)        # k/16
    assert gemm.launch.active == pytest.approx(100 * 130 / (128 * 160))
    assert gemm.model_key == "gemm.l32x32x16-8x8-v4"
    split = tuning.Tuning("gpu", tuning.DEFAULTS["gpu"].gemm, "test", split_groups=264)
    with tuning.use(split):   # 40 32x32 tiles; 264 // 40 = 6 slices of 14 of the 80 k-steps
        gemm, red = kernels.costs("linear", "tiled", m=2, k=1280, n=1280)
    assert (gemm.launch.work_groups, gemm.launch.steps) == (40 * 6, 14)
    assert (red.launch.work_groups, red.launch.steps, red.model_key) == (
        2 * 1280 // 64, 6, "gemm_split_reduce")
    assert gemm.workspace == red.bytes_read - 1280 * 4 == 4 * 6 * 2 * 1280
    with tuning.use(split):   # a conv's and attention's reductions are timed apart (REDUCE_MODEL)
        *_, conv_red = kernels.costs("conv2d", "im2col_gemm", batch=1, cin=320, cout=32, h=8,
                                     w=8, k=3, stride=1, padding=1)
        *_, pv_red = kernels.costs("attention", "naive", batch=1, heads=2, nq=16, nk=4096,
                                   head_dim=40, causal=False)
    assert conv_red.kernel == "gemm_bias_reduce" and pv_red.kernel == "attn_pv_reduce"
    assert conv_red.model_key == pv_red.model_key == "gemm_split_reduce.conv_attn"
    assert conv_red.model_alt == "gemm_split_reduce"   # what an older profile prices them by
    with tuning.use(tuning.DEFAULTS["cpu"]):   # 6x16 blocks, one work-item each, k one at a time
        (gemm,) = kernels.costs("linear", "tiled", m=100, k=40, n=130)
    assert (gemm.launch.work_groups, gemm.launch.steps) == (17 * 9, 40)
    assert gemm.launch.local_size == (1, 1, 1)
    (conv,) = kernels.costs("conv2d", "direct", batch=2, cin=5, cout=20, h=17, w=16, k=3,
                            stride=1, padding=1)
    # 20 channels in 3 blocks of 8, 17*16 = 272 pixels in 3 groups of 128 (fewer work-groups than
    # 16 x 64: 2 blocks x 5 groups, or 4 x 256: 5 blocks x 2 groups); half a block idle (4 of
    # 24 channels) and 112 of 384 pixels
    assert (conv.launch.work_groups, conv.launch.steps) == (2 * 3 * 3, 5 * 9)
    assert (conv.launch.global_size, conv.launch.local_size) == ((384, 2 * 3), (128, 1))
    assert conv.launch.active == pytest.approx(2 * 272 * 20 / 8 / (384 * 6))
    with tuning.use(tuning.DEFAULTS["cpu"]):   # 32-row FlashAttention tiles (a GPU's are 64)
        (flash,) = kernels.costs("attention", "flash", batch=1, heads=2, nq=70, nk=100,
                                 head_dim=40)
    assert (flash.launch.work_groups, flash.launch.steps) == (3 * 2, 4)      # 32-row tiles, 32 keys


def test_gemm_memory_geometry_by_hand():
    """What the cache and alias terms see, worked out by hand: a CPU micro-kernel's 12 rows of
    A at a pitch of 12 KiB (k = 3072, fp32) share one L1 set, at 10 KiB (k = 2560) they share
    two in sixes, at 4000 bytes (k = 1000) none; fp16 halves the pitch (k = 3072: 6 KiB, two
    sets); attention's Q rows are the heads' channels apart, not d; B (k x n) is walked again
    by every row of tiles, and not at all by a single one; GPU builds stage A (no conflict)."""
    from sdsim.kernels import tuning
    from sdsim.kernels.gemm import conflict

    cpu12 = dataclasses.replace(tuning.DEFAULTS["cpu"], gemm={
        c: tuning.GemmConfig(12, 8, 1, 1, 1, 8, local=False) for c in tuning.CLASS_NAMES})
    with tuning.use(cpu12):
        for k, precision, rows in ((3072, "fp32", 12), (2560, "fp32", 6), (1000, "fp32", 1),
                                   (3072, "fp16", 6), (4096, "fp16", 12)):
            (g,) = kernels.costs("linear", "tiled", m=154, k=k, n=768, precision=precision)
            assert g.launch.conflict == rows, (k, precision)
            assert g.launch.reread == k * 768 * {"fp32": 4, "fp16": 2}[precision]
        (one_row,) = kernels.costs("linear", "tiled", m=12, k=3072, n=768)
        assert one_row.launch.reread == 0.0 and one_row.launch.conflict == 12
        qk = kernels.costs("attention", "naive", batch=1, heads=8, nq=100, nk=100,
                           head_dim=128)[0]
        assert qk.kernel == "attn_qk" and qk.launch.conflict == 12   # 8 x 128 x 4 = 4 KiB
        qk = kernels.costs("attention", "naive", batch=1, heads=5, nq=100, nk=100,
                           head_dim=128)[0]
        assert qk.launch.conflict == 2   # 2.5 KiB apart: the sets repeat every 8 rows
    with tuning.use(tuning.DEFAULTS["gpu"]):
        (g,) = kernels.costs("linear", "tiled", m=154, k=3072, n=768)
        assert g.launch.conflict == 0 and g.launch.reread == 3072 * 768 * 4
    # the sets of 4 KiB-periodic addresses, one row at a time
    assert conflict(12, 3 * 4096) == 12 and conflict(12, 4096 + 64) == 1
    assert conflict(8, 2048) == 4 and conflict(0, 4096) == 0


def test_gemm_line_split_against_counted_lines():
    """What the cache term's line factor sees (Launch.lines), against the 64-byte lines a row of
    B's strip touches, counted address by address: the CPU micro-kernel's 16 fp32 columns (64
    bytes) fill one line at a pitch of 5200 floats and straddle two in 3 rows of 4 at 3500
    (offsets 0, 48, 32, 16); fp16's 32-byte rows straddle where their offset passes 32. GPU
    builds stage B through local memory, attention reads B in place at a head's pitch: 1."""
    from sdsim.kernels import tuning
    from sdsim.kernels.gemm import line_split

    def counted(pitch, width, rows=4096):
        lines = [len({(r * pitch + b) // 64 for b in range(width)}) for r in range(rows)]
        return sum(lines) / rows / -(-width // 64)

    for pitch, width in ((14000, 64), (20800, 64), (7000, 32), (2560, 32), (1200, 64),
                         (4 * 77, 64), (2 * 1281, 32), (100, 128)):
        assert line_split(pitch, width) == pytest.approx(counted(pitch, width)), (pitch, width)
    cpu = dataclasses.replace(tuning.DEFAULTS["cpu"], gemm={
        c: tuning.GemmConfig(4, 16, 1, 1, 1, 8, local=False) for c in tuning.CLASS_NAMES})
    with tuning.use(cpu):
        (g,) = kernels.costs("linear", "tiled", m=150, k=2900, n=3500)
        assert g.launch.lines == pytest.approx(1.75)
        (g,) = kernels.costs("linear", "tiled", m=130, k=2900, n=5200)
        assert g.launch.lines == 1.0
        (g,) = kernels.costs("linear", "tiled", m=150, k=2900, n=3500, precision="fp16")
        assert g.launch.lines == pytest.approx(1.375)   # offsets of 8: 40, 48 and 56 straddle
        pv = kernels.costs("attention", "naive", batch=1, heads=2, nq=64, nk=64,
                           head_dim=40)[-1]
        assert pv.launch.lines == 1.0
    with tuning.use(tuning.DEFAULTS["gpu"]):
        (g,) = kernels.costs("linear", "tiled", m=150, k=2900, n=3500)
        assert g.launch.lines == 1.0


def test_gemm_edge_share_by_hand():
    """What the edge term sees (Launch.edge), worked out by hand: a CPU micro-kernel of 8
    columns per work-group loads B one element at a time in its last column block where that
    block is partial, and in every block where B's columns are strided (attention's K^T); the
    Winograd F(4x4) GEMM's columns are the input's tiles (4 at 8x8, 9 at 10x10, 16 at 16x16
    per image). GPU builds stage B through local memory (no such path); there the Winograd
    GEMM's slower work-groups are the first of each column of tiles to read its panel of the
    transformed input: one in as many as there are tiles of output channels (128 wide in the
    GPU default build, and the output channels C's rows, or its columns where the call runs
    transposed); linear GEMMs have none."""
    from sdsim.kernels import tuning

    cpu8 = dataclasses.replace(tuning.DEFAULTS["cpu"], gemm={
        c: tuning.GemmConfig(8, 8, 1, 1, 1, 8, local=False) for c in tuning.CLASS_NAMES})

    def wino(h, batch=1, cout=64):
        return next(k for k in kernels.costs("conv2d", "winograd_f4", batch=batch, cin=64,
                                             cout=cout, h=h, w=h, k=3, stride=1,
                                             padding=[1, 1, 1, 1])
                    if k.kernel == "wino_gemm_f4")

    with tuning.use(cpu8):
        assert wino(8).launch.edge == 1.0          # 4 tiles: one block, partial
        assert wino(10).launch.edge == 0.5         # 9 tiles: blocks of 8 and 1
        assert wino(8, batch=2).launch.edge == 0.0   # 8 tiles: one full block
        assert wino(16).launch.edge == 0.0         # 16 tiles: two full blocks
        (g,) = kernels.costs("linear", "tiled", m=100, k=64, n=20)
        assert g.launch.edge == pytest.approx(1 / 3)   # 20 columns: blocks of 8, 8 and 4
        qk = kernels.costs("attention", "naive", batch=1, heads=2, nq=64, nk=64,
                           head_dim=40)[0]
        assert qk.kernel == "attn_qk" and qk.launch.edge == 1.0
        assert (wino(8).launch.path, wino(16).launch.path, qk.launch.path) == (
            gemm.PARTIAL_PATH, "", gemm.STRIDED_PATH)
    gpu = dataclasses.replace(tuning.DEFAULTS["gpu"], gemm={
        c: tuning.GemmConfig(128, 128, 16, 8, 8, 4) for c in tuning.CLASS_NAMES})
    with tuning.use(gpu):
        for cout, tiles in ((64, 1), (128, 1), (129, 2), (256, 2), (512, 4)):
            g = wino(256, cout=cout)                  # 4096 tiles of the input: not transposed
            groups = [a // b for a, b in zip(g.launch.global_size, g.launch.local_size)]
            assert groups[1] == tiles and g.launch.edge == 1 / tiles
            assert g.launch.path == gemm.COLD_PATH
        assert gemm.transposed(36, 512, 4) and wino(8, cout=512).launch.edge == 1 / 4
        # a linear GEMM's slower path: rows of A (k apart) or B (n apart) off the 128-byte
        # line, 64 fp16 or 32 fp32 elements
        for k, n, precision, off in ((128, 256, "fp32", 0.0), (100, 256, "fp32", 1.0),
                                     (128, 40, "fp32", 1.0), (64, 192, "fp16", 0.0),
                                     (64, 192, "fp32", 0.0), (32, 192, "fp16", 1.0)):
            (g,) = kernels.costs("linear", "tiled", m=100, k=k, n=n, precision=precision)
            assert g.launch.edge == off, (k, n, precision)
            assert g.launch.path == (gemm.OFF_LINE_PATH if off else "")
        (g,) = kernels.costs("linear", "tiled", m=300, k=100, n=8)   # transposed: same rows
        assert gemm.transposed(1, 300, 8) and g.launch.edge == 1.0
        (g,) = kernels.costs("linear", "tiled", m=300, k=128, n=32)
        assert gemm.transposed(1, 300, 32) and g.launch.edge == 0.0


def test_a_bias_less_linear_gemm_is_timed_apart_and_falls_back_to_the_bias_build():
    """A linear GEMM without bias is its own build (BIAS=0) with its own model key, and so is one
    with the GELU epilogue (ACT=1), which falls back to the bias build too; a profile
    without that key (one calibrated before the key had points: the committed H200 profile with
    the key taken out) times it with the bias build's coefficients, by name in the
    explanation's [calibrated]; one with the key uses its own."""
    import dataclasses as dc

    from sdsim.cost.profile import load_profile
    from sdsim.cost.roofline import kernel_time
    from sdsim.kernels import tuning
    from sdsim.kernels.gemm import GELU, NO_BIAS

    prof = load_profile("nvidia-h200-opencl")
    with tuning.use(tuning.for_profile(prof)):
        (plain,) = kernels.costs("linear", "tiled", m=3000, k=700, n=900, bias=False)
        (biased,) = kernels.costs("linear", "tiled", m=3000, k=700, n=900, bias=True)
        (gelu,) = kernels.costs("linear", "tiled_gelu", m=3000, k=700, n=900)
    assert plain.model_key == biased.model_key + NO_BIAS == plain.model_alt + NO_BIAS
    assert gelu.model_key == biased.model_key + GELU and gelu.model_alt == biased.model_key
    assert not biased.model_alt
    coeffs = prof.coefficients_for("fp32")
    saved = coeffs.pop(plain.model_key, None)
    saved_gelu = coeffs.pop(gelu.model_key, None)
    try:
        assert biased.model_key in coeffs
        t_plain, t_bias = kernel_time(plain, prof, "fp32"), kernel_time(biased, prof, "fp32")
        assert t_plain.why == t_bias.why and "[calibrated]" in t_plain.why
        assert kernel_time(gelu, prof, "fp32").why == t_bias.why
        coeffs[plain.model_key] = dc.replace(coeffs[biased.model_key],
                                             step=2 * coeffs[biased.model_key].step)
        assert kernel_time(plain, prof, "fp32").total_s > t_plain.total_s
    finally:
        coeffs.pop(plain.model_key, None)
        if saved is not None:
            coeffs[plain.model_key] = saved
        if saved_gelu is not None:
            coeffs[gelu.model_key] = saved_gelu
