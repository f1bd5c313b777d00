"""Multi-seed run directories: ``RUN/seed-N/`` (each a run directory of one seed) and ``RUN/summary.json``.

``ner train CONFIG --seeds 1,2,3`` writes them (``ner/seeds.py``). Here is only what loading needs: telling such
a directory from a plain run, and picking the seed that was best on dev (``Tagger.load``, ``ner tag``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ner.errors import NerError
from ner.log import log

SEED_PREFIX = "seed-"
SUMMARY_FILE = "summary.json"
ROOT_CONFIG = "config.yaml"


def seed_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / f"{SEED_PREFIX}{seed}"


def is_multi_seed(run_dir: Path) -> bool:
    """A folder of ``seed-N`` run directories (with no model of its own)."""
    return (
        run_dir.is_dir()
        and not (run_dir / "model.pt").exists()
        and any(path.is_dir() for path in run_dir.glob(f"{SEED_PREFIX}*"))
    )


def seed_dirs(run_dir: Path) -> dict[int, Path]:
    """The ``seed-N`` folders of a multi-seed run by seed, in seed order."""
    found = {}
    for path in run_dir.glob(f"{SEED_PREFIX}*"):
        number = path.name[len(SEED_PREFIX) :]
        if path.is_dir() and number.isdigit():
            found[int(number)] = path
    return dict(sorted(found.items()))


NO_DEV = -math.inf  # the dev F1 of a run trained without a dev set (``training.train_with_dev``, no data.dev)


def dev_f1(seed_run: Path) -> float | None:
    """The best dev micro F1 of a finished run (its ``metrics.json``): None if it has not finished (or its F1 is
    not a number), ``NO_DEV`` if it has no dev scores."""
    path = seed_run / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(metrics, dict) and "dev" not in metrics and isinstance(metrics.get("best_epoch"), int):
            return NO_DEV
        value = float(metrics["dev"]["default"]["micro"]["f1"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise NerError(f"{path}: not the metrics of a finished run ({error})") from None
    except OSError as error:
        raise NerError(f"{path}: cannot read the metrics of a finished run ({error.strerror})") from None
    return value if math.isfinite(value) else None


def best_seed_dir(run_dir: Path) -> Path:
    """The finished seed of a multi-seed run with the best dev F1 (the lowest seed on a tie, or when trained
    without dev); says which."""
    scores = {seed: dev_f1(path) for seed, path in seed_dirs(run_dir).items()}
    finished = {seed: f1 for seed, f1 in scores.items() if f1 is not None}
    if not finished:
        raise NerError(f"{run_dir}: no seed has finished training (expected {SEED_PREFIX}N/metrics.json)")
    best = max(finished, key=lambda seed: (finished[seed], -seed))
    if finished[best] == NO_DEV:
        which = f"the lowest of {len(finished)} finished seeds (no dev scores)"
    else:
        which = f"the best of {len(finished)} finished seeds on dev (F1 {100 * finished[best]:.2f})"
    log.info("%s: using %s%d, %s", run_dir, SEED_PREFIX, best, which)
    return seed_dir(run_dir, best)
