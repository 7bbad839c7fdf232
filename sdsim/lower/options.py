"""Which optimization each op family gets: the switches, the named sets, and `--opt` parsing.

Each switch replaces a baseline by the paper's kernel; its values are the `option` the kernel
variant records (sdsim/kernels) declare, so the choices listed here and in `--opt` help are the
records':
- groupnorm: naive (mean, variance, normalize: three dispatches) | fused (one specialised kernel)
- gelu:      standalone (GELU then the gating multiply, two passes) | fused (the UNet's GEGLU
             in one pass; an erf GELU right after a linear that feeds only it, as in an OpenCLIP
             MLP, applied in that GEMM's epilogue; CLIP's quick_gelu never folds)
- attention: naive (QK^T, softmax, .V with the score matrix in DRAM) | partial_softmax |
             flash | paper (the paper's rule: flash where head_dim == flash_head_dim, 40 by
             default, i.e. SD1.4's 320-channel blocks; partially fused softmax elsewhere)
- conv3x3:   direct | im2col | winograd_f2 | winograd_f4 | winograd_f6. Winograd applies to
             3x3 stride-1 convs with at least `winograd_min_channels` input and output channels;
             other convs stay direct. The paper uses F(4x4, 3x3) as its memory/compute trade-off
             for 3x3 convs; it does not say which layers it skipped, so the channel threshold
             (keeping the 3- and 4-channel image/latent convs direct, where the transforms would
             dominate) is sdsim's choice, configurable. 1x1 convs are not governed by this switch:
             they always run as the tiled GEMM (a 1x1 conv is a matrix multiply).

Named sets: `paper` (default) and `none` (all baselines). `--opt` also takes a comma list of
`switch=value` applied on top of `paper`, or on top of a set named first: `none,attention=flash`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sdsim import kernels
from sdsim.errors import SdsimError

#: rule values that are not one record's option: the paper's attention rule picks per layer
RULES = {"attention": ("paper",)}
#: switch order in descriptions and reports
SWITCHES = ("groupnorm", "gelu", "attention", "conv3x3")


def _choices() -> dict[str, tuple[str, ...]]:
    """{switch: values}: the options the kernel records declare, plus the rule values."""
    found = kernels.options()
    if set(found) != set(SWITCHES):
        raise RuntimeError(f"kernel records declare switches {sorted(found)}, the lowering knows "
                           f"{sorted(SWITCHES)}")
    return {s: tuple(dict.fromkeys(v for v, _ in found[s])) + RULES.get(s, ()) for s in SWITCHES}


CHOICES = _choices()


@dataclass(frozen=True)
class Options:
    groupnorm: str = "fused"
    gelu: str = "fused"
    attention: str = "paper"
    conv3x3: str = "winograd_f4"
    flash_head_dim: int = 40
    winograd_min_channels: int = 16

    def describe(self) -> str:
        return ",".join(f"{s}={getattr(self, s)}" for s in SWITCHES)


SETS = {
    "paper": Options(),
    "none": Options(groupnorm="naive", gelu="standalone", attention="naive", conv3x3="direct"),
}


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _names_a_set(item: str) -> bool:
    """Whether an --opt item names a set (paper, none) rather than a switch=value."""
    return "=" not in item


def split_settings(words: list[str]) -> list[str]:
    """Several --opt settings (validate's), each as `parse_opt` takes one, from words or comma
    lists in which each set name starts the next setting: 'paper,none' is 'paper' and 'none';
    'none,groupnorm=fused' stays one."""
    settings: list[list[str]] = []
    for word in words:
        for i, item in enumerate(_items(word)):
            if i == 0 or _names_a_set(item):
                settings.append([item])
            else:
                settings[-1].append(item)
    return [",".join(s) for s in settings] or words


def parse_opt(text: str) -> Options:
    """`paper`, `none`, or a comma list of switch=value (on `paper` unless a set is named first)."""
    items = _items(text)
    if not items:
        raise SdsimError("--opt: empty; expected paper, none, or a list like attention=flash,conv3x3=direct")
    base = SETS["paper"]
    if _names_a_set(items[0]):
        if items[0] not in SETS:
            raise SdsimError(f"--opt: unknown set '{items[0]}'; expected one of {', '.join(SETS)} "
                             "or switch=value items")
        base = SETS[items.pop(0)]
    changes = {}
    for item in items:
        key, _, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if key in ("flash_head_dim", "winograd_min_channels"):
            if not val.isdigit():
                raise SdsimError(f"--opt: {key} takes a positive integer, got '{val}'")
            changes[key] = int(val)
            continue
        if key not in CHOICES:
            raise SdsimError(f"--opt: unknown switch '{key}'; expected one of "
                             f"{', '.join(SWITCHES)}, flash_head_dim, winograd_min_channels")
        if val not in CHOICES[key]:
            raise SdsimError(f"--opt: {key}={val} is not a choice; expected one of "
                             f"{', '.join(CHOICES[key])}")
        changes[key] = val
    return dataclasses.replace(base, **changes)
