"""sdsim/cl/dryrun.py: the programs a dry run of the launchers records, in all and per case, are
the ones a real run builds, so the calibration's parallel build leaves none to build during its
sweep, and the sweep measures a case once its own programs are built."""

import numpy as np
import pytest

from sdsim import kernels

pytestmark = pytest.mark.opencl


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_dry_run_records_the_programs_a_real_run_builds(precision):
    from sdsim.calibration import sweep
    from sdsim.cl import dryrun
    from sdsim.cl.bench import upload
    from sdsim.cl.runtime import Runtime

    cases, _ = sweep.cases("quick")
    cases += [(r, s) for r in kernels.records() for s in r.bench.get("tiny", ())]
    recorded, missed = dryrun.programs(Runtime(), cases, precision)
    needs = dryrun.case_programs(Runtime(), cases, precision)
    rt = Runtime()
    asked, kernel = set(), rt.kernel

    def recording(family, name, precision="fp32", defines=None):   # kernels are cached
        asked.add((family, rt.build_options(precision, defines)))
        return kernel(family, name, precision, defines)

    rt.kernel = recording
    for (record, shape), need in zip(cases, needs):
        asked.clear()
        inputs = record.make_inputs(shape, np.random.default_rng(0))
        record.launch(rt, shape, *upload(rt, record, shape, inputs, precision), precision)
        assert asked == need, (record.key, shape)    # each case's own programs
    rt.finish()
    built = {(family, options) for (_, path, options) in rt._programs
             for family in [path.rsplit("/", 1)[-1][:-3]]}
    assert missed == 0 and recorded == built and len(built) > 10
    # and the parallel build makes exactly those, once
    fresh = Runtime()
    assert fresh.build(recorded, workers=2) == len(recorded) and fresh.build(recorded) == 0
