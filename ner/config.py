"""Typed run configuration: YAML file + ``key=value`` overrides -> checked dataclasses.

A config has four sections, ``data``, ``model``, ``training`` and ``output``; every knob has a default here, so a
YAML file names only what it changes. Loading collects every problem (unknown key, wrong type, bad choice) and
reports them together, each naming the file and the dotted key. Relative paths in a file resolve against that
file's folder; relative paths given on the command line resolve against the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ner.errors import ConfigError

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
    pretrained: str | None = _path()  # GloVe / word2vec text file: "word v1 v2 ..." per line
    freeze: bool = False


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
class ModelConfig:
    """Embedder -> BiLSTM -> linear emissions -> CRF."""

    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    char_cnn: CharCNNConfig = field(default_factory=CharCNNConfig)
    lstm: LstmConfig = field(default_factory=LstmConfig)
    elmo: ElmoConfig = field(default_factory=ElmoConfig)
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
    average: float = 0.0  # decay of an exponential moving average of the weights, used for dev and the saved model; 0 disables
    seed: int = 1
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
    _check_values(config, str(path), errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def config_from_dict(raw: dict[str, Any], base_dir: Path, origin: str) -> Config:
    """Build a checked Config from an already-parsed mapping (e.g. the resolved config of a saved run)."""
    errors: list[str] = []
    config = _build(Config, raw, prefix="", origin=origin, errors=errors)
    _resolve_paths(config, base_dir, overridden=set())
    _check_values(config, origin, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping with errors that name the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {error.start}); expected a YAML text file") from None
    try:
        raw = yaml.safe_load(text)
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
        errors.append(f"command line: {key} is a section; set one of its keys, e.g. {key}.{next(iter(_field_names(getattr(target, leaf))))}=...")
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
                setattr(section, f.name, _resolve(value, Path.cwd() if key in overridden else base_dir))

    visit(config, "")


def _check_values(config: Config, origin: str, errors: list[str]) -> None:
    """Range checks that types alone cannot express."""
    checks = [
        (config.version == CONFIG_VERSION, "version",
         f"config version {config.version} is not supported by this ner (expected {CONFIG_VERSION})"),
        (config.training.epochs >= 1, "training.epochs", "expected an integer >= 1"),
        (config.training.batch_size >= 1, "training.batch_size", "expected an integer >= 1"),
        (config.training.lr > 0, "training.lr", "expected a number > 0"),
        (0 <= config.training.average < 1, "training.average", "expected a decay in [0, 1) (0 disables)"),
        (config.model.lstm.hidden_size >= 1, "model.lstm.hidden_size", "expected an integer >= 1"),
        (config.model.lstm.num_layers >= 1, "model.lstm.num_layers", "expected an integer >= 1"),
        (config.model.embeddings.dim >= 1, "model.embeddings.dim", "expected an integer >= 1"),
        (0 <= config.model.dropout < 1, "model.dropout", "expected a probability in [0, 1)"),
        (0 <= config.model.word_dropout < 1, "model.word_dropout", "expected a probability in [0, 1)"),
        (0 <= config.model.singleton_unk <= 1, "model.singleton_unk", "expected a probability in [0, 1]"),
        (all(len(f) == 2 and f[0] >= 1 and f[1] >= 1 for f in config.model.char_cnn.filters),
         "model.char_cnn.filters", "expected [width, count] pairs of positive integers"),
        (config.data.source != "hf" or config.data.hf_dataset is not None, "data.hf_dataset",
         "required when data.source is hf"),
        (bool(config.model.elmo.options_file) == bool(config.model.elmo.weights_file), "model.elmo",
         "options_file and weights_file go together"),
    ]
    for ok, key, message in checks:
        if not ok:
            errors.append(f"{origin}: {key}: {message}")


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


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
    tmp.replace(path)
