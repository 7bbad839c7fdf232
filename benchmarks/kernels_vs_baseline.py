"""The same SD component call on an OpenCL device, timed for this working tree and for a baseline
git revision, alternating A/B/A/B in one run.

For claims like "the UNet at 256x256 on PoCL is 5x faster than revision X, same machine, same run":
the baseline revision is checked out with `git worktree add` into a temporary folder (removed
afterwards), and each round runs one subprocess per side, current tree first, then the baseline, so
both see the same machine state (load, clocks, temperature, caches). Each subprocess imports sdsim
from its own tree only (that tree first on PYTHONPATH, any other sdsim tree taken off it; checked)
and runs the same worker code, handed over as a temporary file: ComponentRunner (trace, lower with
`--opt`, seeded random weights), `--warmup` untimed calls, then `--repeat` timed ones. A call's
kernel time is the sum of the OpenCL event durations (end - start) of its dispatches; a side's
figure is the median over all its timed calls of all rounds. Each dispatch's median time is summed
by kernel family and by kernel, so the report shows where the difference comes from. The two sides'
outputs are compared too (same seed; a large difference means the computation or the random weights
changed between the revisions, not only the kernels).

    python benchmarks/kernels_vs_baseline.py --baseline HEAD~1 --resolution 256 --rounds 3
    python benchmarks/kernels_vs_baseline.py --baseline HEAD~1 --model tiny --resolution 64 \
        --repeat 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "@@KERNELS_VS_BASELINE@@"
TOP = 10

#: Run by each side's interpreter with only its own tree on PYTHONPATH. Uses only APIs that every
#: revision since the OpenCL backend landed has: Runtime(platform, device), rt.name,
#: ComponentRunner(rt, name, cfg, opt, precision, resolution, batch, seed=), runner.run(inputs)
#: -> .timings [(KernelCall, s)] and .output, random_inputs, parse_opt, load_model_config.
WORKER = r'''
import json, sys, time
a = json.loads(sys.argv[1])
import numpy as np
import sdsim
from sdsim.backends.opencl.run import ComponentRunner, random_inputs
from sdsim.cl.runtime import Runtime
from sdsim.lower.options import parse_opt
from sdsim.model.presets import load_model_config

cfg = load_model_config(a["model"])
if a.get("tuning"):   # the tuned kernel builds of a profile (trees that have sdsim tune)
    from sdsim.kernels import tuning
    tuning.activate_profile(a["tuning"])
rt = Runtime(a["platform"], a["cl_device"])
t0 = time.perf_counter()
runner = ComponentRunner(rt, a["component"], cfg, parse_opt(a["opt"]), a["precision"],
                         a["resolution"], a["batch"], seed=a["seed"])
inputs = random_inputs(a["component"], runner.graph, cfg, a["seed"])
setup = time.perf_counter() - t0
for i in range(a["warmup"]):
    runner.run(inputs)
    print(f"warm-up {i + 1}/{a['warmup']}", file=sys.stderr, flush=True)
runs, walls = [], []
for i in range(a["repeat"]):
    r = runner.run(inputs)
    runs.append([float(t) for _, t in r.timings])
    walls.append(r.wall_s)
    print(f"timed {i + 1}/{a['repeat']}: {sum(runs[-1]) * 1e3:.3f} ms", file=sys.stderr, flush=True)
calls = [{"identity": c.identity, "family": c.family, "variant": c.variant, "kernel": c.kernel,
          "class": getattr(c, "kernel_class", ""), "flops": float(c.flops)} for c, _ in r.timings]
if a.get("output"):
    np.save(a["output"], np.asarray(r.output, np.float32))
print(a["mark"] + json.dumps({"sdsim_file": sdsim.__file__, "device": rt.name, "calls": calls,
                              "runs_s": runs, "wall_s": walls, "setup_s": setup}), flush=True)
'''


def git(*args, cwd=ROOT, check=True) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, check=False, capture_output=True, text=True)
    if check and r.returncode:
        raise SystemExit(f"git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


@contextlib.contextmanager
def worktree(rev: str):
    """A detached checkout of `rev` in a temporary folder, removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="sdsim-baseline-"))
    path = tmp / "tree"
    git("worktree", "add", "--detach", str(path), rev)
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        git("worktree", "prune", check=False)


def run_side(tree: Path, worker: Path, params: dict, python: str) -> dict:
    """One subprocess: the worker under `tree`'s sdsim; its parsed result."""
    # the tree first; other entries kept (carried packages) unless they hold an sdsim package
    keep = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and not (Path(p) / "sdsim").is_dir()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), *keep]))
    r = subprocess.run([python, str(worker), json.dumps(params)], cwd=tree, env=env,
                       capture_output=True, text=True, check=False)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith(MARK)), None)
    if r.returncode or line is None:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-25:])
        raise SystemExit(f"worker in {tree} failed (exit {r.returncode}):\n{tail}")
    res = json.loads(line[len(MARK):])
    if not Path(res["sdsim_file"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"worker in {tree} imported sdsim from {res['sdsim_file']}, not its tree")
    return res


def summarize(results: list[dict]) -> dict:
    """One side's rounds: totals per timed call, and per-dispatch medians split by family and
    by (family, variant, kernel)."""
    calls = results[0]["calls"]
    for r in results[1:]:
        if [c["identity"] for c in r["calls"]] != [c["identity"] for c in calls]:
            raise SystemExit("a side ran different plans in different rounds")
    runs = [run for r in results for run in r["runs_s"]]
    totals = [sum(run) * 1e3 for run in runs]
    med = [statistics.median(run[i] for run in runs) * 1e3 for i in range(len(calls))]
    fam, ker = defaultdict(lambda: [0, 0.0, 0.0]), defaultdict(lambda: [0, 0.0, 0.0, ""])
    for c, ms in zip(calls, med):
        for d, key in ((fam, c["family"]), (ker, f"{c['family']}/{c['variant']}:{c['kernel']}")):
            d[key][0] += 1
            d[key][1] += ms
            d[key][2] += c["flops"]
        ker[f"{c['family']}/{c['variant']}:{c['kernel']}"][3] = c["class"]
    return {"kernel_ms": statistics.median(totals), "min_ms": min(totals), "max_ms": max(totals),
            "round_medians_ms": [statistics.median(sum(run) * 1e3 for run in r["runs_s"])
                                 for r in results],
            "wall_ms": statistics.median(w * 1e3 for r in results for w in r["wall_s"]),
            "dispatches": len(calls), "gflop": sum(c["flops"] for c in calls) / 1e9,
            "timed_calls": len(runs), "device": results[0]["device"],
            "by_family": {k: {"calls": n, "ms": ms, "gflop": fl / 1e9}
                          for k, (n, ms, fl) in fam.items()},
            "by_kernel": {k: {"calls": n, "ms": ms, "gflop": fl / 1e9, "class": cls}
                          for k, (n, ms, fl, cls) in ker.items()}}


def joined(cur: dict, base: dict, key: str) -> list[dict]:
    """Rows of `key` (by_family or by_kernel) for both sides, largest time first."""
    rows = []
    for k in set(cur[key]) | set(base[key]):
        a, b = cur[key].get(k), base[key].get(k)
        rows.append({key[3:]: k, "calls": f"{a['calls'] if a else 0}/{b['calls'] if b else 0}",
                     "current_ms": a["ms"] if a else None, "baseline_ms": b["ms"] if b else None,
                     "baseline/current": b["ms"] / a["ms"] if a and b and a["ms"] else None,
                     "current_pct": 100 * a["ms"] / sum(x["ms"] for x in cur[key].values())
                     if a else None})
    return sorted(rows, key=lambda r: -max(r["current_ms"] or 0, r["baseline_ms"] or 0))


def fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10000 else f"{v:.0f}"
    return str(v)


def table(rows) -> str:
    from tabulate import tabulate

    if not rows:
        return "(none)"
    keys = list(rows[0])
    return tabulate([[fmt(r.get(k)) for k in keys] for r in rows], headers=keys,
                    tablefmt="github", disable_numparse=True)


def summary_rows(res) -> list[dict]:
    rows = []
    for side in ("current", "baseline"):
        s = res[side]
        rows.append({"side": side, "commit": res["commits"][side], "kernel_ms": s["kernel_ms"],
                     "min_ms": s["min_ms"], "max_ms": s["max_ms"],
                     "round_medians_ms": ", ".join(f"{x:.4g}" for x in s["round_medians_ms"]),
                     "wall_ms": s["wall_ms"], "dispatches": s["dispatches"],
                     "plan GFLOP": s["gflop"]})
    return rows


def markdown(res) -> str:
    s, c = res["settings"], res["comparison"]
    return "\n".join([
        (f"# {s['component']} at {s['resolution']}x{s['resolution']} on {res['device']}: "
         f"working tree `{res['commits']['current']}` vs baseline `{res['commits']['baseline']}`"),
        "",
        f"- Command: `{res['command']}`",
        f"- Date: {res['date']}; host {res['host']}",
        f"- OpenCL device: {res['device']}",
        f"- Current: working tree at `{res['commits']['current']}` ({res['subjects']['current']})",
        (f"- Baseline: `{s['baseline']}` = `{res['commits']['baseline']}` "
         f"({res['subjects']['baseline']})"),
        f"- Machine load (1-min average) before each subprocess: {res['loads']}",
        (f"- Workload: model `{s['model']}`, batch {s['batch']}, {s['precision']} storage, "
         f"`--opt {s['opt']}`, seeded random weights (seed {s['seed']}); {s['rounds']} round(s) of "
         f"current then baseline, each a subprocess with {s['warmup']} warm-up and {s['repeat']} "
         "timed call(s)"),
        ("- Kernel time: sum of the OpenCL event durations (end - start) of one call's dispatches; "
         "a side's figure is the median over all its timed calls; the splits sum each "
         "dispatch's median"),
        (f"- Outputs: max |current - baseline| / max |current| = {fmt(c['output_rel_diff'], 3)}; "
         f"NaN count {c['output_nan_count']}"),
        "",
        f"**baseline / current = {c['baseline_over_current']:.3g}** (the current tree is "
        + (f"{c['baseline_over_current']:.3g}x faster" if c["baseline_over_current"] >= 1
           else f"{c['current_over_baseline']:.3g}x slower")
        + f"; current / baseline = {c['current_over_baseline']:.3g})",
        "",
        table(summary_rows(res)), "",
        "## By kernel family", "", table(res["by_family"]), "",
        f"## Top {TOP} kernels", "", table(res["by_kernel"][:TOP]), ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--baseline", default="HEAD",
                    help="git revision to compare with (default HEAD: the uncommitted changes)")
    ap.add_argument("--platform", help="OpenCL platform index or name substring")
    ap.add_argument("--tuning", metavar="PROFILE",
                    help="run the current tree with the GEMM builds tuned into this device "
                         "profile (sdsim tune; the baseline runs its own kernels)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring")
    ap.add_argument("--component", default="unet", choices=["unet", "vae_decoder", "text_encoder"])
    ap.add_argument("--model", default="sd14", help="model preset (sd14, tiny)")
    ap.add_argument("--resolution", type=int, default=256, help="image size in pixels")
    ap.add_argument("--batch", type=int, default=2, help="UNet batch (2: classifier-free guidance)")
    ap.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="storage")
    ap.add_argument("--opt", default="paper", help="optimization setting: paper, none, a list")
    ap.add_argument("--rounds", type=int, default=2,
                    help="A/B rounds (one subprocess per side each)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per subprocess")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per subprocess")
    ap.add_argument("--seed", type=int, default=0, help="weights and inputs seed")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for both sides (default: this one)")
    ap.add_argument("--report", help="path stem: writes STEM.md and STEM.json (default "
                                     "reports/kernels-vs-baseline-COMPONENT-RESOLUTION; 'none': "
                                     "no report)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.repeat < 1 or args.warmup < 0:
        ap.error("--rounds and --repeat must be >= 1, --warmup >= 0")

    import numpy as np
    from tqdm import tqdm

    from sdsim import provenance
    from sdsim.output import write_pair
    from sdsim.paths import REPORTS_DIR

    base_full = git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")
    commits = {"current": provenance.commit(), "baseline": base_full[:7]}
    subjects = {"current": "HEAD: " + git("log", "-1", "--format=%s", "HEAD")[:100],
                "baseline": git("log", "-1", "--format=%s", base_full)[:100]}
    params = {k: getattr(args, k) for k in ("platform", "cl_device", "component", "model",
                                            "resolution", "batch", "precision", "opt", "warmup",
                                            "repeat", "seed")}
    params["mark"] = MARK
    results, loads = {"current": [], "baseline": []}, []
    with tempfile.TemporaryDirectory(prefix="sdsim-kvb-") as tmp, worktree(base_full) as btree:
        worker = Path(tmp) / "kernels_vs_baseline_worker.py"
        worker.write_text(WORKER)
        trees = {"current": ROOT, "baseline": btree}
        with tqdm(total=2 * args.rounds, unit="run", file=sys.stderr) as bar:
            for rnd in range(args.rounds):
                for side in ("current", "baseline"):
                    bar.set_description(f"round {rnd + 1} {side}")
                    loads.append(provenance.load())
                    out = Path(tmp) / f"{side}.npy"
                    tuned = str(Path(args.tuning).resolve()) if args.tuning and \
                        side == "current" and Path(args.tuning).exists() else (
                            args.tuning if side == "current" else None)
                    res = run_side(trees[side], worker,
                                   dict(params, output=str(out), tuning=tuned), args.python)
                    results[side].append(res)
                    tqdm.write(f"round {rnd + 1} {side}: "
                               + ", ".join(f"{sum(r) * 1e3:.3f}" for r in res["runs_s"])
                               + " ms", file=sys.stderr)
                    bar.update()
        a, b = np.load(Path(tmp) / "current.npy"), np.load(Path(tmp) / "baseline.npy")
        nans = {"current": int(np.isnan(a).sum()), "baseline": int(np.isnan(b).sum())}
        rel = (float(np.abs(a.astype(np.float64) - b).max() / (np.abs(a).max() or 1))
               if a.shape == b.shape else None)
        if any(nans.values()):
            print(f"warning: NaN in the outputs ({nans}); a side computes wrong numbers",
                  file=sys.stderr)
    loads.append(provenance.load())
    cur, base = summarize(results["current"]), summarize(results["baseline"])
    res = {"command": "python benchmarks/kernels_vs_baseline.py "
                      + " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv)),
           "date": provenance.now(),
           "host": platform.node(), "device": cur["device"], "commits": commits,
           "baseline_commit_full": base_full, "subjects": subjects, "loads": loads,
           "settings": dict({k: v for k, v in params.items() if k != "mark"},
                            baseline=args.baseline, rounds=args.rounds,
                            tuning_of_current=args.tuning),
           "current": cur, "baseline": base,
           "comparison": {"baseline_over_current": base["kernel_ms"] / cur["kernel_ms"],
                          "current_over_baseline": cur["kernel_ms"] / base["kernel_ms"],
                          "output_rel_diff": rel, "output_nan_count": nans},
           "by_family": joined(cur, base, "by_family"), "by_kernel": joined(cur, base, "by_kernel")}
    if base["device"] != cur["device"]:
        print(f"warning: the sides ran on different devices ({cur['device']} vs "
              f"{base['device']})", file=sys.stderr)
    print(markdown(res).split("\n## Top")[0])
    if (args.report or "").lower() != "none":
        md, js = write_pair(args.report or REPORTS_DIR / f"kernels-vs-baseline-{args.component}"
                            f"-{args.resolution}", markdown(res), res)
        print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
