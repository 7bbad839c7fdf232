"""How long `sdsim predict --device s23ultra` takes: whole command (fresh interpreter each run,
imports included) and, in-process, the trace / lower+cost split. Nothing is cached on disk.

    python benchmarks/predict_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="s23ultra")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "sdsim", "predict", "--device", args.device]
    walls = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)

    from sdsim.cost.predict import predict, trace
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import SETS

    prof = load_profile(args.device)
    t0 = time.perf_counter()
    graphs = trace("sd14", 512, "fp16")
    t1 = time.perf_counter()
    predict(prof, SETS["paper"], graphs=graphs)
    t2 = time.perf_counter()
    print(f"sdsim predict --device {args.device} (fresh process, {args.runs} runs): "
          f"median {statistics.median(walls):.3f} s, max {max(walls):.3f} s (budget 2 s)")
    print(f"in-process: trace {t1 - t0:.3f} s, lower + cost + memory plan {t2 - t1:.3f} s")
    return 0 if max(walls) < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
