"""The files of a training run directory and the helpers that write them: their names, the resume state, the
checkpoint (save, load, a change of world size), the guard against writing over an earlier run, and the per-epoch
metrics log (``metrics.jsonl``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ner.data.vocab import VOCABULARY_FILES
from ner.distributed import Context
from ner.errors import NerError
from ner.fileio import append_line, atomic_write, write_text_atomic
from ner.log import log
from ner.optim import Optimizer
from ner.rundir import SEED_PREFIX
from ner.tagger_files import CONFIG_FILE, META_FILE, VECTORS_FILE, WEIGHTS_FILE

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
# Every file of a run directory (ner/tagger_files.py and ner/data/vocab.py name the others): a new run refuses a folder
# holding any of them, and none may be a symbolic link out of the run directory.
RUN_FILES = (
    CONFIG_FILE,
    META_FILE,
    VECTORS_FILE,
    WEIGHTS_FILE,
    *VOCABULARY_FILES.values(),
    CHECKPOINT_FILE,
    METRICS_LOG,
    METRICS_FILE,
)


@dataclass
class TrainingState:
    """What resuming needs beyond the weights: position, best score and patience."""

    epoch: int = 0  # epochs finished
    best_f1: float = -math.inf  # dev F1, or minus the loss without a dev set
    best_epoch: int = 0
    epochs_without_improvement: int = 0


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: Optimizer,
    state: TrainingState,
    world_size: int = 1,
) -> None:
    """The last epoch's weights, optimizer, state and random generators, for ``--resume`` (the learning rate
    follows from the epoch)."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": vars(state),
        "rng": torch.get_rng_state(),
        "world_size": world_size,
    }
    if torch.cuda.is_available():
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_torch_save(checkpoint, run_dir / CHECKPOINT_FILE)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint in ``path``, read by PyTorch's safe unpickler; a damaged file is a NerError."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # an untrusted file: torch and pickle raise many kinds on damaged input
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NerError(f"{path}: not a checkpoint written by `ner train` ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise NerError(f"{path}: not a checkpoint written by `ner train` (a {type(checkpoint).__name__})")
    return checkpoint


def world_change(checkpoint: dict[str, Any], context: Context) -> str:
    """A note for the log when a run resumes with another number of processes than it ran with. It continues
    exactly (the batches are global and the gradients those of a whole batch) but for the dropout masks, drawn
    per rank."""
    before = checkpoint.get("world_size", 1)
    if before == context.world_size:
        return ""
    return f"; it ran with {before} process(es), now {context.world_size}: dropout masks differ from an unbroken run"


def refuse_earlier_run(run_dir: Path) -> None:
    """A new run never writes over an earlier one, finished, interrupted or broken; only a run killed before
    its first epoch ended (nothing trained: no weights, checkpoint or metrics) starts over."""
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if (run_dir / CHECKPOINT_FILE).exists():
        raise NerError(
            f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another output.dir"
        )
    if any(path.is_dir() for path in run_dir.glob(f"{SEED_PREFIX}*")):
        raise NerError(f"{run_dir}: already holds a multi-seed run; choose another output.dir")
    untrained = META_FILE in found and not set(found) & {WEIGHTS_FILE, METRICS_LOG, METRICS_FILE}
    if found and not untrained:
        raise NerError(
            f"{run_dir}: already holds a run ({', '.join(found)}) with no {CHECKPOINT_FILE} to resume "
            f"from; choose another output.dir (or remove that run)"
        )


def truncate_metrics_log(path: Path, last_epoch: int) -> None:
    """Keep the epochs up to the checkpoint's; a line torn by a kill mid-write is dropped (and said so)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            epoch = json.loads(line)["epoch"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: dropping a torn line (the run was killed while writing it): %.60r", path, line)
            continue
        if isinstance(epoch, int) and epoch <= last_epoch:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON line more in ``path``."""
    append_line(path, json.dumps(record))
