"""Pretrain the ELMo biLM as forward and backward language models: ``ner pretrain-lm configs/lm_reuters.yaml``.

The text file holds one tokenised sentence per line (tokens separated by spaces), or is a CoNLL file
(``data.format: conll``, e.g. a tagger's training file, to adapt a biLM to its domain). Each sentence is wrapped in
``<S> ... </S>``; the forward LM predicts every next token, the backward LM (its own LSTM stack, reading the
sentence reversed) every previous one. Both share the character CNN and one output layer, an adaptive softmax
(Grave et al. 2017) over a frequency-sorted vocabulary whose first entries are ``<S>``, ``</S>``, ``<UNK>`` as in
bilm-tf. The loss is the mean of the two directions' mean token losses.

Unlike bilm-tf, which packs sentences into endless streams and carries LSTM states across batches, every
sentence starts from zero states, which is exactly how ``BiLM`` (stateless) runs inside the tagger. Gradients
are truncated every ``training.bptt`` tokens (states are detached between windows). Batches group sentences
of similar length up to ``training.batch_tokens`` tokens and come in a seeded random order.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from ner.config import _apply_override, _build, _resolve, parse_overrides, read_yaml
from ner.data.conll import read_conll
from ner.elmo.bilm import BiLM, BiLMOptions, write_json_atomic
from ner.elmo.chars import BOS_TOKEN, EOS_TOKEN, add_sentence_boundaries, word_to_char_ids
from ner.errors import ConfigError, DataError, NerError, location
from ner.fileio import atomic_write, write_text_atomic
from ner.nn.lstm import reverse_padded

UNK_TOKEN = "<UNK>"
VOCAB_EOS = 1  # the vocabulary starts <S>, </S>, <UNK>
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class LMDataConfig:
    """The unlabelled text."""

    train: str = ""  # relative paths resolve against the config's folder
    format: Literal["text", "conll"] = "text"  # text: one tokenised sentence per line; conll: first column
    heldout_sentences: int = 2000  # a seeded random sample kept out of training for perplexity
    min_count: int = 3  # rarer words are <UNK> as softmax targets (inputs are always their characters)
    max_vocab: int | None = None  # keep at most this many of the most frequent words


@dataclass
class LMModelConfig:
    """The biLM (saved as AllenNLP options) and its training-only output layer."""

    filters: list[list[int]] = field(default_factory=lambda: [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]])
    char_dim: int = 16
    highway_layers: int = 1
    activation: Literal["relu", "tanh"] = "relu"
    projection_dim: int = 128
    lstm_dim: int = 512
    num_layers: int = 2
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    dropout: float = 0.1  # on each LSTM layer's input and before the softmax (bilm-tf)
    softmax_cutoffs: list[int] = field(default_factory=lambda: [2000, 10000])  # adaptive softmax clusters
    softmax_div_value: float = 4.0

    def bilm_options(self) -> BiLMOptions:
        return BiLMOptions(filters=[(w, n) for w, n in self.filters], char_dim=self.char_dim,
                           highway_layers=self.highway_layers, activation=self.activation,
                           projection_dim=self.projection_dim, lstm_dim=self.lstm_dim, num_layers=self.num_layers,
                           cell_clip=self.cell_clip, proj_clip=self.proj_clip)


@dataclass
class LMTrainingConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 1
    max_steps: int | None = None  # stop earlier, after this many batches in all
    batch_tokens: int = 2000  # tokens (with <S>, </S>) per batch
    bptt: int = 20  # truncate gradients every this many tokens; 0 = whole sentences
    optimizer: Literal["adam", "adagrad"] = "adam"  # bilm-tf: adagrad, lr 0.2
    lr: float = 0.001
    lr_schedule: Literal["constant", "linear"] = "constant"  # linear: decays to 0 at the run's last step
    init_from: str | None = None  # a biLM folder (options.json + bilm.pt) to start from instead of random weights
    softmax_warmup_steps: int = 0  # train only the (new) softmax for this many first steps, the biLM frozen
    clip_norm: float = 5.0  # global gradient-norm clip (bilm-tf 10.0); 0 disables
    eval_every: int = 1000  # steps between held-out evaluations (also at the end)
    checkpoint_every: int = 200  # steps between checkpoints (also at the end)
    seed: int = 1
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    progress: bool = True


@dataclass
class LMConfig:
    """A pretraining run."""

    data: LMDataConfig = field(default_factory=LMDataConfig)
    model: LMModelConfig = field(default_factory=LMModelConfig)
    training: LMTrainingConfig = field(default_factory=LMTrainingConfig)
    output_dir: str = ""  # relative paths resolve against the config's folder


def load_lm_config(path: str | Path, overrides: Sequence[str] = ()) -> LMConfig:
    """Read a pretraining YAML config with ``key=value`` overrides; every problem is reported at once."""
    path = Path(path)
    errors: list[str] = []
    config = _build(LMConfig, read_yaml(path), prefix="", origin=str(path), errors=errors)
    cli_values = parse_overrides(overrides)
    for key, value in cli_values.items():
        _apply_override(config, key, value, errors)
    for section, key, dotted, required in ((config.data, "train", "data.train", True),
                                           (config, "output_dir", "output_dir", True),
                                           (config.training, "init_from", "training.init_from", False)):
        if getattr(section, key):
            setattr(section, key, _resolve(getattr(section, key), Path.cwd() if dotted in cli_values else path.parent))
        elif required:
            errors.append(f"{path}: {dotted}: required")
    checks = [
        (config.training.epochs >= 1, "training.epochs", "expected an integer >= 1"),
        (config.training.batch_tokens >= 1, "training.batch_tokens", "expected an integer >= 1"),
        (config.training.bptt >= 0, "training.bptt", "expected an integer >= 0"),
        (config.training.lr > 0, "training.lr", "expected a number > 0"),
        (config.training.softmax_warmup_steps >= 0, "training.softmax_warmup_steps", "expected an integer >= 0"),
        (config.data.heldout_sentences >= 1, "data.heldout_sentences", "expected an integer >= 1"),
        (config.data.min_count >= 1, "data.min_count", "expected an integer >= 1"),
        (0 <= config.model.dropout < 1, "model.dropout", "expected a probability in [0, 1)"),
        (0 < config.model.projection_dim < config.model.lstm_dim, "model.projection_dim",
         f"expected an integer from 1 to model.lstm_dim - 1 = {config.model.lstm_dim - 1}, "
         f"got {config.model.projection_dim}"),
        (bool(config.model.filters) and all(len(f) == 2 and f[0] >= 1 and f[1] >= 1 for f in config.model.filters),
         "model.filters", "expected [width, count] pairs of positive integers"),
        (all(a < b for a, b in zip(config.model.softmax_cutoffs, config.model.softmax_cutoffs[1:]))
         and bool(config.model.softmax_cutoffs) and config.model.softmax_cutoffs[0] > 0,
         "model.softmax_cutoffs", "expected increasing positive integers"),
    ]
    errors += [f"{path}: {key}: {message}" for ok, key, message in checks if not ok]
    if errors:
        raise ConfigError("; ".join(errors))
    return config


# ---------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Corpus:
    """Sentences as word-type ids, with the character ids and softmax target id of every type."""

    sentences: list[np.ndarray]  # type ids per sentence
    type_chars: torch.Tensor  # (types, 50) char ids; types 0 and 1 are <S> and </S>
    type_targets: torch.Tensor  # (types,) softmax vocabulary id (<UNK> for rare words)


def read_sentences(path: Path, format: str = "text") -> list[list[str]]:
    """One tokenised sentence per non-empty line, or the sentences of a CoNLL file (tokens in column one; tags,
    if any, are not used)."""
    if not path.is_file():
        raise DataError(f"{path}: training text not found")
    if format == "conll":
        return [sentence.tokens for sentence in read_conll(path, tag_column=None).sentences]
    sentences = []
    with path.open(encoding="utf-8") as lines:
        try:
            for line in lines:
                tokens = line.split()
                if tokens:
                    sentences.append(tokens)
        except UnicodeDecodeError as error:
            raise DataError(f"{location(path, len(sentences) + 1)}: not valid UTF-8 ({error.reason})") from None
    return sentences


def build_vocab(sentences: Sequence[Sequence[str]], min_count: int, max_vocab: int | None) -> list[str]:
    """``<S>``, ``</S>``, ``<UNK>``, then words seen at least ``min_count`` times, most frequent first."""
    counts = Counter(token for tokens in sentences for token in tokens)
    for special in (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN):
        counts.pop(special, None)
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return [BOS_TOKEN, EOS_TOKEN, UNK_TOKEN] + words[:max_vocab]


def index_corpus(sentences: Sequence[Sequence[str]], vocab: Sequence[str]) -> Corpus:
    """Map words to type ids, and types to character ids and softmax targets."""
    types = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    ids = [np.array([types.setdefault(t, len(types)) for t in tokens], dtype=np.int64) for tokens in sentences]
    word_ids = {w: i for i, w in enumerate(vocab)}
    unk = word_ids[UNK_TOKEN]
    type_chars = torch.tensor([word_to_char_ids(t) for t in types], dtype=torch.long)
    type_targets = torch.tensor([word_ids.get(t, unk) for t in types], dtype=torch.long)
    return Corpus(ids, type_chars, type_targets)


def make_batches(lengths: np.ndarray, batch_tokens: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Sentence indices grouped by length, at most ``batch_tokens`` padded tokens each (one sentence at least).

    With ``rng``, sentences of equal length are shuffled and the batch order is random.
    """
    jitter = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * (lengths[order[end]] + 2) <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


# ---------------------------------------------------------------------------------------------------------------
# Model


class BiLanguageModel(nn.Module):
    """``BiLM`` plus the shared adaptive softmax; ``forward`` returns per-direction summed NLL and counts."""

    def __init__(self, config: LMModelConfig, vocab_size: int) -> None:
        super().__init__()
        cutoffs = config.softmax_cutoffs
        if cutoffs[-1] >= vocab_size - 1:
            raise ConfigError(f"model.softmax_cutoffs: expected values below the vocabulary size - 1 = "
                              f"{vocab_size - 1}, got {cutoffs}")
        self.bilm = BiLM(config.bilm_options(), dropout=config.dropout)
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(config.projection_dim, vocab_size, cutoffs,
                                                     div_value=config.softmax_div_value)

    def forward(self, char_ids: torch.Tensor, targets: torch.Tensor, bptt: int) -> dict[str, torch.Tensor]:
        """``char_ids`` (batch, time, 50) of sentences sorted longest first; ``targets`` (batch, time + 2) the
        softmax ids of ``<S> w_1 .. w_n </S>``. Returns summed NLL and target counts per direction."""
        ids, mask = add_sentence_boundaries(char_ids)  # (batch, time + 2, 50), (batch, time + 2)
        lengths = mask.sum(-1)  # (batch,), non-increasing
        tokens = self.bilm.token_encoder(ids, mask)  # (batch, time + 2, P)
        result = {}
        for direction, inputs, labels in (
            ("forward", tokens, targets),
            ("backward", reverse_padded(tokens, lengths), reverse_padded(targets, lengths)),
        ):
            top = self._run_windows(direction, inputs, mask, lengths, bptt)  # (batch, time + 2, P)
            predict = mask[:, 1:]  # position t predicts t + 1
            hidden = F.dropout(top[:, :-1][predict], self.bilm.dropout, self.training)  # (targets, P)
            nll = -self.softmax(hidden, labels[:, 1:][predict]).output.sum()
            result[direction] = nll
            result[f"{direction}_count"] = predict.sum()
        return result

    def _run_windows(self, direction: str, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
                     bptt: int) -> torch.Tensor:
        """Top-layer output of one stack over ``x`` (batch, time, P), detaching states every ``bptt`` steps.

        Rows are sorted by length (longest first), so the rows still running in a window are a prefix.
        """
        time = x.size(1)
        step = bptt or time
        outputs, states = [], None
        for start in range(0, time, step):
            rows = int((lengths > start).sum())
            if states is not None:
                states = [(h[:, :rows].detach(), c[:, :rows].detach()) for h, c in states]
            layers, states = self.bilm.run_stack(direction, x[:rows, start : start + step],
                                                 mask[:rows, start : start + step], states)
            outputs.append(F.pad(layers[-1], (0, 0, 0, 0, 0, x.size(0) - rows)))  # (batch, window, P)
        return torch.cat(outputs, dim=1)


def _batch_tensors(corpus: Corpus, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Char ids (batch, time, 50) and targets (batch, time + 2) of sentences ``indices``, longest first."""
    sentences = sorted((corpus.sentences[i] for i in indices), key=len, reverse=True)
    lengths = torch.tensor([len(s) for s in sentences])  # (batch,)
    types = torch.zeros(len(sentences), int(lengths[0]), dtype=torch.long)  # (batch, time)
    for row, sentence in enumerate(sentences):
        types[row, : len(sentence)] = torch.from_numpy(sentence)
    real = torch.arange(types.size(1)) < lengths[:, None]  # (batch, time)
    char_ids = corpus.type_chars[types] * real[..., None]  # (batch, time, 50); zero rows = padding
    targets = torch.zeros(len(sentences), types.size(1) + 2, dtype=torch.long)  # <S> = 0 at position 0
    targets[:, 1:-1] = corpus.type_targets[types]
    targets[torch.arange(len(sentences)), lengths + 1] = VOCAB_EOS  # positions after </S> are never read
    return char_ids, targets


# ---------------------------------------------------------------------------------------------------------------
# Training


def pretrain_lm(config: str | Path | LMConfig, overrides: Sequence[str] = (), resume: bool = False) -> dict[str, Any]:
    """Train (or with ``resume``, continue) a biLM; returns the final held-out metrics."""
    if not isinstance(config, LMConfig):
        config = load_lm_config(config, overrides)
    train_cfg = config.training
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    output = Path(config.output_dir)
    checkpoint_path = output / CHECKPOINT_FILE
    if resume and not checkpoint_path.is_file():
        raise NerError(f"{checkpoint_path}: no checkpoint to resume from")
    if not resume and checkpoint_path.is_file():
        raise NerError(f"{output}: already holds a pretraining run; pass --resume or choose another output_dir")
    output.mkdir(parents=True, exist_ok=True)

    sentences = read_sentences(Path(config.data.train), config.data.format)
    if len(sentences) <= config.data.heldout_sentences:
        raise ConfigError(f"data.heldout_sentences: expected fewer than the {len(sentences)} sentences of "
                          f"{config.data.train}, got {config.data.heldout_sentences}")
    split = np.random.default_rng(train_cfg.seed).permutation(len(sentences))
    heldout_set = set(split[: config.data.heldout_sentences].tolist())
    train_sentences = [s for i, s in enumerate(sentences) if i not in heldout_set]
    heldout_sentences = [s for i, s in enumerate(sentences) if i in heldout_set]
    vocab = build_vocab(train_sentences, config.data.min_count, config.data.max_vocab)
    train_corpus = index_corpus(train_sentences, vocab)
    heldout_corpus = index_corpus(heldout_sentences, vocab)
    train_lengths = np.array([len(s) for s in train_corpus.sentences])

    torch.manual_seed(train_cfg.seed)
    model = BiLanguageModel(config.model, len(vocab))
    if train_cfg.init_from and not resume:
        _init_bilm(model.bilm, Path(train_cfg.init_from), config.model.bilm_options())
    optimizer = _optimizer(model, train_cfg)
    # tokens: forward-LM targets (words + </S>); train_seconds: time in training steps (no evaluation, no I/O)
    state = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "train_seconds": 0.0, "history": []}
    if resume:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if checkpoint["config"]["model"] != dataclasses.asdict(config.model) or checkpoint["vocab"] != vocab:
            raise NerError(f"{checkpoint_path}: the checkpoint was trained with a different model section or "
                           f"vocabulary than {config.data.train} and this config give")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        state = checkpoint["state"]
    else:
        write_text_atomic(output / "vocab.txt", "\n".join(vocab) + "\n")
        _write_yaml(output / "config.yaml", dataclasses.asdict(config))

    def save() -> None:
        _save_checkpoint(checkpoint_path, model, optimizer, config, vocab, state)
        model.bilm.save(output)

    steps_per_epoch = len(make_batches(train_lengths, train_cfg.batch_tokens, None))
    total_steps = steps_per_epoch * train_cfg.epochs
    if train_cfg.max_steps is not None:
        total_steps = min(total_steps, train_cfg.max_steps)
    bar = tqdm(total=total_steps, initial=state["step"], unit="step", disable=not train_cfg.progress,
               desc="pretrain-lm", dynamic_ncols=True)
    session_tokens, session_seconds, recent_losses = state["tokens"], state["train_seconds"], []
    for epoch, batch_index, indices in _schedule(train_lengths, train_cfg, state):
        if state["step"] >= total_steps:
            break
        step_start = time.perf_counter()
        model.train()
        model.bilm.requires_grad_(state["step"] >= train_cfg.softmax_warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = train_cfg.lr * _lr_factor(train_cfg, state["step"], total_steps)
        char_ids, targets = _batch_tensors(train_corpus, indices)
        losses = model(char_ids, targets, train_cfg.bptt)
        loss = 0.5 * (losses["forward"] / losses["forward_count"] + losses["backward"] / losses["backward_count"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train_cfg.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
        optimizer.step()
        state.update(step=state["step"] + 1, epoch=epoch, batch=batch_index + 1,
                     tokens=state["tokens"] + int(losses["forward_count"]),
                     train_seconds=state["train_seconds"] + time.perf_counter() - step_start)
        recent_losses.append(loss.item())
        train_loss = sum(recent_losses) / len(recent_losses)  # mean since the last evaluation
        tokens_per_s = (state["tokens"] - session_tokens) / (state["train_seconds"] - session_seconds)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
        last = state["step"] == total_steps
        if state["step"] % train_cfg.eval_every == 0 or last:
            metrics = evaluate_lm(model, heldout_corpus, train_cfg.batch_tokens)
            state["history"].append({"step": state["step"], "epoch": epoch, "tokens": state["tokens"],
                                     "train_loss": round(train_loss, 4),
                                     "train_seconds": round(state["train_seconds"], 1),
                                     "tokens_per_s": round(tokens_per_s, 1), **metrics})
            bar.write(json.dumps(state["history"][-1]))
            recent_losses = []
        if state["step"] % train_cfg.checkpoint_every == 0 or last:
            save()
            write_json_atomic(output / "metrics.json", {"history": state["history"],
                                                        "heldout_sentences": len(heldout_sentences),
                                                        "vocab_size": len(vocab)})
    bar.close()
    return state["history"][-1] if state["history"] else {}


def _schedule(lengths: np.ndarray, cfg: LMTrainingConfig,
              state: dict[str, Any]) -> Iterator[tuple[int, int, np.ndarray]]:
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
    lengths = np.array([len(s) for s in corpus.sentences])
    totals: Counter[str] = Counter()
    for indices in make_batches(lengths, batch_tokens, None):
        char_ids, targets = _batch_tensors(corpus, indices)
        for key, value in model(char_ids, targets, bptt=0).items():
            totals[key] += float(value)
    return {f"heldout_ppl_{d}": round(math.exp(totals[d] / totals[f"{d}_count"]), 3) for d in ("forward", "backward")}


def _init_bilm(bilm: BiLM, directory: Path, options: BiLMOptions) -> None:
    """Copy the weights of the biLM in ``directory`` into ``bilm``; its architecture must be the config's."""
    start = BiLM.load(directory)
    if start.options != options:
        raise ConfigError(f"training.init_from: {directory} holds a biLM of another architecture than the model "
                          f"section ({start.options} against {options})")
    bilm.load_state_dict(start.state_dict())


def _lr_factor(cfg: LMTrainingConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` (0-based) of a run of ``total_steps``."""
    if cfg.lr_schedule == "linear":
        return max(0.0, 1.0 - step / total_steps)
    return 1.0


def _optimizer(model: nn.Module, cfg: LMTrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=cfg.lr, initial_accumulator_value=1.0)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: LMConfig,
                     vocab: list[str], state: dict[str, Any]) -> None:
    """Everything ``--resume`` needs, in one ``weights_only``-loadable file, written atomically."""
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                  "config": dataclasses.asdict(config), "vocab": vocab, "state": state}
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
