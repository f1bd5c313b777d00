"""Pretrain the ELMo biLM as forward and backward language models: ``ner pretrain-lm configs/lm_reuters.yaml``.

This module holds the training loop, held-out evaluation and checkpoints; the config is in ``pretrain_config``,
the text, vocabulary and batches in ``pretrain_data``, the biLM with its softmax in ``pretrain_model``.

The text file holds one tokenised sentence per line (tokens separated by spaces), or is a CoNLL file
(``data.format: conll``, e.g. a tagger's training file, to adapt a biLM to its domain). Each sentence is wrapped in
``<S> ... </S>``; the forward LM predicts every next token, the backward LM (its own LSTM stack, reading the
sentence reversed) every previous one. Both share the character CNN and one output layer, an adaptive softmax
(Grave et al. 2017) over a frequency-sorted vocabulary whose first entries are ``<S>``, ``</S>``, ``<UNK>`` as in
bilm-tf. The loss is the mean of the two directions' mean token losses.

Unlike bilm-tf, which packs sentences into endless streams and carries LSTM states across batches, every
sentence starts from zero states, which is exactly how ``BiLM`` (stateless) runs inside the tagger. Gradients
are truncated every ``training.bptt`` tokens (states are detached between windows). Batches group sentences
of similar length up to ``training.batch_tokens`` tokens and come in a seeded random order. Under ``torchrun``
(``ner.distributed``) every process walks the same batches and takes its share of the sentences of each;
rank 0 alone evaluates, shows progress and writes.

The output folder holds ``options.json`` + ``bilm.pt`` (``BiLM.load``; ``model.elmo.pretrained_dir`` of a
tagger config), ``vocab.txt``, ``metrics.json`` (held-out perplexity per direction), the resolved
``config.yaml`` and ``checkpoint.pt`` (weights, softmax, optimiser, position; written atomically every
``training.checkpoint_every`` steps, ``--resume`` continues from it). ``BiLM.load(dir).to_allennlp(out)`` exports
the AllenNLP/bilm-tf layout. ``training.init_from`` starts a run from another run's biLM (the softmax and the
optimiser start afresh; ``training.softmax_warmup_steps`` fits the new softmax to the frozen biLM first).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from ner import distributed
from ner.distributed import Context
from ner.elmo.bilm import BiLM, BiLMOptions
from ner.elmo.pretrain_config import LMConfig, LMTrainingConfig, load_lm_config
from ner.elmo.pretrain_data import Corpus, batch_tensors, build_vocab, index_corpus, make_batches, read_sentences
from ner.elmo.pretrain_model import BiLanguageModel
from ner.errors import ConfigError, NerError
from ner.fileio import atomic_write, write_json_atomic, write_text_atomic
from ner.nn.lstm import LSTM
from ner.optim import Adagrad, Adam, Optimizer

__all__ = ["LMConfig", "LMTrainingConfig", "evaluate_lm", "load_lm_config", "pretrain_lm", "read_sentences"]

CHECKPOINT_FILE = "checkpoint.pt"


def pretrain_lm(config: str | Path | LMConfig, overrides: Sequence[str] = (), resume: bool = False) -> dict[str, Any]:
    """Train (or with ``resume``, continue) a biLM; returns the final held-out metrics (on rank 0 of a
    ``torchrun`` job; the other ranks return ``{}``)."""
    if not isinstance(config, LMConfig):
        config = load_lm_config(config, overrides)
    if config.training.threads:
        torch.set_num_threads(config.training.threads)
    with distributed.process_group(config.training.device) as (context, device):
        return _pretrain(config, resume, context, device)


def _pretrain(config: LMConfig, resume: bool, context: Context, device: torch.device) -> dict[str, Any]:
    train_cfg = config.training
    output = Path(config.output_dir)
    checkpoint_path = output / CHECKPOINT_FILE
    with distributed.agreed(context):  # every rank reads the text; a failure on any ends all before a write
        if resume and not checkpoint_path.is_file():
            raise NerError(f"{checkpoint_path}: no checkpoint to resume from")
        if not resume and checkpoint_path.is_file():
            raise NerError(f"{output}: already holds a pretraining run; pass --resume or choose another output_dir")
        sentences = read_sentences(Path(config.data.train), config.data.format)
        if len(sentences) <= config.data.heldout_sentences:
            raise ConfigError(
                f"data.heldout_sentences: expected fewer than the {len(sentences)} sentences of "
                f"{config.data.train}, got {config.data.heldout_sentences}"
            )
    if context.main:
        output.mkdir(parents=True, exist_ok=True)
    split = np.random.default_rng(train_cfg.seed).permutation(len(sentences))
    heldout_set = set(split[: config.data.heldout_sentences].tolist())
    train_sentences = [s for i, s in enumerate(sentences) if i not in heldout_set]
    heldout_sentences = [s for i, s in enumerate(sentences) if i in heldout_set]
    vocab = build_vocab(train_sentences, config.data.min_count, config.data.max_vocab)
    train_corpus = index_corpus(train_sentences, vocab)
    heldout_corpus = index_corpus(heldout_sentences, vocab)
    train_lengths = np.array([len(s) for s in train_corpus.sentences])

    torch.manual_seed(train_cfg.seed)
    model = BiLanguageModel(config.model, len(vocab)).to(device)
    if train_cfg.precision == "bf16":
        distributed.keep_float32(model, (LSTM, nn.AdaptiveLogSoftmaxWithLoss))  # the rest runs in bf16
    if train_cfg.init_from and not resume:
        _init_bilm(model.bilm, Path(train_cfg.init_from), config.model.bilm_options())
    optimizer = _optimizer(model, train_cfg)
    # tokens: forward-LM targets (words + </S>); train_seconds: time in training steps (no evaluation, no I/O)
    state = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "train_seconds": 0.0, "history": []}
    with distributed.agreed(context):
        if resume:
            state = _resume(checkpoint_path, model, optimizer, config, vocab, device)
    if not resume and context.main:
        write_text_atomic(output / "vocab.txt", "\n".join(vocab) + "\n")
        _write_yaml(output / "config.yaml", dataclasses.asdict(config))
    # Tail clusters of the adaptive softmax go unused in a batch without their words: DDP must look for them.
    step_model = distributed.data_parallel(model, model, find_unused_parameters=True) if context.distributed else model

    steps_per_epoch = len(make_batches(train_lengths, train_cfg.batch_tokens, None))
    total_steps = steps_per_epoch * train_cfg.epochs
    if train_cfg.max_steps is not None:
        total_steps = min(total_steps, train_cfg.max_steps)
    bar = tqdm(
        total=total_steps,
        initial=state["step"],
        unit="step",
        disable=not (train_cfg.progress and context.main),
        desc="pretrain-lm",
        dynamic_ncols=True,
    )
    session_tokens, session_seconds, recent_losses = state["tokens"], state["train_seconds"], []
    for epoch, batch_index, indices in _schedule(train_lengths, train_cfg, state):
        if state["step"] >= total_steps:
            break
        step_start = time.perf_counter()
        loss, tokens = _step(
            step_model, model, optimizer, train_corpus, indices, train_cfg, state["step"], total_steps, context, device
        )
        state.update(
            step=state["step"] + 1,
            epoch=epoch,
            batch=batch_index + 1,
            tokens=state["tokens"] + tokens,
            train_seconds=state["train_seconds"] + time.perf_counter() - step_start,
        )
        if not context.main:
            continue
        recent_losses.append(loss)
        train_loss = sum(recent_losses) / len(recent_losses)  # mean since the last evaluation
        tokens_per_s = (state["tokens"] - session_tokens) / (state["train_seconds"] - session_seconds)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
        last = state["step"] == total_steps
        if state["step"] % train_cfg.eval_every == 0 or last:
            metrics = evaluate_lm(model, heldout_corpus, train_cfg.batch_tokens)
            state["history"].append(
                {
                    "step": state["step"],
                    "epoch": epoch,
                    "tokens": state["tokens"],
                    "train_loss": round(train_loss, 4),
                    "train_seconds": round(state["train_seconds"], 1),
                    "tokens_per_s": round(tokens_per_s, 1),
                    **metrics,
                }
            )
            bar.write(json.dumps(state["history"][-1]))
            recent_losses = []
        if state["step"] % train_cfg.checkpoint_every == 0 or last:
            _save_checkpoint(checkpoint_path, model, optimizer, config, vocab, state)
            model.bilm.save(output)
            write_json_atomic(
                output / "metrics.json",
                {"history": state["history"], "heldout_sentences": len(heldout_sentences), "vocab_size": len(vocab)},
            )
    bar.close()
    return state["history"][-1] if state["history"] and context.main else {}


def _step(
    step_model: nn.Module,
    model: BiLanguageModel,
    optimizer: Optimizer,
    corpus: Corpus,
    indices: np.ndarray,
    cfg: LMTrainingConfig,
    step: int,
    total_steps: int,
    context: Context,
    device: torch.device,
) -> tuple[float, int]:
    """One optimiser step on the batch ``indices``; returns its loss and its forward-LM targets (both of the
    whole batch, whatever this rank's share).

    A single process takes the mean of each direction's mean token loss. Under DDP every rank sums its share's
    token losses and divides by the whole batch's target count, times the world size: DDP's average of the
    ranks' gradients is then the gradient of the whole batch's loss, however unevenly the batch splits. A rank
    whose share is empty (a batch of fewer sentences than ranks) runs one sentence with weight 0.
    """
    warm = step >= cfg.softmax_warmup_steps
    step_model.train()
    if not context.distributed:
        model.bilm.requires_grad_(warm)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * _lr_factor(cfg, step, total_steps)
    # one count per direction: the words and </S> (forward), <S> and the words (backward)
    targets_count = int(sum(len(corpus.sentences[i]) + 1 for i in indices))
    rows, weight = indices, 1.0
    if context.distributed:
        torch.manual_seed(distributed.rank_seed(cfg.seed, step, context))  # this rank's dropout masks at this step
        rows = np.asarray(distributed.shard([[i] for i in indices], context), dtype=np.int64)
        rows, weight = (rows, float(context.world_size)) if len(rows) else (indices[:1], 0.0)
    char_ids, targets = (tensor.to(device) for tensor in batch_tensors(corpus, rows))
    with distributed.autocast(cfg.precision, device):
        losses = step_model(char_ids, targets, cfg.bptt)
    if context.distributed:
        loss = weight * 0.5 * (losses["forward"] + losses["backward"]) / targets_count
    else:
        loss = 0.5 * (losses["forward"] / losses["forward_count"] + losses["backward"] / losses["backward_count"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if context.distributed and not warm:  # the biLM is frozen: as in one process, its weights get no gradient
        for parameter in model.bilm.parameters():
            parameter.grad = None
    if cfg.clip_norm:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
    optimizer.step()
    return float(distributed.all_sum(loss.detach(), context)) / context.world_size, targets_count


def _schedule(
    lengths: np.ndarray, cfg: LMTrainingConfig, state: dict[str, Any]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(epoch, batch index, sentence indices) from the resume position on; batch orders are seeded per epoch."""
    for epoch in range(state["epoch"], cfg.epochs):
        batches = make_batches(lengths, cfg.batch_tokens, np.random.default_rng([cfg.seed, epoch]))
        first = state["batch"] if epoch == state["epoch"] else 0
        for index in range(first, len(batches)):
            yield epoch, index, batches[index]


@torch.no_grad()
def evaluate_lm(model: BiLanguageModel, corpus: Corpus, batch_tokens: int) -> dict[str, float]:
    """Held-out perplexity per direction (full normalised adaptive softmax, whole sentences, no dropout)."""
    model.eval()
    device = next(model.parameters()).device
    lengths = np.array([len(s) for s in corpus.sentences])
    totals: Counter[str] = Counter()
    for indices in make_batches(lengths, batch_tokens, None):
        char_ids, targets = (tensor.to(device) for tensor in batch_tensors(corpus, indices))
        for key, value in model(char_ids, targets, bptt=0).items():
            totals[key] += float(value)
    return {f"heldout_ppl_{d}": round(math.exp(totals[d] / totals[f"{d}_count"]), 3) for d in ("forward", "backward")}


def _init_bilm(bilm: BiLM, directory: Path, options: BiLMOptions) -> None:
    """Copy the weights of the biLM in ``directory`` into ``bilm``; its architecture must be the config's."""
    start = BiLM.load(directory)
    if start.options != options:
        raise ConfigError(
            f"training.init_from: {directory} holds a biLM of another architecture than the model "
            f"section ({start.options} against {options})"
        )
    bilm.load_state_dict(start.state_dict())


def _lr_factor(cfg: LMTrainingConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` (0-based) of a run of ``total_steps``."""
    if cfg.lr_schedule == "linear":
        return max(0.0, 1.0 - step / total_steps)
    return 1.0


def _optimizer(model: nn.Module, cfg: LMTrainingConfig) -> Optimizer:
    if cfg.optimizer == "adagrad":
        return Adagrad(model.parameters(), lr=cfg.lr, initial_accumulator_value=1.0)
    return Adam(model.parameters(), lr=cfg.lr)


def _resume(
    path: Path,
    model: nn.Module,
    optimizer: Optimizer,
    config: LMConfig,
    vocab: list[str],
    device: torch.device,
) -> dict[str, Any]:
    """Load the checkpoint (every rank reads it: a job across machines needs the output folder on a shared
    filesystem) and return the position; the world size may differ from the run's (the batches are global)."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint["config"]["model"] != dataclasses.asdict(config.model) or checkpoint["vocab"] != vocab:
        raise NerError(
            f"{path}: the checkpoint was trained with a different model section or "
            f"vocabulary than {config.data.train} and this config give"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"].cpu())
    return checkpoint["state"]


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: Optimizer,
    config: LMConfig,
    vocab: list[str],
    state: dict[str, Any],
) -> None:
    """Everything ``--resume`` needs, in one ``weights_only``-loadable file, written atomically."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "config": dataclasses.asdict(config),
        "vocab": vocab,
        "state": state,
    }
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
