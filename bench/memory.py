"""Where a run's memory goes (issue 17, item 1): import costs, the phases of training, and any command's peak.

Three modes, each printing its figures, the command, and a last JSON line:

    python bench/memory.py imports
        resident memory after each import of the training path, after creating our SGD optimizer, and then
        torch's (which imports torch._dynamo and sympy: why ner.optim exists)
    python bench/memory.py phases CONFIG [key=value ...]
        ``ner train`` with the resident and peak memory (VmRSS, VmHWM) and glibc's malloc figures logged before
        and after each phase: reading, building, encoding, every 100th step, dev scoring, final scoring
    python bench/memory.py peak -- COMMAND ...
        the peak resident memory of COMMAND in a fresh process (``ru_maxrss`` from ``wait4``, the figure
        ``/usr/bin/time -v`` prints), e.g. ``-- .venv/bin/ner evaluate runs/x data/conll2003/test.txt``

Linux only (``/proc/self/status``). Memory does not depend on the machine's load, so these may run beside other
work (niced); seconds do. Run with one thread (``training.threads=1``, ``OMP_NUM_THREADS=1``) to compare figures.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def status() -> dict[str, float]:
    """VmRSS and VmHWM (the peak so far) of this process, in MB."""
    with open("/proc/self/status", encoding="ascii") as lines:
        return {
            line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines if line.startswith(("VmRSS:", "VmHWM:"))
        }


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_mb() -> tuple[float, float]:
    """(in use, free inside the heap) of glibc's malloc, in MB; (0, 0) elsewhere."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return 0.0, 0.0
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def imports() -> dict[str, Any]:
    stages: dict[str, float] = {"python": status()["VmRSS"]}
    for name in ("torch", "ner.model", "ner.evaluation", "ner.training"):
        importlib.import_module(name)
        stages[f"import {name}"] = status()["VmRSS"]
    import torch

    from ner.optim import SGD

    SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    stages["ner.optim.SGD(...)"] = status()["VmRSS"]
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)  # for comparison: not used
    stages["torch.optim.SGD(...)"] = status()["VmRSS"]
    previous = 0.0
    for stage, rss in stages.items():
        print(f"{stage:<26} {rss:7.1f} MB  ({rss - previous:+.1f})")
        previous = rss
    heavy = ("datasets", "seqeval", "sklearn", "scipy", "pandas", "pyarrow", "torch._dynamo", "sympy")
    loaded = sorted(name for name in heavy if name in sys.modules)
    print("heavy modules loaded:", ", ".join(loaded) or "none")
    return {"rss_mb": {stage: round(rss, 1) for stage, rss in stages.items()}, "loaded": loaded}


def phases(argv: list[str]) -> dict[str, Any]:
    import ner.model
    import ner.training
    from ner.cli import main

    log: list[dict[str, Any]] = []

    def mark(label: str) -> None:
        now, (in_use, free) = status(), malloc_mb()
        log.append({"phase": label, "rss_mb": round(now["VmRSS"], 1), "peak_mb": round(now["VmHWM"], 1)})
        print(
            f"[memory] {label:<34} rss {now['VmRSS']:7.1f}  peak {now['VmHWM']:7.1f}  "
            f"malloc in use {in_use:6.1f} free {free:6.1f}",
            file=sys.stderr,
            flush=True,
        )

    def logged(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            mark(f"before {label}")
            result = function(*args, **kwargs)
            mark(f"after {label}")
            return result

        return wrapper

    for name in ("load_splits", "train_epoch", "score_corpus", "_final_scores"):
        setattr(ner.training, name, logged(getattr(ner.training, name), name))
    tagger = ner.model.Tagger
    tagger.build = classmethod(logged(tagger.build.__func__, "Tagger.build"))
    tagger.load = classmethod(logged(tagger.load.__func__, "Tagger.load"))
    tagger.encode_corpus = logged(tagger.encode_corpus, "Tagger.encode_corpus")
    steps, loss = [0], tagger.loss

    def counted_loss(self: Any, item: Any) -> Any:
        steps[0] += 1
        if steps[0] % 100 == 0:
            mark(f"step {steps[0]}")
        return loss(self, item)

    tagger.loss = counted_loss
    mark("imports")
    if main(["train", *argv]) != 0:
        raise SystemExit("ner train failed")
    mark("end")
    return {"phases": log, "peak_rss_mb": round(status()["VmHWM"], 1)}


def peak(command: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, wait_status, usage = os.wait4(process.pid, 0)
    seconds, code = time.perf_counter() - started, os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise SystemExit(f"{command[0]} failed (exit {code})")
    print(f"peak RSS {usage.ru_maxrss / 1024:.0f} MB, {seconds:.1f} s, {usage.ru_utime:.1f} s user CPU")
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "seconds": round(seconds, 1),
        "user_cpu_s": round(usage.ru_utime, 1),
    }


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("imports", "phases", "peak"):
        raise SystemExit(__doc__)
    mode, rest = sys.argv[1], sys.argv[2:]
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    if mode == "imports":
        result = imports()
    elif mode == "phases":
        result = phases(rest)
    else:
        result = peak(rest[1:] if rest[:1] == ["--"] else rest)
    print(json.dumps({"mode": mode, **result}))


if __name__ == "__main__":
    main()
