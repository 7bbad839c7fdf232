"""`sdsim` command line: one sub-command per module in sdsim/commands/.

Each command module defines HELP (one line), DESCRIPTION (optional), `add_arguments(parser)` and
`run(args) -> int`. Errors the user can fix are raised as SdsimError and printed as one line
(exit status 2); nothing the user typed ends in a bare traceback.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import os
import pkgutil
import sys

from sdsim import __version__, commands
from sdsim.errors import SdsimError

ORDER = ["predict", "ablate", "devices", "info", "generate", "bench", "tune", "calibrate",
         "validate"]


def _command_modules():
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [(n, importlib.import_module(f"sdsim.commands.{n}")) for n in names]


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows an option's default where there is one to show: not on required options,
    flags, options whose default is None, or help texts that already say their default."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (action.required or not action.option_strings or d is None or d is False
                or d is argparse.SUPPRESS or "default" in text.lower()
                or type(d).__repr__ is object.__repr__):     # a sentinel object, not a value
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else d
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def opt_help() -> str:
    """The help of `--opt` for every command that takes it: its syntax, the named sets and
    each switch with its choices, read from sdsim.lower.options (a new variant shows up)."""
    from sdsim.lower.options import CHOICES, SETS, SWITCHES

    def values(o):
        return ", ".join(f"{s}={getattr(o, s)}" for s in SWITCHES)

    switches = "; ".join(f"{s}: {', '.join(CHOICES[s])}" for s in SWITCHES)
    return (f"'paper' (the paper's kernels: {values(SETS['paper'])}), 'none' (the baselines: "
            f"{values(SETS['none'])}), or a comma list of SWITCH=CHOICE applied on top of "
            "paper, or on top of a set named first (none,attention=flash). Switches and their "
            f"choices: {switches}; and flash_head_dim=N (attention=paper runs flash at head "
            f"size N, {SETS['paper'].flash_head_dim} in paper), winograd_min_channels=N "
            f"(Winograd for convs with at least N channels, {SETS['paper'].winograd_min_channels} "
            "in paper)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdsim",
        description=(
            "Simulate Stable Diffusion on mobile GPUs: predict latency and memory from a device "
            "profile (predict, ablate, devices), inspect the model (info), make an image with the "
            "NumPy reference or the OpenCL kernels (generate), and run and time the OpenCL kernels of each optimization (bench, "
            "tune, calibrate, validate)."
        ),
        epilog="Run 'sdsim COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sdsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _command_modules():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        # a command's settings (the kernel tuning it activates) end with it, so one process
        # can run several commands (tests, notebooks) without one leaking into the next
        return int(contextvars.copy_context().run(args._run, args) or 0)
    except SdsimError as e:
        print(f"sdsim {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sdsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader (e.g. `| head`) closed the pipe: stop quietly
        # stdout's pending output would fail again at exit: point it at the null device
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141   # 128 + SIGPIPE, as a shell reports a writer that the pipe ended


if __name__ == "__main__":
    sys.exit(main())
