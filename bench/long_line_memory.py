"""Peak memory of `ner tag` on one long line without a sentence break (issue 16: bounded memory on any line).

Each measurement tags a file holding a single line of ``SIZE`` MB (news-like words, no sentence end, ending in a
newline) with ``ner tag RUN_DIR FILE -o OUT`` in a fresh process of one thread, and reads that process's peak
resident memory (``ru_maxrss`` from ``wait4``). A one-line file of a few words gives the fixed cost of Python,
torch and the model; ``bytes/input byte`` is the peak above that baseline per byte of the line. Bounded memory
means the peak does not grow with the line: the 1 MB and 16 MB figures agree. Memory does not depend on the
machine's load, so the script may run beside other work (niced); the seconds do.

    nice -n 5 .venv/bin/python bench/long_line_memory.py RUN_DIR [--sizes 1,16]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "Maren Quist scored twice for Versk United against the Brisbane Lions in Oslo on Saturday , "
    "said Reuters correspondent John Smith of the European Union "
)


def write_line(path: Path, size: int) -> None:
    """One line of ``size`` bytes (then a newline), words repeated, no sentence break."""
    unit = WORDS.encode("utf-8")
    with path.open("wb") as out:
        for _ in range(size // len(unit)):
            out.write(unit)
        out.write(unit[: size % len(unit)].replace(b" ", b"x") + b"\n")


def peak_rss_mb(run_dir: str, source: Path, output: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``ner tag RUN_DIR SOURCE -o OUTPUT`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-c",
        "import sys, torch; torch.set_num_threads(1); from ner.cli import main; sys.exit(main(sys.argv[1:]))",
        "tag",
        run_dir,
        str(source),
        "-o",
        str(output),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ner tag failed on {source} (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained run directory (e.g. runs/sample)")
    parser.add_argument("--sizes", default="1,16", help="line sizes in MB, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    results = []
    with tempfile.TemporaryDirectory() as folder:
        short = Path(folder) / "short.txt"
        short.write_text("Maren Quist scored twice.\n", encoding="utf-8")
        baseline, _ = peak_rss_mb(args.run_dir, short, Path(folder) / "short.jsonl")
        print(f"baseline (one short line): peak RSS {baseline:.0f} MB")
        for size_mb in [float(part) for part in args.sizes.split(",")]:
            size = int(size_mb * 2**20)
            source = Path(folder) / f"line-{size_mb:g}mb.txt"
            write_line(source, size)
            peak, seconds = peak_rss_mb(args.run_dir, source, Path(folder) / "out.jsonl")
            per_byte = (peak - baseline) * 2**20 / size
            print(
                f"{size_mb:g} MB line: peak RSS {peak:.0f} MB ({peak - baseline:+.0f} MB over the baseline, "
                f"{per_byte:.1f} bytes per input byte), {seconds:.0f} s"
            )
            results.append(
                {
                    "line_mb": size_mb,
                    "peak_rss_mb": round(peak),
                    "over_baseline_mb": round(peak - baseline),
                    "bytes_per_input_byte": round(per_byte, 1),
                    "seconds": round(seconds, 1),
                }
            )
            source.unlink()
    print(json.dumps({"baseline_rss_mb": round(baseline), "lines": results}))


if __name__ == "__main__":
    main()
