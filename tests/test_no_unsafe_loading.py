"""Nothing in the package may run code from a file it reads: no unpickling (pickle, torch.load,
np.load(allow_pickle=True), pandas.read_pickle, ...), no eval/exec, no yaml.load without the safe
loader. An AST scan of sdsim/ enforces it; the scanner itself is checked on known-bad snippets.
ruff's flake8-bandit rules (S) for the same calls also run where ruff is installed."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

import sdsim

PACKAGE = Path(sdsim.__file__).resolve().parent

#: modules whose loaders unpickle or run code (any use is refused)
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal",
                  "joblib"}
#: dotted call names that load pickles or run code
UNSAFE_CALLS = {"torch.load", "torch.jit.load", "pandas.read_pickle", "pd.read_pickle",
                "numpy.lib.format.read_array", "yaml.unsafe_load", "yaml.full_load",
                "yaml.unsafe_load_all", "yaml.full_load_all"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_uses(source: str, filename: str = "<string>") -> list[str]:
    """`file:line: what` for every unsafe import or call in `source`."""
    found = []
    aliases = {}  # local name -> module (import numpy as np, from yaml import load, ...)
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{filename}:{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        where = f"{filename}:{node.lineno}"
        if full in UNSAFE_BUILTINS and head not in aliases:
            found.append(f"{where}: {full}()")
        elif full in UNSAFE_CALLS or full.split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: {full}()")
        elif full in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] not in SAFE_YAML_LOADERS:
                found.append(f"{where}: {full}() without a safe Loader")
        elif full in ("numpy.load", "np.load"):
            flag = _kw(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}: {full}(allow_pickle=...)")
    return found


def test_package_has_no_unsafe_loading():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the scan really walks the package
    found = [u for f in files for u in unsafe_uses(f.read_text(), str(f.relative_to(PACKAGE.parent)))]
    assert not found, "unsafe loading in the package:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.loads(b'')",
    "from pickle import load\nload(f)",
    "import torch\ntorch.load('x.ckpt')",
    "import torch as t\nt.load('x.ckpt', weights_only=True)",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('x.npy', allow_pickle=flag)",
    "import yaml\nyaml.load(s)",
    "import yaml\nyaml.load(s, Loader=yaml.Loader)",
    "import yaml\nyaml.load(s, yaml.FullLoader)",
    "import yaml\nyaml.unsafe_load(s)",
    "from yaml import load\nload(s)",
    "eval('1')",
    "exec(code)",
    "import pandas as pd\npd.read_pickle('x')",
    "import marshal\nmarshal.loads(b'')",
])
def test_scanner_flags_unsafe_snippets(snippet):
    assert unsafe_uses(snippet)


@pytest.mark.parametrize("snippet", [
    "import yaml\nyaml.safe_load(s)",
    "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(s, Loader=yaml.CSafeLoader)",
    "import numpy as np\nnp.load('x.npy')",
    "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
    "from safetensors.numpy import load_file\nload_file('x.safetensors')",
    "import json\njson.loads(s)",
    "model.eval()",
])
def test_scanner_passes_safe_snippets(snippet):
    assert unsafe_uses(snippet) == []


def test_ruff_security_rules():
    """ruff's bandit rules for pickle (S301, S403), marshal (S302), eval (S307), exec (S102) and
    unsafe YAML (S506), where ruff is installed (it has no stable rule for torch.load)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    r = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select",
                        "S102,S301,S302,S307,S403,S506", str(PACKAGE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
