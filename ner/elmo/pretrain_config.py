"""Pretraining's config (``ner pretrain-lm CONFIG``): data, biLM and optimisation sections, read through
the run config's loader, ``ner.yaml_config`` (unknown keys, wrong types and every problem reported at once, file
or command line).

``training.batch_tokens`` is the global batch: under ``torchrun`` each process takes part of every batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ner.elmo.bilm import BiLMOptions
from ner.errors import ConfigError
from ner.yaml_config import load_dataclass, resolve_path


@dataclass
class LMDataConfig:
    """The unlabelled text."""

    train: str = ""  # relative paths resolve against the config's folder
    format: Literal["text", "conll"] = "text"  # text: one tokenised sentence per line; conll: first column
    heldout_sentences: int = 2000  # a seeded random sample kept out of training for perplexity
    min_count: int = 3  # rarer words are <UNK> as softmax targets (inputs are always their characters)
    # Keep at most this many of the most frequent words as softmax targets: for corpora far larger than Reuters,
    # where min_count alone leaves a vocabulary whose softmax dominates the step (bilm-tf: 793,471 words).
    max_vocab: int | None = None


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
    # Each adaptive-softmax tail cluster's projection is this many times narrower than the one before (torch's
    # AdaptiveLogSoftmaxWithLoss div_value): larger saves time and memory on big vocabularies, for perplexity.
    softmax_div_value: float = 4.0

    def bilm_options(self) -> BiLMOptions:
        return BiLMOptions(
            filters=[(w, n) for w, n in self.filters],
            char_dim=self.char_dim,
            highway_layers=self.highway_layers,
            activation=self.activation,
            projection_dim=self.projection_dim,
            lstm_dim=self.lstm_dim,
            num_layers=self.num_layers,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
        )


@dataclass
class LMTrainingConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 1
    max_steps: int | None = None  # stop earlier, after this many batches in all
    batch_tokens: int = 2000  # tokens (with <S>, </S>) per batch
    bptt: int = 20  # truncate gradients every this many tokens; 0 = whole sentences
    # adam (lr 0.001) trained our Reuters biLM; adagrad (lr 0.2) is bilm-tf's, for reproducing its recipe, and its
    # first steps are near linear in the gradient (tests/test_ddp.py compares 1 and 2 processes with it).
    optimizer: Literal["adam", "adagrad"] = "adam"
    lr: float = 0.001
    lr_schedule: Literal["constant", "linear"] = "constant"  # linear: decays to 0 at the run's last step
    init_from: str | None = None  # a biLM folder (options.json + bilm.pt) to start from instead of random weights
    softmax_warmup_steps: int = 0  # train only the (new) softmax for this many first steps, the biLM frozen
    clip_norm: float = 5.0  # global gradient-norm clip (bilm-tf 10.0); 0 disables
    eval_every: int = 1000  # steps between held-out evaluations (also at the end)
    checkpoint_every: int = 200  # steps between checkpoints (also at the end)
    seed: int = 1
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when there is one (under torchrun: LOCAL_RANK's)
    precision: Literal["float32", "bf16"] = "float32"  # bf16: autocast in training steps
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
    config, cli_keys = load_dataclass(LMConfig, path, overrides, errors)
    for section, key, dotted, required in (
        (config.data, "train", "data.train", True),
        (config, "output_dir", "output_dir", True),
        (config.training, "init_from", "training.init_from", False),
    ):
        if getattr(section, key):
            base = Path.cwd() if dotted in cli_keys else path.parent
            setattr(section, key, resolve_path(getattr(section, key), base))
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
        (
            0 < config.model.projection_dim < config.model.lstm_dim,
            "model.projection_dim",
            f"expected an integer from 1 to model.lstm_dim - 1 = {config.model.lstm_dim - 1}, "
            f"got {config.model.projection_dim}",
        ),
        (
            bool(config.model.filters) and all(len(f) == 2 and f[0] >= 1 and f[1] >= 1 for f in config.model.filters),
            "model.filters",
            "expected [width, count] pairs of positive integers",
        ),
        (
            all(a < b for a, b in zip(config.model.softmax_cutoffs, config.model.softmax_cutoffs[1:]))
            and bool(config.model.softmax_cutoffs)
            and config.model.softmax_cutoffs[0] > 0,
            "model.softmax_cutoffs",
            "expected increasing positive integers",
        ),
    ]
    errors += [f"{path}: {key}: {message}" for ok, key, message in checks if not ok]
    if errors:
        raise ConfigError("; ".join(errors))
    return config
