"""The shape of the package: imports go one way, and every module is short enough to hold in one's head.

The layers, lowest first: what an upper layer may import, a lower one never does (issue 18):
cli -> training / evaluation / tagging / serve / export -> model -> nn / elmo -> data, config -> errors, fileio.
Every ``import`` counts, inside functions and ``TYPE_CHECKING`` blocks too, so a circle cannot hide in one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ner"
MAX_LINES = 400

# Each module's layer: the longest prefix listed decides ("ner.data" covers ner.data.conll). The package root
# ``ner`` holds ``__version__`` (anything may read it) and imports Tagger lazily for ``from ner import Tagger``:
# its own imports are left out of the checks.
# fmt: off
LAYERS = {
    "ner.errors": 0, "ner.log": 0, "ner.fileio": 0, "ner.memory": 0, "ner.yaml_config": 0,
    "ner.data": 1, "ner.config": 1, "ner.web": 1, "ner.long_lines": 1, "ner.scoring": 1, "ner.rundir": 1,
    "ner.distributed": 1, "ner.optim": 1,
    "ner.nn": 2, "ner.elmo": 2, "ner.propagation": 2, "ner.runfiles": 2, "ner.entities": 2, "ner.formats": 2,
    "ner.input_cache": 2,
    "ner.network": 3, "ner.encoding": 3, "ner.tagger_files": 3, "ner.model": 3, "ner.runtime": 3,
    "ner.checkpoints": 3, "ner.tagger_build": 3,
    "ner.training": 4, "ner.evaluation": 4, "ner.tagging": 4, "ner.serve": 4, "ner.export": 4, "ner.report": 4,
    "ner.seeds": 4, "ner.ray_tagging": 4,
    "ner.cli": 5, "ner": 0,
}
# fmt: on


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, list[str]]]:
    """The ner modules that module ``name`` imports, each with the names it takes from it."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "ner"]
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "ner"
        ):
            taken = [alias.name for alias in node.names]
            submodules = [f"{node.module}.{item}" for item in taken if f"{node.module}.{item}" in MODULES]
            found += [(module, []) for module in submodules]  # `from ner.nn import packing`
            if len(submodules) < len(taken):
                found.append((node.module, [item for item in taken if f"{node.module}.{item}" not in MODULES]))
    return found


def layer(name: str) -> int:
    prefix = max(
        (key for key in LAYERS if name == key or key != "ner" and name.startswith(key + ".")), key=len, default=None
    )
    if prefix is None:
        raise AssertionError(f"{name}: no layer in tests/test_layout.py's LAYERS: add it where it belongs")
    return LAYERS[prefix]


GRAPH = {name: sorted({module for module, _ in imports(name)} - {name}) for name in MODULES}


def test_every_module_has_a_layer_and_imports_none_above_its_own() -> None:
    upward = [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name in MODULES
        if name != "ner"
        for target in GRAPH[name]
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_no_circle_of_imports() -> None:
    """Depth-first search over the module graph (the package root, which imports the tagger lazily, left out)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in GRAPH[name]:
            if target == "ner":
                continue
            if state.get(target) == "open":
                return [*path[path.index(target) :], target] if target in path else [*path, target]
            if target not in state:
                circle = visit(target, [*path, target])
                if circle:
                    return circle
        state[name] = "done"
        return None

    for name in MODULES:
        if name not in state and name != "ner":
            circle = visit(name, [name])
            assert circle is None, " -> ".join(circle)


def test_no_module_takes_a_private_name_from_another() -> None:
    private = [
        f"{name} imports {taken} from {module}"
        for name in MODULES
        for module, names in imports(name)
        for taken in names
        if taken.startswith("_") and not taken.startswith("__") and module != name
    ]
    assert private == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short_and_says_what_it_holds(name: str) -> None:
    text = MODULES[name].read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{MODULES[name]}: over {MAX_LINES} lines: split it by its concerns"
    assert ast.get_docstring(ast.parse(text)), f"{MODULES[name]}: no module docstring saying what it holds"


def test_the_layers_follow_the_documented_direction() -> None:
    assert (
        layer("ner.cli")
        > layer("ner.training")
        == layer("ner.evaluation")
        == layer("ner.tagging")
        == layer("ner.serve.app")
        > layer("ner.model")
        > layer("ner.nn.crf")
        == layer("ner.elmo.bilm")
        > layer("ner.data.conll")
        == layer("ner.config")
        > layer("ner.errors")
        == layer("ner.fileio")
    )
