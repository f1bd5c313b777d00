"""Training: read the corpus, build the tagger, run the epochs, keep the best model on dev F1.

``train_from_config`` is what ``ner train`` / ``python train.py`` call. The run directory holds the resolved
config, the vocabularies, the best weights (``model.pt``), the last-epoch checkpoint (``checkpoint.pt``, for
``--resume``), ``metrics.jsonl`` (one line per epoch) and ``metrics.json`` (final dev and test scores). Every file
is written atomically (temporary file, then rename), so an interrupted run loses at most the current epoch.

Under ``torchrun`` (``ner.distributed``) every process trains a DistributedDataParallel replica on its share of
each global batch of ``training.batch_size`` sentences; rank 0 alone scores dev, logs, shows progress and writes
the run directory, and decides early stopping for all.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ner import distributed
from ner.checkpoints import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    METRICS_LOG,
    RUN_FILES,
    TrainingState,
    append_jsonl,
    load_checkpoint,
    refuse_earlier_run,
    save_checkpoint,
    truncate_metrics_log,
    world_change,
)
from ner.config import Config, TrainingConfig, config_from_dict, load_config, save_config
from ner.data.conll import Corpus
from ner.data.sources import load_splits, train_with_dev
from ner.distributed import Context
from ner.encoding import EncodedSentences
from ner.errors import NerError
from ner.evaluation import format_table, score_corpus
from ner.fileio import (
    refuse_links_out,
    remove_temporaries,
    run_lock,
    write_json_atomic,
)
from ner.log import log, setup_logging
from ner.memory import release_free_memory
from ner.model import Tagger
from ner.nn.lstm import LSTM
from ner.optim import SGD, Adam, Optimizer, clip_gradients
from ner.tagger_files import CONFIG_FILE
from ner.yaml_config import read_yaml


def train_from_config(
    config_path: str | Path | None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> dict[str, Any]:
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
        refuse_earlier_run(run_dir)  # before reading the corpus; again under the lock in train
    return train(config, run_dir, resume=resume is not None, on_epoch_end=on_epoch_end)


def train(
    config: Config, run_dir: Path, resume: bool = False, on_epoch_end: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The training loop, holding the run directory's lock: a second ``ner train`` into it stops at once.
    ``on_epoch_end(epoch)`` runs after each epoch's checkpoint (tests use it to interrupt). Under ``torchrun``
    every rank reads the corpus; if any cannot (or the lock is taken), every rank stops with that error."""
    opts = config.training
    if opts.threads:
        torch.set_num_threads(opts.threads)
    with distributed.process_group(opts.device) as (context, device), ExitStack() as lock:
        torch.manual_seed(opts.seed)
        with distributed.agreed(context):
            if not config.data.train:
                raise NerError("data.train: not set: expected the path of the training corpus")
            corpora = load_splits(config.data)
            if opts.train_with_dev:
                corpora = train_with_dev(corpora)
            if run_dir.exists() and not run_dir.is_dir():
                raise NerError(f"output.dir: {run_dir} is a file, expected a folder")
        with distributed.agreed(context):
            if context.main:
                run_dir.mkdir(parents=True, exist_ok=True)
                lock.enter_context(run_lock(run_dir))
        return _train_locked(config, run_dir, corpora, device, resume, on_epoch_end, context)


def _train_locked(
    config: Config,
    run_dir: Path,
    corpora: dict[str, Corpus],
    device: torch.device,
    resume: bool,
    on_epoch_end: Callable[[int], None] | None,
    context: Context,
) -> dict[str, Any]:
    """``train`` once the corpora are read and the run directory is locked (by rank 0, the only writer)."""
    opts = config.training
    train_corpus, dev_corpus = corpora["train"], corpora.get("dev")
    with distributed.agreed(context):
        if context.main:
            refuse_links_out(run_dir, [run_dir / name for name in (*RUN_FILES, "elmo_cache")])
            remove_temporaries(run_dir, RUN_FILES)  # left by a process killed while writing
        if resume:  # every rank reads the run (across machines: on a shared filesystem)
            tagger = Tagger.load(run_dir, device=device)
            checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE, device)
        else:
            if context.main:
                refuse_earlier_run(run_dir)
            tagger = Tagger.build(config, train_corpus, device=device)  # the same on every rank: same corpus, seed
            checkpoint = None
    if not resume and context.main:
        save_config(config, run_dir / CONFIG_FILE)
        tagger.save_vocabularies(run_dir)

    model = tagger.model
    if opts.precision == "bf16":
        distributed.keep_float32(model, LSTM)
    optimizer = make_optimizer(model, opts)
    state = TrainingState()
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            state = TrainingState(**checkpoint["state"])
            torch.set_rng_state(checkpoint["rng"].cpu())
            if "cuda_rng" in checkpoint and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([rng.cpu() for rng in checkpoint["cuda_rng"]])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise NerError(
                f"{run_dir / CHECKPOINT_FILE}: not a checkpoint of this run "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
        if context.main:
            truncate_metrics_log(run_dir / METRICS_LOG, state.epoch)  # drop epochs after the checkpoint
        best = (
            f"best dev F1 {100 * state.best_f1:.2f}" if dev_corpus is not None else f"lowest loss {-state.best_f1:.4f}"
        )
        log.info(
            "resuming %s after epoch %d (%s at epoch %d)%s",
            run_dir,
            state.epoch,
            best,
            state.best_epoch,
            world_change(checkpoint, context),
        )
    set_learning_rate(optimizer, opts, state.epoch)

    elmo_cache = run_dir / "elmo_cache" if config.model.elmo.enabled and not config.model.elmo.fine_tune else None
    for turn in (True, False) if context.distributed and elmo_cache is not None else (None,):
        if turn is None or turn == context.main:  # rank 0 writes the ELMo cache, then the others read it
            train_data = tagger.encode_corpus(train_corpus, elmo_cache)
            dev_data = tagger.encode_corpus(dev_corpus, elmo_cache) if context.main and dev_corpus is not None else None
        if turn is not None:
            torch.distributed.barrier()
    tagger.count_training_words(train_corpus)
    parallel = distributed.data_parallel(model, tagger.loss) if context.distributed else None
    log.info(
        "training on %d sentences (%d tokens), %s, %d parameters, run directory %s",
        len(train_corpus.sentences),
        sum(len(s.tokens) for s in train_corpus.sentences),
        device,
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        run_dir,
    )
    del corpora["train"], train_corpus  # encoded now; the sentences as read would hold ~50 MB through training
    release_free_memory()

    for epoch in range(state.epoch + 1, opts.epochs + 1):
        started = time.perf_counter()
        loss = train_epoch(
            tagger, train_data, optimizer, opts, epoch, config.output.progress and context.main, parallel, context
        )
        set_learning_rate(optimizer, opts, epoch)
        seconds = time.perf_counter() - started
        if not context.main:  # rank 0 scores, writes and decides whether to stop
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if distributed.broadcast_flag(False, context, device):
                break
            continue
        release_free_memory()  # the steps' temporaries: scoring dev would otherwise come on top of them
        with optimizer.averaged_weights():  # with training.average, the averaged model is scored and kept
            dev = score_corpus(tagger, dev_corpus, dev_data)[0] if dev_corpus is not None else None
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
        record = {
            "epoch": epoch,
            "loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "sentences_per_second": len(train_data) / seconds,
        }  # all ranks together: every rank walks them all
        if dev:
            record.update({f"dev_{k}": dev["default"]["micro"][k] for k in ("precision", "recall", "f1")})
        append_jsonl(run_dir / METRICS_LOG, record)
        save_checkpoint(run_dir, model, optimizer, state, context.world_size)
        log.info(
            "epoch %d: loss %.4f, dev F1 %s%s, %.1f s",
            epoch,
            loss,
            f"{100 * dev_f1:.2f}" if dev else "n/a",
            " (best)" if improved else "",
            seconds,
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        stop = bool(opts.patience) and state.epochs_without_improvement >= opts.patience
        if distributed.broadcast_flag(stop, context, device):
            log.info("early stop: no better dev F1 for %d epochs", opts.patience)
            break

    del tagger, model, optimizer, train_data, dev_data, parallel  # scores load the best model
    release_free_memory()
    return _final_scores(run_dir, corpora, state, device) if context.main else {}


def train_epoch(
    tagger: Tagger,
    data: EncodedSentences,
    optimizer: Optimizer,
    opts: TrainingConfig,
    epoch: int,
    progress: bool,
    parallel: torch.nn.Module | None = None,
    context: Context | None = None,
) -> float:
    """One pass over the shuffled training batches; returns the mean loss per sentence. With ``parallel`` (under
    torchrun) this rank computes its share of every batch."""
    model = tagger.model
    model.train()
    total_loss, total_sentences = 0.0, 0
    shares = distributed.BatchShares(context) if parallel is not None and context is not None else None
    if shares is not None:
        torch.manual_seed(distributed.rank_seed(opts.seed, epoch, shares.context))  # this rank's dropout masks
    batches = data.batches(opts.batch_size, shuffle=True, seed=opts.seed + epoch, select=shares)
    total_batches = math.ceil(len(data) / opts.batch_size)
    bar = tqdm(
        batches,
        total=total_batches,
        desc=f"epoch {epoch}/{opts.epochs}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    started = time.perf_counter()
    for item in bar:
        optimizer.zero_grad(set_to_none=True)
        with distributed.autocast(opts.precision, tagger.device):
            if parallel is None or shares is None:
                loss = tagger.loss(item)  # mean over the batch's sentences
                size = item.size
            else:  # a share of the batch, weighted so that DDP's average is the whole batch's gradient
                loss = parallel(item) * shares.weight
                size = shares.size
        loss.backward()
        if opts.grad_clip:
            clip_gradients(model.parameters(), opts.grad_clip)
        optimizer.step()
        # stays a tensor: no host sync per step; a rank's weighted loss times size / world is its sentences' sum
        total_loss += loss.detach() * (size if shares is None else size / shares.context.world_size)
        total_sentences += size
        if progress and bar.n % 20 == 0:
            rate = total_sentences / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{float(total_loss) / total_sentences:.3f}", sent_s=f"{rate:.0f}")
    if shares is not None:
        total_loss = distributed.all_sum(torch.as_tensor(total_loss, device=tagger.device), shares.context)
    mean = float(total_loss) / max(total_sentences, 1)
    if not math.isfinite(mean):
        raise NerError(f"training diverged at epoch {epoch} (loss {mean}); lower training.lr")
    return mean


def make_optimizer(model: torch.nn.Module, opts: TrainingConfig) -> Optimizer:
    """SGD with momentum or Adam over the trainable parameters, as ``training.optimizer`` says (keeping a moving
    average of the weights with ``training.average``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if opts.optimizer == "adam":
        return Adam(params, lr=opts.lr, weight_decay=opts.weight_decay, average=opts.average)
    return SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay, average=opts.average)


def set_learning_rate(optimizer: Optimizer, opts: TrainingConfig, epochs_done: int) -> None:
    """The learning rate of the epoch after ``epochs_done``: ``lr / (1 + lr_decay * epochs_done)``."""
    optimizer.param_groups[0]["lr"] = opts.lr * (1.0 / (1.0 + opts.lr_decay * epochs_done))


def _final_scores(
    run_dir: Path, corpora: dict[str, Corpus], state: TrainingState, device: torch.device
) -> dict[str, Any]:
    """Score the best model on dev and test, print the tables and write ``metrics.json``."""
    best = Tagger.load(run_dir, device=device)
    metrics: dict[str, Any] = {"best_epoch": state.best_epoch, "epochs": state.epoch}
    for split in ("dev", "test"):
        if split in corpora:
            scores, _ = score_corpus(best, corpora[split])
            release_free_memory()
            metrics[split] = scores
            log.info(
                "%s (%s), best model from epoch %d:\n%s",
                split,
                corpora[split].path,
                state.best_epoch,
                format_table(scores),
            )
    metrics["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # scoring included
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    log.info(
        "model, vocabularies and metrics written to %s (per epoch: %s; plots: ner report %s)",
        run_dir,
        run_dir / METRICS_LOG,
        run_dir,
    )
    return metrics
