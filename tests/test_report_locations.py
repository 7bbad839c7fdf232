"""Reports land where --report says, else next to the user's own profile or stored run, else in
the current folder: `validate` and `tune` never write into the installed package or over a source
checkout's committed reports/ and bundled profiles unless asked."""

import json
import shutil

import pytest
import yaml

from conftest import KERNEL_PLATFORM

from sdsim.cli import main
from sdsim.paths import PROFILES_DIR, ROOT

STORED = ROOT / "reports/validation-pocl-cpu-text_encoder-77.json"
TINY = ["--model", "tiny", "--resolution", "32", "--precision", "fp32", "--warmup", "0",
        "--repeat", "1", "--format", "json"]


def _snapshot() -> dict:
    """Size and modification time of every file of the checkout's reports/ and profiles."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns)
            for d in (ROOT / "reports", PROFILES_DIR) for p in d.rglob("*") if p.is_file()}


def _platform() -> list:
    return ["--platform", KERNEL_PLATFORM] if KERNEL_PLATFORM else []


def test_replay_of_a_committed_run_writes_into_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _snapshot()
    assert main(["validate", "--replay", str(STORED), "--repredict"]) == 0
    stem = STORED.stem
    assert f"wrote {stem}.md" in capsys.readouterr().out
    names = {p.name for p in tmp_path.iterdir()}
    assert {f"{stem}.md", f"{stem}.json"} <= names <= {f"{stem}.md", f"{stem}.json",
                                                        f"{stem}.png"}
    assert _snapshot() == before


def test_replay_of_a_users_run_renders_beside_it(tmp_path, monkeypatch):
    mine = tmp_path / "runs" / "v.json"
    mine.parent.mkdir()
    shutil.copy(STORED, mine)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["validate", "--replay", str(mine)]) == 0
    assert (mine.parent / "v.md").is_file() and not list((tmp_path / "cwd").iterdir())


@pytest.mark.opencl
def test_validate_reports_next_to_a_user_profile_else_in_the_current_folder(
        tmp_path, monkeypatch, capsys):
    prof = tmp_path / "profiles" / "mine.yaml"
    prof.parent.mkdir()
    shutil.copy(PROFILES_DIR / "pixel7.yaml", prof)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _snapshot()
    for device, where in ((str(prof), prof.parent), ("pixel7", cwd)):
        assert main(["validate", "--device", device, *_platform(), *TINY]) == 0
        report = json.loads(capsys.readouterr().out)["report"]
        want = where / "validation-pixel7.md"   # named by the profile's name
        assert want.is_file() and (cwd / report).resolve() == want.resolve()
    assert _snapshot() == before


@pytest.mark.opencl
def test_tune_of_a_bundled_profile_writes_a_user_copy(tmp_path, monkeypatch, capsys):
    """`tune --device pocl-cpu-spec` leaves the bundled profile alone and writes no report into
    reports/: the tuned copy goes to the user profile folder, with its report beside it, and the
    name finds the copy from then on. (A bundled profile from specifications: the calibrated
    `pocl-cpu` describes another device than this machine's PoCL may be, and tune refuses
    that.)"""
    from sdsim.cost.profile import load_profile

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))   # platformdirs' user folder
    monkeypatch.delenv("SDSIM_PROFILE_PATH", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _snapshot()
    assert main(["tune", "--device", "pocl-cpu-spec", *_platform(), "--quick", "--repeat",
                 "1"]) == 0
    assert _snapshot() == before and not list(cwd.iterdir())
    copy = tmp_path / "data" / "sdsim" / "profiles" / "pocl-cpu-spec.yaml"
    report = copy.parent / "tuning-pocl-cpu-spec.md"
    assert report.is_file() and yaml.safe_load(copy.read_text())["tuning"]["report"] == str(report)
    assert load_profile("pocl-cpu-spec").path == str(copy)
    assert f"wrote the choice into {copy} and {report}" in capsys.readouterr().out
