"""Where does half arithmetic overflow in a whole text-to-image run, with and without the paper's kernels?

Runs the pipeline (seeded random weights) through the OpenCL kernel plan at fp16 storage on a
device with native half (Intel's CPU runtime by default), once per `--opt` plan and `--arith`
(fp16: every kernel's half build, float accumulators and statistics; fp16acc: half
accumulators in the contractions too; fp32: float arithmetic on the same fp16 storage), with every op's output read back to name the first op
that gives inf/NaN (`sdsim generate --find-overflow`). Each image is set against the NumPy
reference at fp32 and at fp16 storage (every op's output rounded to half, float arithmetic), so
a run that stays finite but loses precision shows as a large pixel difference.

    python benchmarks/fp16_overflow.py                     # tiny, and SD1.4 at 256x256, 1 step
    python benchmarks/fp16_overflow.py --models tiny --steps 4
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: image size per preset: the tiny model's own, SD1.4 at 256x256 to keep a CPU run short
SIZES = {"tiny": None, "sd14": 256}
#: presets also run through the kernel plan's NumPy simulation (`--backend sim`; slow at SD1.4)
SIMULATED = ("tiny",)


def main() -> int:
    import numpy as np
    from tabulate import tabulate
    from tqdm import tqdm

    from sdsim import provenance
    from sdsim.cl.runtime import Runtime
    from sdsim.kernels import tuning
    from sdsim.lower.options import parse_opt
    from sdsim.model.pipeline import StableDiffusion

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "sd14"], choices=tuple(SIZES))
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--opts", nargs="+", default=["paper", "none"])
    ap.add_argument("--ariths", nargs="+", default=["fp16", "fp16acc", "fp32"])
    ap.add_argument("--platform", default="Intel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default=str(ROOT / "reports" / "fp16-overflow.md"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Non-empty compiler output")
    warnings.filterwarnings("ignore", message="random weights and no tokenizer")
    prompt = "a photograph of an astronaut riding a horse"

    def image(model, precision, stages=None, sim=None):
        sd = StableDiffusion.random(model, args.seed, precision)
        if stages:
            sd.use_opencl(*stages, watch=True)
        if sim:
            sd.use_sim(*sim)
        img = sd(prompt, "", args.steps, 7.5, "pndm", args.seed, None, SIZES[model],
                 SIZES[model], progress=False)
        return img, sd.nonfinite_report()

    load_before = provenance.load()
    rows, device = [], None
    runs = [(m, o, a) for m in args.models for o in args.opts for a in args.ariths]
    bar = tqdm(total=len(runs) + 2 * len(args.models), desc="runs", unit="run")
    for model in args.models:
        ref = {}
        for precision in ("fp32", "fp16"):
            ref[precision], where = image(model, precision)
            bar.update()
            rows.append({"model": model, "backend": f"numpy {precision} storage", "opt": "-",
                         "arith": "float (NumPy)", "first_inf_nan": where or "none",
                         "max_diff_vs_fp32": int(np.abs(ref[precision].astype(int)
                                                        - ref["fp32"]).max()),
                         "max_diff_vs_fp16": "-", "max_diff_sim": "-"})
        for opt in args.opts:
            for arith in args.ariths:
                rt = Runtime(args.platform, None, arith)
                device = rt.name
                img, where = image(model, "fp16", (rt, parse_opt(opt)))
                bar.update()
                rows.append({"model": model, "backend": "opencl fp16 storage", "opt": opt,
                             "arith": arith, "first_inf_nan": where or "none",
                             "max_diff_vs_fp32": int(np.abs(img.astype(int) - ref["fp32"]).max()),
                             "max_diff_vs_fp16": int(np.abs(img.astype(int) - ref["fp16"]).max()),
                             "max_diff_sim": "-"})
                if model in SIMULATED and arith != "fp32":
                    with tuning.use(tuning.DEFAULTS[tuning.device_type(rt.device)]):
                        sim, where = image(model, "fp16", sim=(parse_opt(opt), arith))
                    rows[-1]["max_diff_sim"] = int(np.abs(img.astype(int) - sim).max())
    bar.close()
    cmd = "python benchmarks/fp16_overflow.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    date = provenance.now()
    sizes = ", ".join(f"{m} at {SIZES[m] or 'its own size'}" for m in args.models)
    md = f"""# fp16 overflow and precision loss in whole text-to-image runs

Command: `{cmd}`
Date: {date}; sdsim commit {provenance.commit()}; host {platform.node()} ({platform.machine()});
load average (1 min) {load_before} before, {provenance.load()} after (no timing is reported).
OpenCL device: {device}. Models: {sizes}, seeded random weights (seed {args.seed}),
{args.steps} step(s) of PNDM, guidance 7.5.

Each OpenCL run stores every tensor in fp16 and computes as `arith` says: `fp16` every kernel's
half build (half products, exponentials, normalize steps and activations; float accumulators in
the contractions, float softmax sums and norm statistics: README "Half arithmetic"), `fp16acc`
half accumulators in the contractions too, `fp32` float arithmetic. `first_inf_nan` is
the first op whose output held inf or NaN (every op's output read back); `max_diff` is the
largest pixel difference (of 255) against the NumPy reference at fp32 storage and at fp16
storage (float arithmetic); `max_diff_sim`: against the same plan's NumPy simulation with the
kernels' half rounding points (`sdsim generate --backend sim`, the tiny model).

{tabulate(rows, headers="keys", tablefmt="github")}
"""
    Path(args.report).write_text(md)
    Path(args.report).with_suffix(".json").write_text(json.dumps(
        {"command": cmd, "date": date, "commit": provenance.commit(), "device": device,
         "rows": rows}, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
