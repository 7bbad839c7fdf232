"""Tile configurations of the GEMM kernel (opencl/gemm.cl), chosen per device and per call.

A `GemmConfig` is one build of the kernel: output tile TM x TN per work-group of RTN x RTM
work-items, K step TK, vector width VW, and whether tiles are staged in local memory (GPUs) or
read straight from global memory by a SIMD micro-kernel (CPUs). Which config a call uses depends
on the device and on the call's shape class (`gemm_class`: whether C is narrow, else how many 64 x 64
blocks of C the call has, so a 2-row timestep projection, a Winograd GEMM over the 8 tiles of an
8x8 latent and a 4096-row feed-forward can use different tiles).

A `Tuning` maps each shape class to a config. `sdsim tune` measures one per device and stores it
in the device profile (`tuning:`); a device without one gets `DEFAULTS[device type]`. The active
tuning is a context variable set by whoever knows the device (`use`): the cost formulas (launch
geometry) and the launchers both read `current()`, so a plan's geometry is what runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass, replace
from math import ceil

from sdsim.errors import SdsimError

#: shape classes: "narrow" (C has at most NARROW rows or columns), else by the number of 64 x 64
#: blocks of C (batch included), with these upper bounds
NARROW = 32
CLASSES = (("small", 128), ("medium", 1024), ("large", None))
CLASS_NAMES = ("narrow",) + tuple(c for c, _ in CLASSES)
DEVICE_TYPES = ("gpu", "cpu")


@dataclass(frozen=True)
class GemmConfig:
    """One build of the GEMM kernel; `name` (e.g. "l128x128x16-16x16-v4") is its timing-model key
    suffix and its spelling in profiles."""

    tm: int
    tn: int
    tk: int
    rtm: int
    rtn: int
    vw: int
    local: bool = True

    @property
    def name(self) -> str:
        return (f"{'l' if self.local else 'r'}{self.tm}x{self.tn}x{self.tk}"
                f"-{self.rtm}x{self.rtn}-v{self.vw}")

    @property
    def defines(self) -> dict:
        return {"TM": self.tm, "TN": self.tn, "TK": self.tk, "RTM": self.rtm, "RTN": self.rtn,
                "VW": self.vw, "LOCAL": int(self.local)}

    @property
    def outputs_per_item(self) -> int:
        return (self.tm // self.rtm) * (self.tn // self.rtn)

    def problems(self) -> list[str]:
        """What makes this config unbuildable (empty when it is valid)."""
        out = []
        if self.tm % self.rtm or self.tn % self.rtn:
            out.append("the tile must be a multiple of the work-group")
        if self.local:
            threads = self.rtm * self.rtn
            if self.vw not in (1, 2, 4):
                out.append("local-memory tiles are read 1, 2 or 4 wide")
            if self.tm % (self.rtm * self.vw) or self.tn % (self.rtn * self.vw):
                out.append("each work-item's rows and columns come in VW-wide vectors")
            if (self.tm * self.tk) % threads or (self.tn * self.tk) % threads:
                out.append("the work-group must load the staged tiles in whole rounds")
        else:
            if self.vw not in (4, 8) or (self.tn // self.rtn) % self.vw:
                out.append("the direct micro-kernel holds 4- or 8-wide vectors (TN / RTN a "
                           "multiple of VW)")
            if self.tk != 1:
                out.append("the direct micro-kernel walks K one element at a time (TK = 1)")
        return out

    @classmethod
    def parse(cls, text: str, where: str = "") -> "GemmConfig":
        """The config spelled `text` (its `name`)."""
        m = re.fullmatch(r"([lr])(\d+)x(\d+)x(\d+)-(\d+)x(\d+)-v(\d+)", str(text))
        if not m:
            raise SdsimError(f"{where}gemm config '{text}' is not of the form "
                             "l<TM>x<TN>x<TK>-<RTM>x<RTN>-v<VW> (local memory) or r... (direct)")
        cfg = cls(*map(int, m.groups()[1:]), local=m.group(1) == "l")
        if cfg.problems():
            raise SdsimError(f"{where}gemm config '{text}': {'; '.join(cfg.problems())}")
        return cfg


def gemm_class(batch: int, m: int, n: int) -> str:
    """The shape class of a GEMM call: narrow, or how many 64 x 64 blocks of C it has."""
    if min(m, n) <= NARROW:
        return "narrow"
    blocks = batch * ceil(m / 64) * ceil(n / 64)
    for name, bound in CLASSES:
        if bound is None or blocks < bound:
            return name
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Tuning:
    """Per-device kernel choices: a GEMM config per shape class, and where they came from."""

    device_type: str
    gemm: dict            # class name -> GemmConfig
    source: str           # the tuning report, or "defaults for <type> devices"
    flash_rows: int = 32  # query rows per FlashAttention work-group (GPU: a work-item each)
    flash_unroll: bool = False   # FlashAttention key tiles fully unrolled (GPUs) or looped
    split_groups: int = 0        # split K of GEMM calls with fewer work-groups (0: never)
    wino_group: tuple = (8, 8)   # Winograd transform work-group: tiles along a row x rows

    @property
    def launches(self) -> dict:
        """The choices besides the GEMM builds that shape launches (and so the geometry a
        calibration's coefficients were fitted on), as the profile spells them."""
        return {"flash_rows": self.flash_rows, "flash_unroll": self.flash_unroll,
                "split_groups": self.split_groups, "wino_group": group_name(self.wino_group)}

    def gemm_config(self, batch: int, m: int, n: int) -> GemmConfig:
        return self.gemm[gemm_class(batch, m, n)]

    def gemm_split(self, batch: int, m: int, k: int, n: int, cfg: GemmConfig) -> int:
        """How many K slices a call runs as (1: not split). A call with fewer than
        `split_groups` work-groups is split into as many slices as keep it within that many
        (no partial extra wave), each of at least SPLIT_MIN_STEPS k-steps."""
        groups = batch * ceil(m / cfg.tm) * ceil(n / cfg.tn)
        steps = ceil(k / cfg.tk)
        s = min(self.split_groups // groups, steps // SPLIT_MIN_STEPS)
        return 1 if s < 2 else ceil(steps / ceil(steps / s))   # slices of equal k-step counts

    def to_yaml(self, report: str) -> dict:
        return {"report": report, "device_type": self.device_type,
                "gemm": {c: self.gemm[c].name for c in CLASS_NAMES},
                **self.launches}


#: fewest k-steps a split-K slice walks (shorter slices spend more on partial sums than they save)
SPLIT_MIN_STEPS = 8
#: a GPU's split-K target: this many work-groups per compute unit
SPLIT_GROUPS_PER_CU = 2


def split_groups(device_type: str, compute_units: int) -> int:
    """The split-K target of a device: GPUs want SPLIT_GROUPS_PER_CU work-groups per compute
    unit; CPUs (a few cores, each walking whole tiles) never split."""
    return SPLIT_GROUPS_PER_CU * int(compute_units) if device_type == "gpu" else 0


_GPU_BIG = GemmConfig(128, 128, 16, 16, 16, 4)
_GPU_MID = GemmConfig(64, 64, 16, 16, 16, 4)
_GPU_SMALL = GemmConfig(32, 32, 16, 8, 8, 4)
_CPU = GemmConfig(6, 16, 1, 1, 1, 8, local=False)

#: what an untuned device gets: the largest tile its classes can fill
DEFAULTS = {
    "gpu": Tuning("gpu", {"narrow": _GPU_SMALL, "small": _GPU_SMALL, "medium": _GPU_MID,
                          "large": _GPU_BIG}, "defaults for gpu devices", 64, True),
    "cpu": Tuning("cpu", {c: _CPU for c in CLASS_NAMES}, "defaults for cpu devices", 32, False),
}

#: the configs `sdsim tune` tries, per device type
CANDIDATES = {
    "gpu": [GemmConfig(*c) for c in (
        (128, 128, 16, 16, 16, 4), (128, 128, 8, 16, 16, 4), (128, 64, 16, 16, 16, 4),
        (64, 128, 16, 16, 16, 4), (64, 64, 16, 16, 16, 4), (64, 64, 16, 16, 16, 1),
        (64, 64, 32, 8, 8, 4), (32, 32, 16, 8, 8, 4), (32, 64, 16, 8, 16, 2),
        (64, 16, 16, 16, 4, 1), (16, 64, 16, 4, 16, 1), (128, 128, 32, 16, 16, 4),
        (128, 64, 16, 16, 8, 4), (64, 128, 16, 8, 16, 4), (16, 128, 16, 4, 32, 4),
        (8, 128, 16, 2, 32, 4))],
    "cpu": [GemmConfig(*c, local=False) for c in (
        (8, 8, 1, 1, 1, 8), (12, 8, 1, 1, 1, 8), (6, 16, 1, 1, 1, 8), (4, 16, 1, 1, 1, 8),
        (4, 32, 1, 1, 1, 8), (6, 32, 1, 1, 2, 8), (8, 16, 1, 1, 1, 8), (12, 16, 1, 2, 1, 8),
        (8, 32, 1, 2, 4, 8))],
}
#: Winograd transform work-groups (tiles along a row, rows of tiles) `sdsim tune` tries: on a
#: GPU a warp of an 8 x 8 group writes each transformed plane in runs of 8 values, of a 32 x 2 one
#: in runs of 32 (reports/winograd-transform-groups-*.md); the first is the untuned default
WINO_GROUPS = {"gpu": [(8, 8), (16, 4), (32, 2), (64, 1), (32, 4), (128, 1)],
               "cpu": [(8, 8), (16, 4), (32, 2), (64, 1)]}
#: FlashAttention (work-group size, key tile unrolled) pairs `sdsim tune` tries, per device type
FLASH = {"gpu": [(r, u) for r in (32, 64, 128) for u in (True, False)],
         "cpu": [(r, False) for r in (8, 16, 32, 64)]}

_current: contextvars.ContextVar[Tuning | None] = contextvars.ContextVar("sdsim_tuning",
                                                                          default=None)


def current() -> Tuning:
    """The active tuning (the GPU defaults when nobody set one)."""
    return _current.get() or DEFAULTS["gpu"]


@contextlib.contextmanager
def use(tuning: Tuning):
    """Make `tuning` the active one inside the block."""
    token = _current.set(tuning)
    try:
        yield tuning
    finally:
        _current.reset(token)


def activate(tuning: Tuning) -> None:
    """Make `tuning` the active one from now on (a command that runs one device)."""
    _current.set(tuning)


def activate_default(tuning: Tuning) -> None:
    """Make `tuning` the active one unless one already is (a runtime's device-type defaults)."""
    if _current.get() is None:
        _current.set(tuning)


def parse(data: dict, where: str) -> Tuning:
    """The `tuning:` section of a profile."""
    gemm = data.get("gemm") or {}
    missing = [c for c in CLASS_NAMES if c not in gemm]
    if missing:
        raise SdsimError(f"{where}: tuning.gemm lacks the classes {', '.join(missing)}")
    rows = data.get("flash_rows", 32)
    if rows not in (8, 16, 32, 64, 128, 256):
        raise SdsimError(f"{where}: tuning.flash_rows: {rows!r} is not a power of two in 8..256")
    split = data.get("split_groups", 0)
    if not isinstance(split, int) or isinstance(split, bool) or split < 0:
        raise SdsimError(f"{where}: tuning.split_groups: {split!r} is not a work-group count "
                         "(0: never split K)")
    return Tuning(data.get("device_type", "gpu"),
                  {c: GemmConfig.parse(gemm[c], f"{where}: tuning.gemm.{c}: ")
                   for c in CLASS_NAMES}, data.get("report", where), rows,
                  bool(data.get("flash_unroll", False)), split,
                  parse_group(data.get("wino_group", "8x8"), f"{where}: tuning.wino_group"))


def group_name(group) -> str:
    """A 2-D work-group as profiles spell it: "16x4"."""
    return f"{group[0]}x{group[1]}"


def parse_group(text, where: str) -> tuple:
    """The work-group spelled `text` ("16x4": 16 along a row, 4 rows; 1 to 1024 work-items)."""
    m = re.fullmatch(r"(\d+)x(\d+)", str(text))
    if not m or not 1 <= int(m[1]) * int(m[2]) <= 1024 or "0" in (m[1][0], m[2][0]):
        raise SdsimError(f"{where}: {text!r} is not a work-group of the form <along a row>x<rows> "
                         "with 1 to 1024 work-items (e.g. 16x4)")
    return int(m[1]), int(m[2])


def for_profile(profile) -> Tuning:
    """The profile's tuned choices, or the defaults for its device type (splitting K by its
    compute units)."""
    if profile.tuning:
        return parse(profile.tuning, profile.path)
    return for_device(profile.device_type, profile.geometry["compute_units"])


def for_device(device_type: str, compute_units: int) -> Tuning:
    """The untuned defaults of a device of `device_type` with `compute_units`."""
    return replace(DEFAULTS[device_type],
                   split_groups=split_groups(device_type, compute_units))


def activate_profile(name_or_path: str) -> Tuning:
    """Load a device profile and make its kernel builds the active ones (`--tuning PROFILE`)."""
    from sdsim.cost.profile import load_profile

    t = for_profile(load_profile(name_or_path))
    activate(t)
    return t


def device_type(cl_device) -> str:
    """'cpu' for an OpenCL CPU device, 'gpu' for everything else."""
    import pyopencl as cl

    return "cpu" if cl_device.type & cl.device_type.CPU else "gpu"
