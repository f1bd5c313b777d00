"""Typed configs from YAML: dataclasses filled from a YAML mapping plus ``key=value`` overrides, checked.

The schema is the dataclasses themselves (the run config's in ``ner.config``, pretraining's in
``ner.elmo.pretrain_config``): a nested dataclass is a section, a field's type hint says what it takes (ints are
accepted for floats; ``Literal`` choices, unions, lists), a ``path_field`` holds a path. Every problem (unknown key,
with the closest known one suggested; wrong type; a section given a value) is collected with where it came from,
the file or the command line, and the dotted key, so a config reports all of its errors at once.
``int_range``/``number_range`` describe the valid ranges that ``ner.config.RANGES`` lists.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from ner.errors import ConfigError

T = TypeVar("T")


def path_field(default: str | None = None) -> Any:
    """A dataclass field holding a filesystem path (resolved against the config file's folder)."""
    return field(default=default, metadata={"path": True})


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
        raise ConfigError(
            f"{path}: expected a mapping of sections (data, model, training, output), got {type(raw).__name__}"
        )
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


def load_dataclass(cls: type[T], path: Path, overrides: typing.Sequence[str], errors: list[str]) -> tuple[T, set[str]]:
    """Any config dataclass ``cls`` (e.g. pretraining's, ``ner/elmo/pretrain_config.py``) from a YAML file plus
    ``key=value`` overrides, with the checks of ``load_config``: unknown keys and wrong types are appended to
    ``errors``. Also returns the keys set on the command line (their relative paths resolve against the cwd)."""
    raw = read_yaml(path)
    cli_values = parse_overrides(overrides)
    config = build_dataclass(cls, raw, prefix="", origin=str(path), errors=errors)
    for key, value in cli_values.items():
        apply_override(config, key, value, errors)
    return config, set(cli_values)


def build_dataclass(cls: type, raw: Any, prefix: str, origin: str, errors: list[str]) -> Any:
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
            values[key] = build_dataclass(hint, value, f"{dotted}.", origin, errors)
            continue
        checked = _check_type(value, hint, dotted, origin, errors)
        if checked is not _INVALID:
            values[key] = checked
    return cls(**values)


def apply_override(config: Any, key: str, value: Any, errors: list[str]) -> None:
    """Set dotted ``key`` on ``config``; relative paths resolve against the working directory."""
    *parents, leaf = key.split(".")
    target: Any = config
    for i, name in enumerate(parents):
        child = getattr(target, name, None) if name in _field_names(target) else None
        if not dataclasses.is_dataclass(child):
            errors.append(
                f"command line: unknown key {key!r}{_suggest(name, _field_names(target))}"
                if child is None
                else f"command line: {'.'.join(parents[: i + 1])} is not a section"
            )
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


def int_range(low: int, high: int | None = None) -> tuple[Callable[[Any], bool], str]:
    """An integer range (ints only: the types are checked before)."""
    return (
        (lambda v: low <= v and (high is None or v <= high)),
        f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]",
    )


def number_range(
    low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> tuple[Callable[[Any], bool], str]:
    """A finite number range; ``low_open``/``high_open`` leave the bound out."""

    def inside(v: float) -> bool:
        return (
            math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (high is None or (v < high if high_open else v <= high))
        )

    if high is None:
        return inside, f"a number {'>' if low_open else '>='} {low:g}"
    return inside, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


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


def short_repr(value: Any) -> str:
    """``repr(value)``, cut short (at most about 80 characters, however deeply the value nests)."""
    return _REPR.repr(value)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {short_repr(value)}" if value is not None else "null"


def _field_names(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}


def _suggest(key: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_path(value: str, base_dir: Path) -> str:
    """``value`` as an absolute path (``~`` expanded), relative paths taken from ``base_dir``."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
