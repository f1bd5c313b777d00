"""A screenshot of the page of `ner serve` for the README: the first lines of a text file, tagged and highlighted.

Starts ``ner serve RUN_DIR --port 0`` (loopback), opens ``/?text=...`` in Debian's headless chromium (the page
fills its text box from the address and tags it) and saves the picture.

    .venv/bin/python bench/serve_screenshot.py RUN_DIR [--out docs/serve.png] [--lines 6] \\
        [--text data/sample/raw.txt] [--size 1100,640]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from serve_load import served

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=str(REPO / "docs" / "serve.png"))
    parser.add_argument("--text", default=str(REPO / "data" / "sample" / "raw.txt"))
    parser.add_argument("--lines", type=int, default=6)
    parser.add_argument("--size", default="1100,640", help="window width,height in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    text = "\n".join(Path(args.text).read_text(encoding="utf-8").splitlines()[: args.lines])
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    with served(args.run_dir, "--threads", "1") as url, tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                f"--window-size={args.size}",
                f"--screenshot={out}",
                f"{url}/?text={urllib.parse.quote(text)}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(
        f"screenshot of {url}/?text=... ({args.lines} lines of {args.text}) saved to {out}, {out.stat().st_size} bytes"
    )
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "lines": args.lines}))


if __name__ == "__main__":
    main()
