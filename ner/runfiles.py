"""A run directory's files read as untrusted input (``Tagger.load``): each is checked for its type, shape and
agreement with the others before anything is built from it.

A damaged or hostile run directory is then a one-line ``NerError`` naming the file (and the tensor or key), and
it never costs more memory or time than its files' size: the weights are read first, and the model that
``config.yaml``, ``model.json`` and the vocabularies describe is compared with them shape by shape (built on
PyTorch's ``meta`` device, which allocates nothing) before the real one is built. What a run directory is trusted
with is said in the README ("A run directory").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ner.data.schemes import SCHEMES
from ner.errors import NerError, location


def require_files(run_dir: Path, names: tuple[str, ...]) -> None:
    """Each of ``names`` is a regular file in ``run_dir``."""
    for name in names:
        path = run_dir / name
        if path.is_dir():
            raise NerError(f"{path}: is a folder, expected a file (a run directory written by `ner train`)")
        if not path.is_file():
            raise NerError(f"{run_dir}: missing {name} (expected a run directory written by `ner train`)")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; errors name the file and line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise NerError(
            f"{location(path, getattr(error, 'lineno', None))}: not a JSON file written by `ner train`: {error}"
        ) from None
    except OSError as error:
        raise NerError(f"{path}: cannot read: {error.strerror}") from None
    if not isinstance(data, dict):
        raise NerError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_meta(path: Path, model_format: int, model_scheme: str) -> dict[str, Any]:
    """``model.json``: its format, the schemes of the training files and of the model (the config's), and the
    biLM's options (a mapping, or null)."""
    meta = read_json_object(path)
    if meta.get("format") != model_format:
        raise NerError(
            f"{path}: model format {meta.get('format')!r} is not supported by this ner (expected "
            f"{model_format}); retrain the model with this version"
        )
    if meta.get("data_scheme") not in SCHEMES:
        raise NerError(f"{path}: data_scheme: expected one of {', '.join(SCHEMES)}, got {meta.get('data_scheme')!r}")
    if meta.get("model_scheme") != model_scheme:
        raise NerError(
            f"{path}: model_scheme: expected {model_scheme!r} (model.scheme of config.yaml), got "
            f"{meta.get('model_scheme')!r}"
        )
    if not isinstance(meta.get("elmo_options"), (dict, type(None))):
        raise NerError(f"{path}: elmo_options: expected an object or null, got {type(meta['elmo_options']).__name__}")
    return meta


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read by PyTorch's safe unpickler (no code runs): names to tensors, every
    float finite, together no larger than the file (so no view claims more numbers than the file holds)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an untrusted file: torch and pickle raise many kinds on damaged input
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NerError(f"{path}: not a weights file written by `ner train` ({reason})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise NerError(f"{path}: expected a state dict (tensor names to tensors), got {_describe(state)}")
    size = path.stat().st_size
    if sum(tensor.numel() * tensor.element_size() for tensor in state.values()) > size:
        raise NerError(f"{path}: its tensors claim more numbers than the file holds ({size} bytes)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NerError(f"{path}: tensor {name!r} holds NaN or infinity")
    return state


def check_plausible(path: Path, state: dict[str, torch.Tensor], num_tags: int, modules: int) -> None:
    """Cheap bounds before a model is even described: the CRF's (K, K) transitions and one tensor per layer must
    fit in the weights, so describing the model costs no more than the file's size."""
    numbers = sum(tensor.numel() for tensor in state.values())
    if num_tags * num_tags > numbers or modules > len(state):
        raise NerError(
            f"{path}: holds {len(state)} tensors of {numbers} numbers in all, too few for the model "
            f"that config.yaml, model.json and tags.json describe ({num_tags} tags, {modules} layers)"
        )


_INITIALISATIONS = {"normal_", "uniform_", "fill_", "zero_", "copy_", "erfinv_", "mul_", "add_", "clamp_"}
"""The in-place operations that ``torch.nn.init`` and module constructors apply to new parameters."""


class _SkipInitialisation(TorchFunctionMode):
    """Skips the initialisation of tensors on the meta device, which holds no values to change (and would import
    PyTorch's Python meta kernels, about 70 MB, to do nothing)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if getattr(func, "__name__", None) in _INITIALISATIONS and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Modules built inside the block have shapes but no storage (PyTorch's meta device): describing a model,
    however large, allocates nothing."""
    with torch.device("meta"), _SkipInitialisation():
        yield


def check_fits(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """The weights have exactly the tensors of ``expected`` (names to shapes), each of its shape."""
    described = "the model described by config.yaml, model.json and the vocabularies"
    for name, shape in expected.items():
        if name not in state:
            raise NerError(f"{path}: weights do not fit {described}: tensor {name!r} is missing")
        if state[name].shape != shape:
            raise NerError(
                f"{path}: weights do not fit {described}: tensor {name!r} has shape "
                f"{tuple(state[name].shape)}, expected {tuple(shape)}"
            )
    for name in state:
        if name not in expected:
            raise NerError(f"{path}: weights do not fit {described}: tensor {name!r} has no place in it")


def check_same(path: Path, state: dict[str, torch.Tensor], computed: dict[str, torch.Tensor], source: str) -> None:
    """Tensors that ``source`` determines (e.g. the CRF's constraints, from the tags) equal the saved ones."""
    for name, tensor in computed.items():
        if not torch.equal(state[name].to(tensor.dtype), tensor):
            raise NerError(f"{path}: tensor {name!r} does not match {source} (a file of another run?)")


def _describe(value: object) -> str:
    if isinstance(value, dict):
        odd = next(
            (
                f"{k!r}: {type(v).__name__}"
                for k, v in value.items()
                if not isinstance(k, str) or not isinstance(v, torch.Tensor)
            ),
            "",
        )
        return f"a dict holding {odd}"
    return type(value).__name__
