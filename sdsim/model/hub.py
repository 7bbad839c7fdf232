"""Models already in the Hugging Face cache, found by repo id (never downloaded).

`huggingface-cli download CompVis/stable-diffusion-v1-4` (or diffusers' from_pretrained) stores a
repo as `<cache>/models--CompVis--stable-diffusion-v1-4/` with `refs/main` (the commit of the
branch), `snapshots/<commit>/` (the repo's files, as symlinks into `blobs/`) and `blobs/`. The
cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
`~/.cache/huggingface/hub`, as huggingface_hub decides. Symlinked files load like plain ones.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sdsim.errors import SdsimError

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def hub_cache() -> Path:
    """The Hugging Face hub cache folder the environment names (it need not exist)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _snapshot(repo: Path) -> Path | None:
    """The snapshot `refs/main` names when it is there, else the most recently written one."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        chosen = snapshots / ref.read_text().strip()
        if chosen.is_dir():
            return chosen
    found = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def resolve_model(name_or_path) -> Path:
    """An existing file or folder as it is; a repo id (`owner/name`) as its cached snapshot folder.

    Raises SdsimError, naming where it looked and how to download, when it is neither.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if not _REPO_ID.fullmatch(name):
        raise SdsimError(f"{name}: no such file or folder (nor a Hugging Face repo id, owner/name)")
    repo = hub_cache() / ("models--" + name.replace("/", "--"))
    snapshot = _snapshot(repo)
    if snapshot is None:
        raise SdsimError(f"{name}: neither a folder nor in the Hugging Face cache (looked for "
                         f"{path.resolve()} and {repo}/snapshots/); download it with "
                         f"`huggingface-cli download {name}` (sdsim never downloads), or give "
                         "the path of a diffusers folder or a .safetensors checkpoint")
    return snapshot
