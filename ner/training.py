"""Training: read the corpus, build the tagger, run the epochs, keep the best model on dev F1.

``train_from_config`` is what ``ner train`` / ``python train.py`` call. The run directory holds the resolved
config, the vocabularies, the best weights (``model.pt``), the last-epoch checkpoint (``checkpoint.pt``, for
``--resume``), ``metrics.jsonl`` (one line per epoch) and ``metrics.json`` (final dev and test scores). Every file
is written atomically (temporary file, then rename), so an interrupted run loses at most the current epoch.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ner.config import Config, TrainingConfig, config_from_dict, load_config, read_yaml, save_config
from ner.data.conll import Corpus
from ner.data.sources import load_splits
from ner.data.vocab import VOCABULARY_FILES
from ner.errors import NerError
from ner.evaluation import format_table, score_corpus, write_json
from ner.fileio import append_line, atomic_write, refuse_links_out, remove_temporaries, run_lock, write_text_atomic
from ner.log import log, setup_logging
from ner.memory import release_free_memory
from ner.model import CONFIG_FILE, META_FILE, VECTORS_FILE, WEIGHTS_FILE, EncodedSentences, Tagger, resolve_device
from ner.rundir import SEED_PREFIX

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
# Every file of a run directory (ner/model.py and ner/data/vocab.py name the others): a new run refuses a folder
# holding any of them, and none may be a symbolic link out of the run directory.
RUN_FILES = (CONFIG_FILE, META_FILE, VECTORS_FILE, WEIGHTS_FILE, *VOCABULARY_FILES.values(), CHECKPOINT_FILE,
             METRICS_LOG, METRICS_FILE)


@dataclass
class TrainingState:
    """What resuming needs beyond the weights: position, best score and patience."""

    epoch: int = 0  # epochs finished
    best_f1: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0


class WeightAverage:
    """Exponential moving average of the trainable parameters (Polyak averaging), updated after every step.

    Dev scoring and the saved model use the average; training goes on with the raw weights. The decay warms
    up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early averages do not remember the
    random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, param in zip(self.average, self.params):
            average.lerp_(param, 1.0 - decay)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its raw weights again after it."""
        raw = [p.detach().clone() for p in self.params]
        _copy_into(self.params, self.average)
        try:
            yield
        finally:
            _copy_into(self.params, raw)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _copy_into(self.average, state["average"])
        self.updates = state["updates"]


@torch.no_grad()
def _copy_into(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    for target, source in zip(targets, sources):
        target.copy_(source)


def train_from_config(config_path: str | Path | None, overrides: Sequence[str] = (),
                      resume: str | Path | None = None,
                      on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train from a YAML config (or continue the run in ``resume``); returns the final metrics."""
    setup_logging()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CHECKPOINT_FILE).is_file():
            raise NerError(f"{run_dir}: no {CHECKPOINT_FILE} to resume from (expected a run directory of `ner train`)")
        config = config_from_dict(read_yaml(run_dir / CONFIG_FILE), base_dir=run_dir, origin=str(run_dir / CONFIG_FILE))
        if overrides:
            log.warning("ignoring overrides on --resume: the run continues with its saved config")
    else:
        if config_path is None:
            raise NerError("train: a config file is required unless --resume is given")
        config = load_config(config_path, overrides)
        run_dir = Path(config.output.dir)
        _refuse_earlier_run(run_dir)  # before reading the corpus; again under the lock in train
    return train(config, run_dir, resume=resume is not None, on_epoch_end=on_epoch_end)


def train(config: Config, run_dir: Path, resume: bool = False,
          on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The training loop, holding the run directory's lock: a second ``ner train`` into it stops at once.
    ``on_epoch_end(epoch)`` runs after each epoch's checkpoint (tests use it to interrupt)."""
    opts = config.training
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = resolve_device(opts.device)

    if not config.data.train:
        raise NerError("data.train: not set: expected the path of the training corpus")
    corpora = load_splits(config.data)
    if run_dir.exists() and not run_dir.is_dir():
        raise NerError(f"output.dir: {run_dir} is a file, expected a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _train_locked(config, run_dir, corpora, device, resume, on_epoch_end)


def _train_locked(config: Config, run_dir: Path, corpora: dict[str, Corpus], device: torch.device, resume: bool,
                  on_epoch_end: Callable[[int], None] | None) -> dict[str, Any]:
    """``train`` once the corpora are read and the run directory is locked."""
    opts = config.training
    train_corpus, dev_corpus = corpora["train"], corpora.get("dev")
    refuse_links_out(run_dir, [run_dir / name for name in (*RUN_FILES, "elmo_cache")])
    remove_temporaries(run_dir, RUN_FILES)  # left by a process killed while writing
    if resume:
        tagger = Tagger.load(run_dir, device=device)
        checkpoint = _load_checkpoint(run_dir / CHECKPOINT_FILE, device)
    else:
        _refuse_earlier_run(run_dir)
        tagger = Tagger.build(config, train_corpus, device=device)
        save_config(config, run_dir / CONFIG_FILE)
        tagger.save_vocabularies(run_dir)
        checkpoint = None

    model = tagger.model
    optimizer = make_optimizer(model, opts)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 / (1.0 + opts.lr_decay * epoch))
    average = WeightAverage(model, opts.average) if opts.average else None
    state = TrainingState()
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            state = TrainingState(**checkpoint["state"])
            if average is not None:
                average.load_state_dict(checkpoint["average"])
            torch.set_rng_state(checkpoint["rng"])
            if "cuda_rng" in checkpoint:
                torch.cuda.set_rng_state_all(list(checkpoint["cuda_rng"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise NerError(f"{run_dir / CHECKPOINT_FILE}: not a checkpoint of this run "
                           f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
        _truncate_metrics_log(run_dir / METRICS_LOG, state.epoch)  # drop epochs after the checkpoint
        log.info("resuming %s after epoch %d (best dev F1 %.2f at epoch %d)", run_dir, state.epoch,
                 100 * state.best_f1, state.best_epoch)

    elmo_cache = run_dir / "elmo_cache" if config.model.elmo.enabled and not config.model.elmo.fine_tune else None
    train_data = tagger.encode_corpus(train_corpus, elmo_cache)
    tagger.count_training_words(train_corpus)
    dev_data = tagger.encode_corpus(dev_corpus, elmo_cache) if dev_corpus is not None else None
    log.info("training on %d sentences (%d tokens), %s, %d parameters, run directory %s",
             len(train_corpus.sentences), sum(len(s.tokens) for s in train_corpus.sentences), device,
             sum(p.numel() for p in model.parameters() if p.requires_grad), run_dir)
    del corpora["train"], train_corpus  # encoded now; the sentences as read would hold ~50 MB through training
    release_free_memory()

    for epoch in range(state.epoch + 1, opts.epochs + 1):
        started = time.perf_counter()
        loss = train_epoch(tagger, train_data, optimizer, opts, epoch, config.output.progress, average)
        scheduler.step()
        seconds = time.perf_counter() - started
        release_free_memory()  # the steps' temporaries: scoring dev would otherwise come on top of them
        with average.applied() if average is not None else nullcontext():
            dev = score_corpus(tagger, dev_corpus, dev_data)[0] if dev_corpus is not None else None
            tagger.input_cache.clear()  # its entries die with the next step's weights: free them now
            release_free_memory()
            dev_f1 = dev["default"]["micro"]["f1"] if dev else -loss  # no dev set: keep the lowest loss
            improved = dev_f1 > state.best_f1
            if improved:
                tagger.save_weights(run_dir)
        state.epoch = epoch
        if improved:
            state.best_f1, state.best_epoch, state.epochs_without_improvement = dev_f1, epoch, 0
        else:
            state.epochs_without_improvement += 1
        record = {"epoch": epoch, "loss": loss, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "sentences_per_second": len(train_data) / seconds}
        if dev:
            record.update({f"dev_{k}": dev["default"]["micro"][k] for k in ("precision", "recall", "f1")})
        _append_jsonl(run_dir / METRICS_LOG, record)
        _save_checkpoint(run_dir, model, optimizer, scheduler, state, average)
        log.info("epoch %d: loss %.4f, dev F1 %s%s, %.1f s", epoch, loss,
                 f"{100 * dev_f1:.2f}" if dev else "n/a", " (best)" if improved else "", seconds)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if opts.patience and state.epochs_without_improvement >= opts.patience:
            log.info("early stop: no better dev F1 for %d epochs", opts.patience)
            break

    del tagger, model, optimizer, scheduler, average, train_data, dev_data  # the final scores load the best model
    release_free_memory()
    return _final_scores(run_dir, corpora, state, device)


def train_epoch(tagger: Tagger, data: EncodedSentences, optimizer: torch.optim.Optimizer, opts: TrainingConfig,
                epoch: int, progress: bool, average: WeightAverage | None = None) -> float:
    """One pass over the shuffled training batches (updating ``average`` after each step); returns the mean
    loss per sentence."""
    model = tagger.model
    model.train()
    total_loss, total_sentences = 0.0, 0
    batches = data.batches(opts.batch_size, shuffle=True, seed=opts.seed + epoch)
    total_batches = math.ceil(len(data) / opts.batch_size)
    bar = tqdm(batches, total=total_batches, desc=f"epoch {epoch}/{opts.epochs}", unit="batch",
               disable=not progress, leave=False)
    started = time.perf_counter()
    for item in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = tagger.loss(item)  # mean over the batch's sentences
        loss.backward()
        if opts.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
        optimizer.step()
        if average is not None:
            average.update()
        size = item.size
        total_loss += loss.detach() * size  # stays a tensor: no host sync per step
        total_sentences += size
        if progress and bar.n % 20 == 0:
            rate = total_sentences / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{float(total_loss) / total_sentences:.3f}", sent_s=f"{rate:.0f}")
    mean = float(total_loss) / max(total_sentences, 1)
    if not math.isfinite(mean):
        raise NerError(f"training diverged at epoch {epoch} (loss {mean}); lower training.lr")
    return mean


def make_optimizer(model: torch.nn.Module, opts: TrainingConfig) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over the trainable parameters, as ``training.optimizer`` says."""
    params = [p for p in model.parameters() if p.requires_grad]
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)


def _final_scores(run_dir: Path, corpora: dict[str, Corpus], state: TrainingState,
                  device: torch.device) -> dict[str, Any]:
    """Score the best model on dev and test, print the tables and write ``metrics.json``."""
    best = Tagger.load(run_dir, device=device)
    metrics: dict[str, Any] = {"best_epoch": state.best_epoch, "epochs": state.epoch}
    for split in ("dev", "test"):
        if split in corpora:
            scores, _ = score_corpus(best, corpora[split])
            best.input_cache.clear()  # test shares few words with dev: a cache of both would outgrow either
            release_free_memory()
            metrics[split] = scores
            log.info("%s (%s), best model from epoch %d:\n%s", split, corpora[split].path, state.best_epoch,
                     format_table(scores))
    metrics["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # scoring included
    write_json(metrics, run_dir / METRICS_FILE)
    log.info("model, vocabularies and metrics written to %s (per epoch: %s; plots: ner report %s)", run_dir,
             run_dir / METRICS_LOG, run_dir)
    return metrics


def _save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, state: TrainingState, average: WeightAverage | None) -> None:
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "state": vars(state), "rng": torch.get_rng_state()}
    if average is not None:
        checkpoint["average"] = average.state_dict()
    if torch.cuda.is_available():
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_torch_save(checkpoint, run_dir / CHECKPOINT_FILE)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint in ``path``, read by PyTorch's safe unpickler; a damaged file is a NerError."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # an untrusted file: torch and pickle raise many kinds on damaged input
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NerError(f"{path}: not a checkpoint written by `ner train` ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise NerError(f"{path}: not a checkpoint written by `ner train` (a {type(checkpoint).__name__})")
    return checkpoint


def _refuse_earlier_run(run_dir: Path) -> None:
    """A new run never writes over an earlier one, finished, interrupted or broken; only a run killed before
    its first epoch ended (nothing trained: no weights, checkpoint or metrics) starts over."""
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if (run_dir / CHECKPOINT_FILE).exists():
        raise NerError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} "
                       f"or choose another output.dir")
    if any(path.is_dir() for path in run_dir.glob(f"{SEED_PREFIX}*")):
        raise NerError(f"{run_dir}: already holds a multi-seed run; choose another output.dir")
    untrained = META_FILE in found and not set(found) & {WEIGHTS_FILE, METRICS_LOG, METRICS_FILE}
    if found and not untrained:
        raise NerError(f"{run_dir}: already holds a run ({', '.join(found)}) with no {CHECKPOINT_FILE} to resume "
                       f"from; choose another output.dir (or remove that run)")


def _truncate_metrics_log(path: Path, last_epoch: int) -> None:
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


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    append_line(path, json.dumps(record))
