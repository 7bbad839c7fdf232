"""One SD1.4 UNet call and the VAE decoder on one GPU: sdsim's OpenCL kernels against PyTorch eager.

How far are sdsim's OpenCL kernels from what a GPU's own stack reaches on the same work? Both
sides run the same computation in one process on the same device: the same config, the SAME
weights (one seeded random draw of every tensor, norms and biases included, as in
tests/test_crosscheck_models.py, made in the diffusers model and handed to sdsim by name: sdsim's
parameter names are diffusers' checkpoint names) and the same seeded inputs; the outputs are
compared (max |sdsim - torch| against max |torch|) so the times are of one computation.

- sdsim: `ComponentRunner` (trace, lower with `--opt`, fp32 storage). Kernel time of one call =
  the sum of the OpenCL event durations (profiling queue, end - start) of all its dispatches;
  `--warmup` untimed calls (weights uploaded, programs built), then the median of `--repeat`.
  Split by kernel family and kernel, with each contraction kernel's (GEMM, conv, attention)
  achieved TFLOP/s from the plan's FLOPs (KernelCall.flops).
- PyTorch: diffusers `UNet2DConditionModel` / `AutoencoderKL.decode`, fp32, TF32 off for matmul
  and cuDNN, eager, no_grad. On CUDA two figures, each the median of `--repeat` calls after the
  warm-up: kernel time = the sum of the CUDA kernel durations torch.profiler (CUPTI) records for
  one call, the counterpart of sdsim's figure (memcpy/memset not counted); span = CUDA events
  recorded around the call (kernels plus the launch gaps between them). On the CPU: wall time.

The ratio sdsim / torch is of kernel times (span on CUDA also shown; wall time on the CPU).
Effective TFLOP/s on both sides divide the traced model FLOPs (direct convolution) by the time.

    PYTHONPATH=$PWD python3 benchmarks/unet_opencl_vs_torch.py --platform NVIDIA --torch-device cuda
    python benchmarks/unet_opencl_vs_torch.py --model tiny --resolution 64 --torch-device cpu \
        --repeat 1
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import platform
import re
import shlex
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: sdsim component -> (diffusers folder, how torch runs it)
TORCH_CALLS = {"unet": "unet", "vae_decoder": "vae"}
#: kernel classes whose FLOPs are multiply-adds of a contraction (TFLOP/s is meaningful)
CONTRACTION_CLASSES = ("gemm", "conv", "attention")
TOP = 10


def log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


# --- the shared model: one config, one set of weights ---------------------------------------
def diffusers_model(diffusers, folder: str, cfg_part):
    """The diffusers model of `folder` (unet or vae) built from sdsim's config dataclass."""
    cls = {"unet": diffusers.UNet2DConditionModel, "vae": diffusers.AutoencoderKL}[folder]
    d = {k: list(v) if isinstance(v, tuple) else v
         for k, v in dataclasses.asdict(cfg_part).items()}
    if "heads" in d:   # SD configs give the head count as diffusers' attention_head_dim
        d["attention_head_dim"] = d.pop("heads")
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(d) - set(accepted))
    if unknown:
        raise SystemExit(f"diffusers {cls.__name__} does not take {', '.join(unknown)}")
    return cls(**d)


def shared_weights(torch, model, sdsim_component, model_cfg) -> dict:
    """name -> float32 array of the torch model's parameters (views of the CPU tensors), checked
    to hold every parameter the sdsim component reads with the shape it expects."""
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    sd_model, _ = sdsim_component.build(model_cfg)
    for name, p in sdsim_component.params(sd_model):
        if name not in state:
            raise SystemExit(f"diffusers model has no tensor {name!r} "
                             f"(sdsim {sdsim_component.name})")
        if tuple(state[name].shape) != tuple(p.shape):
            raise SystemExit(f"{name}: diffusers shape {tuple(state[name].shape)}, sdsim "
                             f"expects {tuple(p.shape)}")
    return state


# --- sdsim on OpenCL --------------------------------------------------------------------------
def run_sdsim(rt, name, model_cfg, args, weights, inputs, bar):
    from sdsim.backends.opencl.run import ComponentRunner
    from sdsim.lower.options import parse_opt

    runner = ComponentRunner(rt, name, model_cfg, parse_opt(args.opt), "fp32", args.resolution,
                             args.batch, weights=weights, seed=args.seed)
    for _ in range(args.warmup):
        runner.run(inputs)
        bar.update()
    runs = []
    for _ in range(args.repeat):
        runs.append(runner.run(inputs))
        bar.update()
    calls = [c for c, _ in runs[0].timings]
    per_call = [statistics.median(r.timings[i][1] for r in runs) for i in range(len(calls))]
    totals = [sum(t for _, t in r.timings) * 1e3 for r in runs]
    out = runs[-1].output
    res = {"kernel_ms": statistics.median(totals), "runs_ms": totals,
           "wall_ms": statistics.median(r.wall_s * 1e3 for r in runs),
           "dispatches": len(calls), "plan_gflop": sum(c.flops for c in calls) / 1e9,
           **split(calls, per_call)}
    del runner
    return res, out


def split(calls, seconds) -> dict:
    """The time of one call split by kernel family and by (family, variant, kernel), with the
    achieved TFLOP/s of each contraction kernel; `seconds` is each dispatch's median time."""
    fam, ker = defaultdict(lambda: [0, 0.0, 0.0]), defaultdict(lambda: [0, 0.0, 0.0, ""])
    for c, s in zip(calls, seconds):
        for d, key in ((fam, c.family), (ker, (c.family, c.variant, c.kernel))):
            d[key][0] += 1
            d[key][1] += s
            d[key][2] += c.flops
        ker[(c.family, c.variant, c.kernel)][3] = getattr(c, "kernel_class", "")
    total = sum(seconds) or 1.0
    by_family = sorted(({"family": f, "calls": n, "ms": s * 1e3, "pct": 100 * s / total,
                         "gflop": fl / 1e9} for f, (n, s, fl) in fam.items()),
                       key=lambda r: -r["ms"])
    kernels = sorted(({"family": f, "variant": v, "kernel": k, "class": cls, "calls": n,
                       "ms": s * 1e3, "pct": 100 * s / total, "gflop": fl / 1e9,
                       "tflops": fl / s / 1e12 if s > 0 and cls in CONTRACTION_CLASSES else None}
                      for (f, v, k), (n, s, fl, cls) in ker.items()), key=lambda r: -r["ms"])
    return {"by_family": by_family, "top_kernels": kernels[:TOP],
            "contraction_kernels": [r for r in kernels if r["class"] in CONTRACTION_CLASSES]}


# --- PyTorch ------------------------------------------------------------------------------
def run_torch(torch, fn, device, args, bar):
    """Warm-up, then per-call times: CUDA kernel sums (profiler) and event spans, or wall time."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.no_grad():
        for _ in range(args.warmup):
            out = fn()
            sync()
            bar.update()
        res = {}
        if cuda:
            spans = []
            for _ in range(args.repeat):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                sync()
                start.record()
                out = fn()
                end.record()
                end.synchronize()
                spans.append(start.elapsed_time(end))
                bar.update()
            sums, memops, names = [], [], defaultdict(lambda: [0, 0.0])
            for _ in range(args.repeat):
                kern, mem = profile_kernels(torch, fn, names)
                sums.append(kern)
                memops.append(mem)
                bar.update()
            top = sorted(({"kernel": k, "calls_per_call": n / args.repeat,
                           "ms": us / args.repeat / 1e3} for k, (n, us) in names.items()),
                         key=lambda r: -r["ms"])[:TOP]
            res.update(kernel_ms=statistics.median(sums), runs_ms=sums,
                       span_ms=statistics.median(spans), span_runs_ms=spans,
                       memcpy_memset_ms=statistics.median(memops), top_kernels=top,
                       timing="kernel_ms: sum of CUDA kernel durations from torch.profiler "
                              "(CUPTI), median of calls; span_ms: CUDA events around the call")
            if not any(sums):
                log("warning: torch.profiler recorded no CUDA kernels; kernel_ms is 0")
            elif res["kernel_ms"] > 1.05 * res["span_ms"]:
                log(f"warning: CUDA kernel sum {res['kernel_ms']:.3f} ms exceeds the event span "
                    f"{res['span_ms']:.3f} ms (overlapping streams or events counted twice)")
        else:
            walls = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = fn()
                walls.append((time.perf_counter() - t0) * 1e3)
                bar.update()
            res.update(kernel_ms=statistics.median(walls), runs_ms=walls, span_ms=None,
                       timing=f"CPU wall time (perf_counter), {torch.get_num_threads()} threads, "
                              "median of calls")
    return res, out.detach().float().cpu().numpy()


def profile_kernels(torch, fn, names) -> tuple[float, float]:
    """(kernel ms, memcpy/memset ms) of one profiled call; adds (count, us) per kernel name."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kern = mem = 0.0
    for e in prof.events():
        if e.device_type != DeviceType.CUDA or getattr(e, "is_user_annotation", False):
            continue   # host-side ops, or GPU-timeline ranges that enclose kernels
        us = e.time_range.elapsed_us()
        if e.name.startswith(("Memcpy", "Memset", "cudaMemcpy", "cudaMemset")):
            mem += us
            continue
        kern += us
        names[e.name][0] += 1
        names[e.name][1] += us
    return kern / 1e3, mem / 1e3


def torch_fn(torch, name, model, inputs, device):
    t = [torch.from_numpy(a).to(device) for a in inputs]
    if name == "unet":
        return lambda: model(t[0], t[1], t[2]).sample
    return lambda: model.decode(t[0]).sample


def agreement(got, want, tol: float) -> dict:
    import numpy as np

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return {"shape_sdsim": list(got.shape), "shape_torch": list(want.shape), "agree": False}
    err = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    rel = err / scale if scale else math.inf
    return {"max_abs_diff": err, "torch_max_abs": scale, "torch_std": float(want.std()),
            "rel_to_max": rel, "tol": tol, "agree": bool(rel <= tol)}


# --- one component, both sides -----------------------------------------------------------------
def run_component(name, args, rt, model_cfg, torch, diffusers, device, bar):
    from sdsim.backends.opencl.run import random_inputs
    from sdsim.backends.trace import trace_component
    from sdsim.model import components

    comp = components.get(name, components.OPENCL)
    folder = TORCH_CALLS[name]
    log(f"{name}: building the diffusers model and drawing its weights (seed {args.seed})")
    from sdsim.testing.torch_random import randomize

    model = randomize(torch, diffusers_model(diffusers, folder, getattr(model_cfg, folder)),
                      args.seed)
    weights = shared_weights(torch, model, comp, model_cfg)
    graph = trace_component(name, model_cfg, args.resolution, args.batch, "fp32")
    inputs = random_inputs(name, graph, model_cfg, args.seed)
    model_gflop = graph.flops / 1e9
    log(f"{name}: sdsim on {rt.name} ({args.warmup} warm-up + {args.repeat} timed)")
    sd, sd_out = run_sdsim(rt, name, model_cfg, args, weights, inputs, bar)
    model = model.to(device)
    attn = None
    if hasattr(model, "attn_processors"):
        attn = sorted({type(p).__name__ for p in model.attn_processors.values()})
    log(f"{name}: torch on {device}")
    th, th_out = run_torch(torch, torch_fn(torch, name, model, inputs, device), device, args, bar)
    th["attention_processors"] = attn
    del model, weights
    if device.type == "cuda":
        torch.cuda.empty_cache()
    agree = agreement(sd_out, th_out, args.tol)
    if not agree.get("agree"):
        log(f"warning: {name}: outputs differ ({agree}); the times may not be of one computation")
    return {"inputs": [list(a.shape) for a in inputs], "model_gflop": model_gflop,
            "sdsim": sd, "torch": th,
            "ratio_kernel": sd["kernel_ms"] / th["kernel_ms"] if th["kernel_ms"] else None,
            "ratio_span": sd["kernel_ms"] / th["span_ms"] if th.get("span_ms") else None,
            "agreement": agree}


# --- environment and report ---------------------------------------------------------------
def opencl_info(rt) -> dict:
    d, p = rt.device, rt.device.platform
    return {"name": rt.name, "platform": p.name.strip(), "platform_version": p.version.strip(),
            "device": d.name.strip(), "driver_version": d.driver_version.strip(),
            "device_version": d.version.strip(), "compute_units": int(d.max_compute_units),
            "global_mem_gib": round(d.global_mem_size / 2**30, 1)}


def torch_info(torch, device) -> dict:
    info = {"version": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        info.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def summary_rows(result) -> list[dict]:
    rows = []
    what = "kernel" if result["torch"]["device"].startswith("cuda") else "wall"
    for name, r in result["components"].items():
        sd, th, ag = r["sdsim"], r["torch"], r["agreement"]
        rows.append({"component": name, "sdsim kernel ms": fmt(sd["kernel_ms"], 4),
                     f"torch {what} ms": fmt(th["kernel_ms"], 4),
                     "sdsim/torch": fmt(r["ratio_kernel"]),
                     "torch span ms": fmt(th.get("span_ms"), 4),
                     "sdsim/span": fmt(r["ratio_span"]), "model GFLOP": fmt(r["model_gflop"], 4),
                     "sdsim eff. TFLOP/s": fmt(r["model_gflop"] / sd["kernel_ms"]),
                     "torch eff. TFLOP/s":
                         fmt(r["model_gflop"] / th["kernel_ms"]) if th["kernel_ms"] else "-",
                     "max|diff|/max|torch|": fmt(ag.get("rel_to_max"), 2),
                     "agree": ag.get("agree")})
    return rows


def table(rows, keys=None) -> str:
    from tabulate import tabulate

    if not rows:
        return "(none)"
    keys = keys or list(rows[0])
    return tabulate([[fmt(r.get(k)) for k in keys] for r in rows], headers=keys,
                    tablefmt="github", disable_numparse=True)


def markdown(result) -> str:
    o, t, s = result["opencl"], result["torch"], result["settings"]
    L = [f"# sdsim OpenCL vs PyTorch eager on {o['device']}: {', '.join(result['components'])}",
         "",
         f"- Command: `{result['command']}`",
         (f"- Date: {result['date']}; host {result['host']}; sdsim commit "
          f"`{result['sdsim_commit']}`"),
         (f"- Machine load (1-min average): {result['load_before']} before, "
          f"{result['load_after']} after"),
         (f"- OpenCL: {o['platform']} ({o['platform_version']}), device {o['device']}, driver "
          f"{o['driver_version']}, {o['device_version']}"),
         f"- PyTorch: {t['version']} on {t['device']}"
         + (f" ({t['device_name']}, CUDA {t['cuda']}, cuDNN {t['cudnn']})"
            if "device_name" in t else f" ({t['threads']} threads)")
         + f"; TF32 matmul {t['matmul_allow_tf32']}, cuDNN TF32 {t['cudnn_allow_tf32']}, "
           f"cuDNN benchmark {t['cudnn_benchmark']}, eager, no_grad, fp32",
         (f"- Workload: model `{s['model']}`, {s['resolution']}x{s['resolution']} pixels, UNet "
          f"batch {s['batch']} (VAE: {max(1, s['batch'] // 2)} image(s)), random weights seed "
          f"{s['seed']} shared by both sides; sdsim `--opt {s['opt']}`, fp32 storage; "
          f"{s['warmup']} warm-up call(s), median of {s['repeat']}"),
         "- sdsim time: sum of the OpenCL event durations (end - start) of one call's dispatches",
         ("- model GFLOP: the traced component's FLOPs (direct convolution, whatever the "
          "algorithm); eff. TFLOP/s = model GFLOP / time, on both sides. Per-kernel TFLOP/s below "
          "use the FLOPs each kernel executes (KernelCall.flops: Winograd's GEMMs do fewer than "
          "the direct convolution they replace)"),
         "- torch time: " + next(iter(result["components"].values()))["torch"]["timing"],
         "", "## Summary", "", table(summary_rows(result)), ""]
    for name, r in result["components"].items():
        sd, th = r["sdsim"], r["torch"]
        L += [f"## {name}", "",
              f"Inputs {r['inputs']}; sdsim {sd['dispatches']} dispatches, "
              f"{fmt(sd['plan_gflop'], 4)} GFLOP executed (plan), wall {fmt(sd['wall_ms'], 4)} "
              "ms per call; "
              f"runs (ms): sdsim {[round(x, 3) for x in sd['runs_ms']]}, torch "
              f"{[round(x, 3) for x in th['runs_ms']]}"
              + (f"; torch attention processors: {', '.join(th['attention_processors'])}"
                 if th.get("attention_processors") else ""), "",
              "### sdsim by kernel family", "",
              table(sd["by_family"], ["family", "calls", "ms", "pct", "gflop"]), "",
              f"### sdsim top {TOP} kernels", "",
              table(sd["top_kernels"],
                    ["family", "variant", "kernel", "class", "calls", "ms", "pct", "gflop",
                     "tflops"]), "",
              "### sdsim contraction kernels (GEMM, conv, attention): achieved TFLOP/s", "",
              table(sd["contraction_kernels"],
                    ["family", "variant", "kernel", "calls", "ms", "gflop", "tflops"]), ""]
        if th.get("top_kernels"):
            L += [f"### torch top {TOP} CUDA kernels (ms per call)", "",
                  table([dict(k, kernel=k["kernel"][:90]) for k in th["top_kernels"]]), ""]
    return "\n".join(L)


def _tuning_used() -> dict:
    """The GEMM build per shape class that ran, and where the choice came from."""
    from sdsim.kernels import tuning

    t = tuning.current()
    return {"source": t.source, "gemm": {c: cfg.name for c, cfg in t.gemm.items()}}


def main(argv=None) -> int:
    from sdsim.model.components import OPENCL

    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--platform", help="OpenCL platform index or name substring (default: the "
                                       "first that is not a debugging simulator)")
    ap.add_argument("--cl-device", help="OpenCL device index or name substring (default: first)")
    ap.add_argument("--tuning", metavar="PROFILE",
                    help="run the GEMM builds tuned into this device profile (sdsim tune; "
                         "default: the defaults for the device's type)")
    ap.add_argument("--model", default="sd14",
                    help="model preset (sd14, tiny) or a diffusers folder (its config.json files "
                         "only; weights are random)")
    ap.add_argument("--resolution", type=int, default=512, help="image size in pixels")
    ap.add_argument("--batch", type=int, default=2, help="UNet batch (2: classifier-free guidance)")
    ap.add_argument("--opt", default="paper",
                    help="sdsim optimization setting: paper, none, or a switch list")
    ap.add_argument("--components", nargs="+", default=["unet", "vae_decoder"],
                    choices=[c for c in OPENCL if c in TORCH_CALLS])
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per side (median)")
    ap.add_argument("--seed", type=int, default=0, help="weights and inputs seed")
    ap.add_argument("--torch-device", default=None,
                    help="cuda, cuda:N or cpu (default: cuda when available)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN time its convolution algorithms (default off: eager "
                         "defaults, heuristic choice)")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="outputs agree when max|sdsim - torch| <= tol * max|torch|")
    ap.add_argument("--report", help="path stem of the report: writes STEM.md and STEM.json "
                                     "(default reports/unet-opencl-vs-torch-DEVICE; 'none': no "
                                     "report)")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        ap.error("--repeat must be >= 1 and --warmup >= 0")

    import diffusers
    import torch
    from tqdm import tqdm

    from sdsim import provenance
    from sdsim.output import write_pair
    from sdsim.cl.runtime import Runtime
    from sdsim.model.presets import load_model_config
    from sdsim.paths import REPORTS_DIR

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
    tdev = args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(tdev)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--torch-device {tdev}: this torch ({torch.__version__}) has no CUDA device; "
                 "use --torch-device cpu")
    model_cfg = load_model_config(args.model)
    if args.tuning:
        from sdsim.kernels import tuning

        tuning.activate_profile(args.tuning)
    rt = Runtime(args.platform, args.cl_device)
    ocl, tinfo = opencl_info(rt), torch_info(torch, device)
    if device.type == "cuda" and slug(tinfo["device_name"]) not in slug(ocl["device"]) \
            and slug(ocl["device"]) not in slug(tinfo["device_name"]):
        log(f"warning: OpenCL device {ocl['device']!r} and torch device "
            f"{tinfo['device_name']!r} may not be the same GPU")
    log(f"OpenCL: {rt.name}; torch {torch.__version__} on {device}")
    load_before = provenance.load()
    per_side = args.warmup + args.repeat * (2 if device.type == "cuda" else 1)
    argv_used = sys.argv[1:] if argv is None else argv
    result = {"command": "python3 benchmarks/unet_opencl_vs_torch.py "
                         + " ".join(shlex.quote(a) for a in argv_used),
              "date": provenance.now(),
              "host": platform.node(), "sdsim_commit": provenance.commit(),
              "load_before": load_before, "opencl": ocl, "torch": tinfo,
              "settings": {"model": args.model, "resolution": args.resolution,
                           "batch": args.batch, "opt": args.opt, "precision": "fp32",
                           "warmup": args.warmup, "repeat": args.repeat, "seed": args.seed,
                           "tol": args.tol, "tuning": _tuning_used()},
              "components": {}}
    with tqdm(total=len(args.components) * (args.warmup + args.repeat + per_side), unit="call",
              file=sys.stderr, desc="calls") as bar:
        for name in args.components:
            result["components"][name] = run_component(name, args, rt, model_cfg, torch,
                                                       diffusers, device, bar)
    result["load_after"] = provenance.load()

    print(f"{', '.join(args.components)} at {args.resolution}x{args.resolution}, batch "
          f"{args.batch}, fp32: sdsim --opt {args.opt} on {rt.name} vs torch "
          f"{torch.__version__} on {tinfo.get('device_name', device)}")
    print(table(summary_rows(result)))
    for name, r in result["components"].items():
        print(f"\n{name}: sdsim top {TOP} kernels")
        print(table(r["sdsim"]["top_kernels"],
                    ["family", "variant", "kernel", "class", "calls", "ms", "pct", "tflops"]))
    if (args.report or "").lower() != "none":
        md, js = write_pair(args.report or REPORTS_DIR / f"unet-opencl-vs-torch-"
                            f"{slug(ocl['device'])}", markdown(result), result)
        print(f"\nwrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
