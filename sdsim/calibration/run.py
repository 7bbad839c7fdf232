"""Run a whole calibration: device microbenchmarks, then the kernel-class mix; and turn the result
into a device profile (YAML, every number sourced to the calibration report) and that report."""

from __future__ import annotations

import datetime
import platform as _platform
import sys
from dataclasses import dataclass, field

from sdsim.calibration import classes, microbench


@dataclass
class Calibration:
    name: str
    device: str            # "platform / device"
    driver: str
    precision: str         # storage precision of the class mix
    mix: str               # "quick" | "full"
    date: str
    command: str
    device_info: dict
    micro: dict
    samples: list = field(default_factory=list)
    classes: dict = field(default_factory=dict)

    @property
    def launch_s(self) -> float:
        return self.micro["launch"]["event_s"]


def device_info(rt) -> dict:
    import pyopencl as cl

    d = rt.device
    return {"type": cl.device_type.to_string(d.type), "compute_units": int(d.max_compute_units), "clock_mhz": int(d.max_clock_frequency),
            "global_mem": int(d.global_mem_size), "local_mem": int(d.local_mem_size),
            "cache": int(d.global_mem_cache_size), "max_alloc": int(d.max_mem_alloc_size),
            "fp16": rt.has_fp16, "opencl": d.version.strip(), "host": _platform.node()}


def calibrate(rt, name: str, quick: bool = False, precision: str = "fp16", repeat: int = 3,
              command: str = "") -> Calibration:
    """Measure `rt`'s device; `quick` uses the small mix and buffers (CPU devices, tests)."""
    from tqdm import tqdm

    mix = classes.mix("quick" if quick else "full")
    bar = tqdm(total=4 + len(mix), desc=f"calibrate {rt.device.name.strip()}", unit="step",
               file=sys.stderr, disable=None)

    def step(what):
        bar.set_postfix_str(what)
        bar.update(1)

    micro = microbench.measure(rt, quick, step)
    cal = Calibration(
        name=name, device=rt.name, driver=rt.device.driver_version.strip(), precision=precision,
        mix="quick" if quick else "full",
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=command, device_info=device_info(rt), micro=micro)
    peak, bw = micro["rates"][precision], micro["bandwidth"]
    for record, shape in mix:
        step(record.key)
        cal.samples += classes.measure_case(rt, record, shape, precision, peak, bw,
                                            repeat=repeat)
    bar.close()
    cal.classes = classes.efficiencies(cal.samples, cal.launch_s)
    return cal
