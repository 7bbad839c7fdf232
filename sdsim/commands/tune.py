"""`sdsim tune`: choose the GEMM tile configuration per shape class for an OpenCL device."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from sdsim import provenance
from sdsim.errors import SdsimError
from sdsim.output import FORMATS, dumps, render_rows
from sdsim.paths import shipped, user_profiles_dir, written_report_path

HELP = ("measure the GEMM tile configurations (and FlashAttention and Winograd transform "
        "work-groups) on an OpenCL device and record the fastest")
DESCRIPTION = (
    "Tries every candidate tile configuration of the GEMM kernel (opencl/gemm.cl; local-memory "
    "tiles on GPUs, a SIMD micro-kernel on CPUs) on synthetic shapes of four classes (narrow, "
    "small, medium, large C), checks each result against NumPy, and records the fastest correct "
    "configuration per class in the device profile (its `tuning:` section), with the report "
    "that measured it (tuning-NAME.md, see --report); FlashAttention's work-group and the "
    "Winograd transforms' work-group shape are chosen the same way, the latter from fp16 and "
    "fp32 runs whose outputs must match bit for bit. A bundled profile given by name is not "
    "changed: the tuned copy goes to the user profile folder, where its name finds it from then "
    "on. The lowering, the launchers and the cost model "
    "read it; a profile without one gets defaults for its device type. Under 5 minutes on a GPU, "
    "under 15 on a 2-core CPU; --quick is a small set for tests. The profile's timing "
    "coefficients were fitted under the old choice: run `sdsim calibrate` again afterwards."
)


def add_arguments(p):
    p.add_argument("--platform", help="OpenCL platform index or name substring (default: first)")
    p.add_argument("--cl-device", help="OpenCL device index or name substring (default: first)")
    p.add_argument("--device", required=True, metavar="PROFILE",
                   help="the device profile to record the choice in (name or .yaml path)")
    p.add_argument("--report", help="tuning report path (default: tuning-NAME.md next to the "
                                    "profile written; a source checkout's reports/ for a "
                                    "profile in its device_profiles/)")
    p.add_argument("--quick", action="store_true", help="small shapes (tests, CI)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per configuration (median)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: the chosen configurations for reading, one JSON object for "
                        "scripts (the files written, the device, the seconds taken and the "
                        "choice per shape class), or the choice as csv / markdown rows")


def run(args) -> int:
    from sdsim.calibration.tune import tune, write
    from sdsim.calibration.write import calibrated_elsewhere
    from sdsim.cl.runtime import Runtime
    from sdsim.cost.profile import load_profile, measured_by, profile_files

    t0 = time.perf_counter()          # the JSON's `seconds`: this command's wall time
    if args.repeat < 1:
        raise SdsimError(f"--repeat must be at least 1 (got {args.repeat})")
    profile = load_profile(args.device)
    path = Path(profile.path)
    if shipped(path) and args.device in profile_files():   # by name: leave the bundled file
        path = user_profiles_dir() / path.name
    report = Path(args.report or written_report_path(path, f"tuning-{path.stem}.md"))
    rt = Runtime(args.platform, args.cl_device)
    if why := calibrated_elsewhere(profile.path, measured_by(rt)):
        raise SdsimError(f"{why}: its timing coefficients describe that device, and kernel "
                         "builds tuned here would be priced by them; calibrate a profile of this "
                         "device first (`sdsim calibrate --out NAME`) and tune that one "
                         "(`--device NAME`), or pick the profile's device by index (`sdsim "
                         "devices --opencl` lists them)")
    command = provenance.command("tune", f"sdsim tune --device {args.device}")
    t = tune(rt, quick=args.quick, repeat=args.repeat, command=command)
    if path != Path(profile.path):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(profile.path, path)
    write(t, path, report)
    for name, why in sorted(t.failed.items()):
        print(f"  dropped {name}: {why}", file=sys.stderr)
    if args.format == "json":
        print(dumps(summary_json(t, profile.name, path, report, time.perf_counter() - t0)))
        return 0
    if args.format in ("csv", "markdown"):   # one row per shape class
        print(render_rows([{"class": cls, "config": cfg.name, "device": profile.name,
                            "opencl_device": t.device} for cls, cfg in t.chosen.items()],
                          args.format))
        return 0
    print(f"{profile.name}: {t.device} ({t.device_type}), {t.seconds:.0f} s")
    for cls, cfg in t.chosen.items():
        print(f"  {cls:7s} {cfg.name}")
    print(f"  flash   {t.flash[0]} rows{', unrolled' if t.flash[1] else ''}")
    print(f"  winograd transforms in {t.wino[0]}x{t.wino[1]} work-groups")
    print(f"wrote the choice into {path} and {report}; recalibrate its timing coefficients "
          f"with `sdsim calibrate --out {path}`")
    return 0


def summary_json(t, name: str, path: Path, report: Path, seconds: float) -> dict:
    """The object `sdsim tune --format json` prints (sdsim/schemas/tune.schema.json): the files
    written, the device, the seconds taken and the choice, keyed as the profile's `tuning:`
    section records it."""
    from sdsim.kernels import tuning
    from sdsim.schemas import SCHEMA_VERSION

    rows, unroll = t.flash
    return {
        "schema_version": SCHEMA_VERSION,
        "device": name,
        "opencl_device": t.device,
        "device_type": t.device_type,
        "sweep": t.size,
        "repeat": int(t.repeat),
        "profile": str(path),
        "report": str(report),
        "seconds": float(seconds),
        "gemm": {cls: cfg.name for cls, cfg in t.chosen.items()},
        "flash_rows": int(rows),
        "flash_unroll": bool(unroll),
        "split_groups": int(t.split_groups),
        "wino_group": tuning.group_name(t.wino),
        "dropped": {cfg: str(why) for cfg, why in sorted(t.failed.items())},
    }
