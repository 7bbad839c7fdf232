"""A regular (non-editable) install works away from the source tree: the wheel, installed by pip
into a fresh venv, carries the kernel sources, bundled profiles and JSON Schemas, and its `sdsim`
console script runs predict, devices and bench from another folder."""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a wheel is built from (a copy, so the build leaves nothing in the checkout)
SOURCES = ("sdsim", "opencl", "device_profiles", "pyproject.toml", "setup.py", "MANIFEST.in",
           "README.md")
#: no PYTHONPATH: the venv's interpreter must find sdsim in its own site-packages
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel pip-installed offline (--no-deps --no-index), and the wheel's
    file list. The dependencies come from the test interpreter's site-packages through a .pth
    line (appended after the venv's own, and their .pth files unread, so an editable sdsim there
    stays out); --system-site-packages would give the base interpreter's, not a CI venv's."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(p, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True)
    wheel = next((tmp / "dist").glob("sdsim-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "_deps.pth").write_text("\n".join(site.getsitepackages()))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=ENV)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    return venv, names


def _sdsim(venv, *args, cwd):
    return subprocess.run([str(venv / "bin" / "sdsim"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_wheel_carries_kernels_and_profiles(installed):
    _, names = installed
    cl = {Path(n).name for n in names if n.startswith("sdsim/_data/opencl/")}
    profiles = {Path(n).stem for n in names if n.startswith("sdsim/_data/device_profiles/")}
    assert cl == {p.name for p in (ROOT / "opencl").glob("*.cl")}
    assert {p.stem for p in (ROOT / "device_profiles").glob("*.yaml")} <= profiles
    schemas = {Path(n).name for n in names if n.startswith("sdsim/schemas/")}
    assert {p.name for p in (ROOT / "sdsim" / "schemas").glob("*.schema.json")} <= schemas


def test_installed_sdsim_runs_from_another_folder(installed, tmp_path):
    venv, _ = installed
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import sdsim, sdsim.paths as p; print(sdsim.__file__); "
                            "print(p.OPENCL_DIR)"], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, check=True)
    module, opencl = map(Path, probe.stdout.split())
    assert venv in module.parents and ROOT not in module.parents   # the installed copy
    assert opencl == module.parent / "_data" / "opencl"
    r = _sdsim(venv, "devices", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {d["name"] for d in json.loads(r.stdout)["devices"]}
    assert {p.stem for p in (ROOT / "device_profiles").glob("*.yaml")} <= names
    r = _sdsim(venv, "predict", "--device", "s23ultra", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["device"] == "s23ultra" and obj["total_s"] > 1
    check = ("import json, sys, sdsim.schemas as s; s.validate('predict', json.load(sys.stdin)); "
             "print(s.path('predict'))")   # the installed package's schema, not the checkout's
    probe = subprocess.run([python, "-c", check], input=r.stdout, cwd=tmp_path, env=ENV,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == module.parent / "schemas" / "predict.schema.json"
    r = _sdsim(venv, "bench", "--quick", "--family", "gelu", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert rows and all(row["ok"] for row in rows)
