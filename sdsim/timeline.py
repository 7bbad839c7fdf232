"""Kernel timelines as Chrome / Perfetto trace files (Trace Event Format, JSON object form).

Open the file in https://ui.perfetto.dev or chrome://tracing: it reads like a profiler timeline.
A prediction becomes one process ("predicted on PROFILE") with one track (thread) per component
and a "pipeline" track whose slices are the component calls of the whole run in order (text
encoder, every UNet call, VAE decoder). Each component track holds the dispatches of its first
call, placed where that call starts in the run, each a complete event ("ph": "X") named by module
scope and kernel, with FLOPs, bytes, the variant and the one-line explanation of its predicted
time in `args`. A measured run (`sdsim validate`) adds a second process with the same tracks and
the measured durations, dispatches back to back in plan order, so both read side by side.
Timestamps and durations are in microseconds, as the format requires.
"""

from __future__ import annotations

import json

#: process ids of the two timelines
PREDICTED, MEASURED = 1, 2
#: the track (thread id) of the component calls; each component's dispatches follow it
PIPELINE_TID = 1

_NUM = {"type": "number"}
#: ids from 1: Perfetto files thread id 0 under the process's main thread (two tracks merge)
_ID = {"type": "integer", "minimum": 1}
#: the subset of the Trace Event Format these files use (JSON object form), as a JSON Schema:
#: complete events ("X": name, cat, ts, dur >= 0, pid, tid, args) and metadata events ("M":
#: process_name / thread_name with args.name)
SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "metadata": {"type": "object"},
        "traceEvents": {"type": "array", "items": {"oneOf": [
            {"type": "object", "required": ["name", "cat", "ph", "ts", "dur", "pid", "tid"],
             "properties": {"ph": {"const": "X"}, "name": {"type": "string", "minLength": 1},
                            "cat": {"type": "string"}, "ts": {**_NUM, "minimum": 0},
                            "dur": {**_NUM, "minimum": 0}, "pid": _ID, "tid": _ID,
                            "args": {"type": "object"}}},
            {"type": "object", "required": ["name", "ph", "pid", "args"],
             "properties": {"ph": {"const": "M"},
                            "name": {"enum": ["process_name", "thread_name"]},
                            "pid": _ID, "tid": _ID,
                            "args": {"type": "object", "required": ["name"],
                                     "properties": {"name": {"type": "string"}}}}},
        ]}},
    },
}


def _meta(pid: int, tid: int | None, name: str) -> dict:
    kind, args = ("thread_name", {"name": name}) if tid is not None else \
        ("process_name", {"name": name})
    e = {"name": kind, "ph": "M", "pid": pid, "args": args}
    if tid is not None:
        e["tid"] = tid
    return e


def _slice(pid, tid, name, start_ns: int, dur_ns: int, cat, args=None) -> dict:
    """A complete event from whole nanoseconds, in the format's microseconds, drawn 1 ns short
    of its span (see _process)."""
    return {"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid, "ts": start_ns / 1e3,
            "dur": max(0, dur_ns - 1) / 1e3, "args": args or {}}


def _dispatch_args(call, why: str | None = None) -> dict:
    args = {"identity": call.identity, "variant": f"{call.family}/{call.variant}",
            "kernel": call.kernel, "class": call.kernel_class, "flops": call.flops,
            "dram_bytes": call.dram_bytes, "workspace_bytes": call.workspace}
    if call.launch is not None:
        args.update(global_size=list(call.launch.global_size),
                    local_size=list(call.launch.local_size), steps=call.launch.steps)
    if why:
        args["why"] = why
    return args


def _process(pid: int, label: str, comps: list) -> list[dict]:
    """Events of one timeline; `comps` = [(name, calls, [(KernelCall, seconds, why)])].

    Times are summed in whole nanoseconds and every slice is drawn 1 ns short of the next one:
    Perfetto reads a JSON time as int64(microseconds x 1000), truncating, and drops a complete
    event that overlaps its neighbour by as much as that 1 ns (float sums of microseconds did,
    for 109 dispatches of the S23 Ultra trace). Track ids start at 1: Perfetto's JSON importer
    files tid 0 under the process's main thread, merging it with another track."""
    events = [_meta(pid, None, label), _meta(pid, PIPELINE_TID, "pipeline")]
    ts = 0
    for tid, (name, calls, dispatches) in enumerate(comps, start=PIPELINE_TID + 1):
        events.append(_meta(pid, tid, name))
        ns = [round(s * 1e9) for _, s, _ in dispatches]
        per_call = sum(ns)
        t = ts
        for (call, _, why), d in zip(dispatches, ns):   # the first call's dispatches
            events.append(_slice(pid, tid, f"{call.scope or '<top>'}:{call.kernel}", t, d,
                                 call.kernel_class, _dispatch_args(call, why)))
            t += d
        for i in range(calls):
            label_i = f"{name} {i + 1}/{calls}" if calls > 1 else name
            events.append(_slice(pid, PIPELINE_TID, label_i, ts, per_call, "component",
                                 {"dispatches": len(dispatches)}))
            ts += per_call
    return events


def predicted_events(device: str, components: list) -> list[dict]:
    """The trace events of component predictions (sdsim.cost.predict.ComponentPrediction, e.g.
    a Prediction's `components`) on the profile named `device`."""
    comps = [(c.name, c.calls, [(k.call, k.time.total_s, k.time.why) for k in c.kernels])
             for c in components]
    return _process(PREDICTED, f"predicted on {device}", comps)


def measured_events(label: str, component: str, timings: list) -> list[dict]:
    """The trace events of a measured component call: `timings` = [(KernelCall, seconds)]."""
    return _process(MEASURED, label, [(component, 1, [(c, s, None) for c, s in timings])])


def write(path, events: list[dict], metadata: dict | None = None) -> None:
    """A trace file (JSON object form: traceEvents plus metadata), written atomically."""
    from sdsim import atomic

    obj = {"traceEvents": events, "displayTimeUnit": "ms", "metadata": metadata or {}}
    atomic.write_text(path, json.dumps(obj, separators=(",", ":")))
