"""What `sdsim bench --quick` runs for each kernel family: every record within its tolerance
against the family's float64 reference, and the timed events are exactly the dispatches its cost
formula lists (so measured and predicted calls pair one to one)."""

import numpy as np
import pytest

pytestmark = pytest.mark.opencl


@pytest.mark.parametrize("family", ["attention", "elementwise", "gelu", "group_norm",
                                    "layer_norm"])
def test_quick_bench_cases_pass(rt, family):
    from sdsim.cl.bench import all_cases, run_case

    for case in all_cases("quick", [family]):
        rec = run_case(rt, case, repeat=1)
        assert rec["ok"], rec
        _, events = case.run(rt, case.make_inputs(np.random.default_rng(0)))
        assert len(events) == len(case.cost), (case.family, case.variant)
