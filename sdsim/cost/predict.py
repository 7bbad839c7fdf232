"""End-to-end prediction: trace each component, lower it, cost every call, plan its memory.

A text-to-image run is the text encoder once (cond + uncond prompts: batch 2), the UNet once per
scheduler evaluation at the classifier-free-guidance batch 2 (`Scheduler.unet_calls`: PNDM makes
N+1 for N steps), and the VAE decoder once (batch 1). Peak memory of a component is its weights
plus its activations planned with shared buffers (greedy by size) and with one buffer per tensor
(naive); the pipeline's peak assumes all three components stay loaded (their weights add up) and
one component's activations are live at a time.

DRAM traffic per dispatch follows one of the models of sdsim/cost/traffic.py: `tiled` (the
kernel formulas' bytes, every re-read charged), `cached` (re-reads charged only as far as the
profile's cache cannot serve them) or `compulsory` (each op's bytes moved once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdsim.cost import memory
from sdsim.cost.overlap import hide
from sdsim.cost.writeback import charge
from sdsim.cost.profile import Profile
from sdsim.cost.roofline import KernelTime, kernel_time
from sdsim.cost.traffic import DEFAULT as DEFAULT_TRAFFIC
from sdsim.cost.traffic import TRAFFIC, apply, cap_to_compulsory  # noqa: F401 (re-exported)
from sdsim.kernels import BYTES
from sdsim.lower.options import Options
from sdsim.kernels import tuning
from sdsim.lower.plan import KernelCall, lower_graph
from sdsim.model import components


@dataclass
class CostedCall:
    call: KernelCall
    time: KernelTime


@dataclass
class ComponentPrediction:
    name: str
    calls: int                 # how many times the component runs
    kernels: list              # CostedCall per dispatch of one call
    weights_bytes: int
    activations_greedy: int
    activations_naive: int
    oversized: list = field(default_factory=list)   # (identity, bytes) over max_allocation

    @property
    def latency_per_call(self) -> float:
        return sum(k.time.total_s for k in self.kernels)

    @property
    def flops_per_call(self) -> float:
        return sum(k.call.flops for k in self.kernels)

    @property
    def dram_per_call(self) -> float:
        return sum(k.call.dram_bytes for k in self.kernels)

    @property
    def peak_memory(self) -> int:
        return self.weights_bytes + self.activations_greedy

    @property
    def peak_memory_naive(self) -> int:
        return self.weights_bytes + self.activations_naive


@dataclass
class Prediction:
    device: str
    options: Options
    precision: str
    resolution: int
    steps: int
    scheduler: str
    components: list
    traffic: str = DEFAULT_TRAFFIC
    band: tuple | None = None   # (fastest, slowest) total seconds over the profile's bands
    published: list = field(default_factory=list)   # the profile's published end-to-end times
    native_half: bool = False   # the device runs half arithmetic (the fp16 rate for half builds)

    @property
    def total_s(self) -> float:
        return sum(c.latency_per_call * c.calls for c in self.components)

    @property
    def total_s_low(self) -> float:
        return self.band[0] if self.band else self.total_s

    @property
    def total_s_high(self) -> float:
        return self.band[1] if self.band else self.total_s

    @property
    def peak_memory_bytes(self) -> int:
        return (sum(c.weights_bytes for c in self.components)
                + max(c.activations_greedy for c in self.components))


def live_ranges(graph, plan: list[KernelCall], precision: str) -> list[memory.Live]:
    """Activation tensors of a graph with their live ranges (op steps), plus each op's workspace
    (intermediate global buffers between its own dispatches, live during that op only)."""
    end = len(graph.ops)
    first, last = {}, {}
    for t in graph.inputs:
        first[t.id] = 0
    for op in graph.ops:
        first.setdefault(op.output.id, op.index)
        for t in op.inputs:
            last[t.id] = op.index
    for t in graph.outputs:
        last[t.id] = end
    sizes = {tid: t.numel * BYTES.get(t.dtype, 4) for tid, t in graph.tensors.items()}
    out = [memory.Live(tid, sizes[tid], first[tid], last.get(tid, first[tid]))
           for tid in first if tid in sizes]
    ws: dict = {}
    for c in plan:
        ws[c.op_index] = ws.get(c.op_index, 0) + c.workspace
    out += [memory.Live(("ws", i), b, i, i) for i, b in ws.items() if b]
    return out


def predict_component(graph, calls: int, profile: Profile, opt: Options,
                      precision: str, traffic: str = DEFAULT_TRAFFIC) -> ComponentPrediction:
    with tuning.use(tuning.for_profile(profile)):   # the kernel builds this device runs
        plan = apply(graph, lower_graph(graph, opt, precision), traffic, profile.cache,
                     precision)
    costed = [CostedCall(c, t) for c, t in zip(plan, plan_times(plan, profile, precision))]
    lives = live_ranges(graph, plan, precision)
    big = [(c.identity, c.workspace) for c in plan if c.workspace > profile.max_allocation]
    return ComponentPrediction(graph.name, calls, costed, graph.param_bytes,
                               memory.greedy_by_size(lives), memory.naive(lives), big)


def plan_times(plan: list, profile: Profile, precision: str) -> list:
    """KernelTime of each dispatch of a component's plan, in order: the geometry model of each,
    the first dispatch of each op less what the dispatch before it hides
    (sdsim/cost/overlap.py) and plus the write-back of the dirty lines it left
    (sdsim/cost/writeback.py)."""
    starts = [i == 0 or c.op_index != plan[i - 1].op_index for i, c in enumerate(plan)]
    hidden = hide([kernel_time(c, profile, precision) for c in plan],
                  profile.overlap_for(precision), starts)
    return charge(hidden, [c.bytes_written for c in plan], profile.writeback_for(precision),
                  starts)


def trace(model: str, resolution: int, precision: str) -> dict:
    """The traced graphs of one text-to-image run (guidance batch 2)."""
    from sdsim.backends.trace import trace_pipeline
    from sdsim.model.presets import load_model_config

    return trace_pipeline(load_model_config(model), resolution=resolution, batch=2,
                          precision=precision)


def unet_calls(scheduler: str, steps: int) -> int:
    from sdsim.model.schedulers import make_scheduler

    return make_scheduler(scheduler).unet_calls(steps)


def predict(profile: Profile, opt: Options, steps: int = 20, scheduler: str = "pndm",
            resolution: int = 512, precision: str = "fp16", model: str = "sd14",
            graphs: dict | None = None, traffic: str = DEFAULT_TRAFFIC) -> Prediction:
    """Latency, traffic and memory of a text-to-image run on `profile` (graphs: reuse a trace)."""
    graphs = graphs or trace(model, resolution, precision)
    loop_calls = unet_calls(scheduler, steps)
    calls = {n: loop_calls if components.COMPONENTS[n].in_loop else 1
             for n in components.TEXT_TO_IMAGE}
    comps = [predict_component(graphs[n], k, profile, opt, precision, traffic)
             for n, k in calls.items()]
    return Prediction(profile.name, opt, precision, resolution, steps, scheduler, comps, traffic,
                      band(comps, profile, precision), profile.published, profile.native_half)


def band(comps: list, profile: Profile, precision: str) -> tuple | None:
    """(fastest, slowest) total seconds of component predictions over the profile's bands; None
    when its sources agree. The two corner profiles are not always ordered (wave quantization),
    so the range also spans the nominal total."""
    if not profile.bands:
        return None
    totals = [sum(c.latency_per_call * c.calls for c in comps)]
    totals += [sum(t.total_s * c.calls for c in comps
                   for t in plan_times([k.call for k in c.kernels], corner, precision))
               for corner in (profile.corner(fast=True), profile.corner(fast=False))]
    return min(totals), max(totals)
