"""`sdsim COMMAND --help` explains every option and shows each default worth showing once, never
a Python value (None, False) in its place."""

import re

import pytest

from sdsim.cli import _command_modules, main


@pytest.mark.parametrize("name", [n for n, _ in _command_modules()])
def test_help_has_text_for_every_option_and_no_empty_defaults(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    flat = re.sub(r"\s+", " ", text)
    for leak in ("default: None", "None: the first", "(default: False)"):   # Python's values
        assert leak not in flat, f"{name}: {leak}"
    options = re.findall(r"^  (-[-\w]+)(?:[ ,].*)?$", text, re.M)
    assert options, text
    # every option line has help text after it (same line or an indented next line)
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    for b in blocks[1:]:
        head, *rest = b.split("\n")
        described = len(re.split(r"\s{2,}", head.strip(), maxsplit=1)) > 1 or any(
            r.startswith(" " * 10) and r.strip() for r in rest)
        assert described, f"{name}: option without help: {head}"
        said = re.sub(r"\s+", " ", b).lower()
        # each default shown once: not the formatter's beside the help's own, nor two of either
        assert said.count("default:") <= 1, f"{name}: twice: {b}"
        assert not ("(default:" in said and said.count("default") > 1), f"{name}: twice: {b}"


def test_calibrate_help_states_the_sweep_constants_it_runs_with(capsys):
    """The calibrate help's numbers are the sweep's own: the lead dispatches and the repeats of
    a long case."""
    from sdsim.calibration import sweep

    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    flat = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert f"default {sweep.LEAD}," in flat
    assert f"at most {sweep.LONG_REPEAT} for a case whose warm-up run takes {sweep.LONG_S:g} s" \
        in flat
