"""Lowering on the SD1.4 trace: the paper's rules, call identities, and that every optimization
never increases the DRAM traffic of the ops it targets."""

import dataclasses
from collections import defaultdict

import pytest

from sdsim.backends.trace import trace_pipeline
from sdsim.errors import SdsimError
from sdsim.lower.options import SETS, parse_opt
from sdsim.lower.plan import lower_graph
from sdsim.model.presets import load_model_config

PAPER, NONE = SETS["paper"], SETS["none"]


@pytest.fixture(scope="module")
def graphs():
    return trace_pipeline(load_model_config("sd14"), resolution=512, batch=2, precision="fp16")


def by_op(plan):
    out = defaultdict(list)
    for c in plan:
        out[c.op_index].append(c)
    return out


def test_every_op_lowers_and_identities_are_unique(graphs):
    for g in graphs.values():
        for opt in (PAPER, NONE):
            plan = lower_graph(g, opt, "fp16")
            ids = [c.identity for c in plan]
            assert len(ids) == len(set(ids))
            lowered = {c.op_index for c in plan}
            skipped = [op for op in g.ops if op.index not in lowered]
            # only GELUs folded into the preceding GEMM's epilogue may vanish
            assert all(op.kind in ("gelu", "quick_gelu") and opt.gelu == "fused" for op in skipped)


def test_paper_attention_rule_flash_only_at_head_dim_40(graphs):
    plan = lower_graph(graphs["unet"], PAPER, "fp16")
    ops = {op.index: op for op in graphs["unet"].ops}
    seen = set()
    for c in plan:
        if c.family == "attention":
            hd = ops[c.op_index].attrs["head_dim"]
            assert c.variant == ("flash" if hd == 40 else "partial_softmax")
            seen.add(c.variant)
    assert seen == {"flash", "partial_softmax"}
    opt = dataclasses.replace(PAPER, flash_head_dim=80)
    assert {c.variant for c in lower_graph(graphs["unet"], opt, "fp16")
            if c.family == "attention" and ops[c.op_index].attrs["head_dim"] == 80} == {"flash"}


def test_winograd_only_on_stride1_3x3_with_enough_channels(graphs):
    for g in graphs.values():
        ops = {op.index: op for op in g.ops}
        for c in lower_graph(g, PAPER, "fp16"):
            if c.family != "conv2d":
                continue
            a = ops[c.op_index].attrs
            eligible = a["k"] == 3 and a["stride"] == 1 and min(a["cin"], a["cout"]) >= 16
            assert (c.variant == "winograd_f4") == eligible
            if a["k"] == 1:
                assert c.variant == "im2col_gemm"


TARGETS = {  # switch -> (op kinds it targets, what it is meant to cut)
    "groupnorm": (("group_norm",), "dram_bytes"),
    "gelu": (("geglu", "gelu", "quick_gelu", "linear"), "dram_bytes"),
    "attention": (("attention",), "dram_bytes"),
    # Winograd cuts multiplies, not traffic: its tiles are 2.25x (F4) the input, so on the 8x8
    # maps it can move more bytes than the direct kernel while still executing fewer FLOPs.
    "conv3x3": (("conv2d",), "flops"),
}


@pytest.mark.parametrize("switch", list(TARGETS))
def test_optimization_never_increases_what_it_is_meant_to_cut(graphs, switch):
    kinds_cut, metric = TARGETS[switch]
    on = dataclasses.replace(NONE, **{switch: getattr(PAPER, switch)})
    for g in graphs.values():
        kinds = {op.index: op.kind for op in g.ops}
        base, opt = by_op(lower_graph(g, NONE, "fp16")), by_op(lower_graph(g, on, "fp16"))
        for i, kind in kinds.items():
            if kind not in kinds_cut:
                continue
            before = sum(getattr(c, metric) for c in base[i])
            after = sum(getattr(c, metric) for c in opt.get(i, []))
            assert after <= before, (g.name, i, kind, after, before)


def test_parse_opt_sets_and_lists():
    assert parse_opt("paper") == PAPER and parse_opt("none") == NONE
    o = parse_opt("attention=flash,conv3x3=direct")
    assert (o.attention, o.conv3x3, o.groupnorm) == ("flash", "direct", "fused")
    o = parse_opt("none,groupnorm=fused,flash_head_dim=80")
    assert (o.groupnorm, o.attention, o.flash_head_dim) == ("fused", "naive", 80)


@pytest.mark.parametrize("text, words", [
    ("fast", "unknown set 'fast'"), ("attention=fastest", "attention=fastest is not a choice"),
    ("conv=direct", "unknown switch 'conv'"), ("", "empty"),
])
def test_parse_opt_errors(text, words):
    with pytest.raises(SdsimError, match=words):
        parse_opt(text)
