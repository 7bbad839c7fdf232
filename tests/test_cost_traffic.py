"""Compulsory-traffic bound: each op moves at most its inputs, weights and output once (the trace's
own byte counts) plus its workspace twice, and never more than the tiled plan."""

from collections import defaultdict

from sdsim.backends.trace import trace_pipeline
from sdsim.cost.predict import cap_to_compulsory
from sdsim.lower.options import SETS
from sdsim.lower.plan import lower_graph
from sdsim.model.presets import load_model_config


def test_capped_traffic_bounds():
    graphs = trace_pipeline(load_model_config("sd14"), resolution=256, batch=2, precision="fp16")
    for g in graphs.values():
        for opt in SETS.values():
            tiled = lower_graph(g, opt, "fp16")
            capped = cap_to_compulsory(g, tiled)
            t_op, c_op, ws = defaultdict(float), defaultdict(float), defaultdict(int)
            for a, b in zip(tiled, capped):
                assert a.identity == b.identity and a.flops == b.flops
                t_op[a.op_index] += a.dram_bytes
                c_op[b.op_index] += b.dram_bytes
                ws[a.op_index] += a.workspace
            for op in g.ops:
                cap = op.bytes_read + op.bytes_written + 2 * ws[op.index]
                assert c_op[op.index] <= min(t_op[op.index], cap) * (1 + 1e-9)
