"""Printing results: tables by default, JSON / CSV / Markdown for scripts and reports."""

from __future__ import annotations

import csv
import io
import json

from tabulate import tabulate

FORMATS = ("table", "json", "csv", "markdown")


def render_rows(rows: list[dict], fmt: str, floatfmt: str = ".4g") -> str:
    """Render a list of flat dicts (one per row, same keys) in the chosen format."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=_jsonable)
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    tablefmt = "github" if fmt == "markdown" else "simple"
    return tabulate(rows, headers="keys", tablefmt=tablefmt, floatfmt=_floatfmts(rows, floatfmt),
                    intfmt=",")


def _floatfmts(rows: list[dict], default: str) -> list[str]:
    """Per column: `default`, or grouped digits with one decimal where the column reaches
    10,000 (so a table reads 21,710.4 GFLOP where `default` would print 2.171e+04)."""
    keys = list(rows[0]) if rows else []
    out = []
    for k in keys:
        big = [v for r in rows if isinstance(v := r.get(k), float) and abs(v) >= 1e4]
        out.append(",.1f" if big else default)
    return out


def in_units(rows: list[dict], units: dict) -> list[dict]:
    """Rows with fields renamed and scaled, e.g. SI fields into the units a table reads best
    (JSON keeps SI): `units` maps a key to (new key, factor); other fields pass through, None
    stays None."""
    def conv(k, v):
        if k not in units:
            return k, v
        name, factor = units[k]
        return name, None if v is None else v * factor
    return [dict(conv(k, v) for k, v in r.items()) for r in rows]


def dumps(obj) -> str:
    """JSON for any result object (NumPy scalars included)."""
    return json.dumps(obj, indent=2, default=_jsonable)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__dict__"):
        return o.__dict__
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def write_pair(stem, markdown_text: str, data) -> tuple:
    """A report as STEM.md and its data as STEM.json (a .md or .json suffix on `stem` is
    dropped), each written atomically; returns the two paths."""
    from pathlib import Path

    from sdsim import atomic

    stem = Path(stem)
    if stem.suffix in (".md", ".json"):
        stem = stem.with_suffix("")
    md, js = Path(f"{stem}.md"), Path(f"{stem}.json")
    atomic.write_text(md, markdown_text.rstrip("\n") + "\n")
    atomic.write_text(js, dumps(data) + "\n")
    return md, js
