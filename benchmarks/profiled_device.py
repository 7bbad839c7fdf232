"""What the benchmarks that time kernels on an OpenCL device under a calibrated profile share
(dispatch_context.py, winograd_cout_tiles.py): their command-line arguments, the runtime under
the profile's kernel builds, and their report's header and files."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

from sdsim import paths, provenance
from sdsim.cl.runtime import Runtime
from sdsim.cost.profile import load_profile
from sdsim.kernels import tuning
from sdsim.output import write_pair


def parser(doc: str, report: str) -> argparse.ArgumentParser:
    """The arguments every such benchmark takes (--platform, --cl-device, --device PROFILE,
    --precision, --out), its description the first paragraph of `doc`; the default report stem
    is reports/<report>-<profile>-<precision>."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--platform", help="OpenCL platform (index or name)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring")
    ap.add_argument("--device", required=True,
                    help="calibrated profile: its kernel builds run, its model predicts")
    ap.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    ap.add_argument("--out", help=f"report stem (.md and .json); default "
                    f"reports/{report}-<profile>-<precision>")
    ap.set_defaults(report=report)
    return ap


class ProfiledDevice:
    """The profile of `args.device` with its kernel builds active, the OpenCL runtime, and the
    provenance its report starts with."""

    def __init__(self, args, script: str, argv):
        warnings.filterwarnings("ignore", message="Non-empty compiler output")
        self.args = args
        self.profile = load_profile(args.device)
        tuning.activate(tuning.for_profile(self.profile))
        self.out = args.out or str(paths.REPORTS_DIR /
                                   f"{args.report}-{self.profile.name}-{args.precision}")
        self.command = f"python benchmarks/{script} " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        self.load_before = provenance.load()
        self.rt = Runtime(args.platform, args.cl_device)
        self.coefficients = self.profile.coefficients_for(args.precision)
        self.compute_units = self.profile.geometry["compute_units"]

    def header(self, title: str) -> list[str]:
        """The report's title and its command, date, commit, load and device lines."""
        rt = self.rt
        return [f"# {title}: {rt.name}", "",
                f"- Command: `{self.command.strip()}`",
                (f"- Date: {provenance.now()}, sdsim commit {provenance.commit()}; 1-minute "
                 f"load {self.load_before} before, {provenance.load()} after"),
                (f"- OpenCL device: {rt.name}, driver {rt.device.driver_version.strip()}; "
                 f"kernel builds and model of `{self.args.device}`; {self.args.precision} "
                 "storage")]

    def write(self, text: str, data: dict) -> None:
        """The report as .md and .json (with the command, device and precision), printed."""
        md, js = write_pair(self.out, text, {"command": self.command.strip(),
                                             "device": self.rt.name,
                                             "precision": self.args.precision, **data})
        print(text)
        print(f"wrote {md} and {js}", file=sys.stderr)
