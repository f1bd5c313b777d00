"""Config loading: defaults, overrides, path resolution, and one exact message per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ner.config import RANGES, Config, config_from_dict, config_to_dict, load_config, save_config
from ner.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_bundled_config_loads() -> None:
    configs = sorted((REPO / "configs").glob("**/*.yaml"))
    tagger_configs = [p for p in configs if not p.name.startswith("lm_")]
    assert len(tagger_configs) >= 2
    for path in tagger_configs:
        config = load_config(path)
        assert config.data.train and Path(config.data.train).is_absolute(), path


def test_defaults_fill_every_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "training:\n  epochs: 3\n"))
    assert config.training.epochs == 3
    assert config.training.seed == Config().training.seed
    assert config.model.lstm.hidden_size == 200
    assert config.output.dir == str(Path.cwd() / "runs" / "run")


def test_required_keys_are_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "data:\n  train: a.txt\n")
    config = load_config(
        path,
        [
            "data.train=x/train.txt",
            "data.dev=dev.txt",
            "data.test=/abs/test.txt",
            "training.epochs=3",
            "training.seed=7",
            "output.dir=out",
            "model.lstm.hidden_size=64",
        ],
    )
    assert config.data.train == str(tmp_path / "x" / "train.txt")
    assert config.data.dev == str(tmp_path / "dev.txt")
    assert config.data.test == "/abs/test.txt"
    assert (config.training.epochs, config.training.seed, config.model.lstm.hidden_size) == (3, 7, 64)
    assert config.output.dir == str(tmp_path / "out")


def test_file_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(REPO)
    path = write(tmp_path / "configs", "data:\n  train: ../data/train.txt\noutput:\n  dir: ../runs/a\n")
    config = load_config(path)
    assert config.data.train == str(tmp_path / "data" / "train.txt")
    assert config.output.dir == str(tmp_path / "runs" / "a")


def test_hf_split_names_are_not_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  source: hf\n  hf_dataset: conll2003\n  train: train\n  dev: validation\n")
    config = load_config(path)
    assert (config.data.train, config.data.dev) == ("train", "validation")


def test_int_is_accepted_for_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "training:\n  lr: 1\n"))
    assert config.training.lr == 1.0 and isinstance(config.training.lr, float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  epochs: [1\n", "{path}:3: YAML syntax error: expected ',' or ']', but got '<stream end>'"),
        (
            "model:\n  lstm:\n    hiden_size: 3\n",
            "{path}: unknown key 'model.lstm.hiden_size' (did you mean 'hidden_size'?)",
        ),
        ("trainin:\n  epochs: 3\n", "{path}: unknown key 'trainin' (did you mean 'training'?)"),
        ("training:\n  epochs: three\n", "{path}: training.epochs: expected an integer, got str 'three'"),
        ("training:\n  lr: yes\n", "{path}: training.lr: expected a number, got bool True"),
        (
            "training:\n  optimizer: rmsprop\n",
            "{path}: training.optimizer: expected one of 'sgd', 'adam', got str 'rmsprop'",
        ),
        ("model: 3\n", "{path}: model: expected a mapping, got int 3"),
        ("- a\n- b\n", "{path}: expected a mapping of sections (data, model, training, output), got list"),
        ("training:\n  epochs: 0\n", "{path}: training.epochs: expected an integer >= 1, got 0"),
        ("version: 9\n", "{path}: version: config version 9 is not supported by this ner (expected 1)"),
        (
            "model:\n  elmo:\n    fine_tune: true\n    fine_tune_top: true\n",
            "{path}: model.elmo.fine_tune_top: trains the top layer only: leave it false when model.elmo.fine_tune "
            "trains the whole biLM",
        ),
    ],
)
def test_bad_config_message(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == message.format(path=path)


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  epochs: x\n  sed: 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, ["model.lstm.num_layers=two"])
    assert str(error.value) == (
        f"{path}: training.epochs: expected an integer, got str 'x'; "
        f"{path}: unknown key 'training.sed' (did you mean 'seed'?); "
        "command line: model.lstm.num_layers: expected an integer, got str 'two'"
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("--epochs=3", "override '--epochs=3': options are given as key=value, e.g. training.epochs=3"),
        ("training.epochs", "override 'training.epochs': expected key=value, e.g. training.epochs=3"),
        ("training.epoch=3", "command line: unknown key 'training.epoch' (did you mean 'epochs'?)"),
        ("model.lstm=3", "command line: model.lstm is a section; set one of its keys, e.g. model.lstm.hidden_size=..."),
        ("nothing.epochs=3", "command line: unknown key 'nothing.epochs'"),
    ],
)
def test_bad_override_message(tmp_path: Path, override: str, message: str) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as error:
        load_config(path, [override])
    assert str(error.value) == message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^.*nope.yaml: config file not found$"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model:\n  char_cnn:\n    filters: [[2, 5], [3, 7]]\n"), ["training.epochs=4"])
    save_config(config, tmp_path / "saved.yaml")
    raw = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    again = config_from_dict(raw, base_dir=Path("/elsewhere"), origin="saved.yaml")
    assert config_to_dict(again) == config_to_dict(config)


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.grad_clip=-1", "training.grad_clip: expected a number >= 0, got -1.0"),
        ("training.lr_decay=-0.5", "training.lr_decay: expected a number >= 0, got -0.5"),
        ("training.patience=-1", "training.patience: expected an integer >= 0, got -1"),
        ("training.momentum=-0.9", "training.momentum: expected a number in [0, 1), got -0.9"),
        ("training.weight_decay=-0.0001", "training.weight_decay: expected a number >= 0, got -0.0001"),
        ("training.threads=-2", "training.threads: expected an integer in [0, 1024], got -2"),
        (
            "training.seed=18446744073709551616",
            "training.seed: expected an integer in [0, 9223372036854775807], got 18446744073709551616",
        ),
        ("training.lr=.nan", "training.lr: expected a number > 0, got nan"),
        ("model.dropout=.inf", "model.dropout: expected a number in [0, 1), got inf"),
        ("model.lstm.hidden_size=-3", "model.lstm.hidden_size: expected an integer in [1, 65536], got -3"),
        ("model.embeddings.casing_dim=-1", "model.embeddings.casing_dim: expected an integer in [0, 65536], got -1"),
        (
            "model.char_cnn.filters=[[3, -1]]",
            "model.char_cnn.filters: expected at most 64 [width, count] pairs, "
            "width in [1, 64], count in [1, 65536], got [[3, -1]]",
        ),
        (
            "model.char_cnn.filters=[]",
            "model.char_cnn.filters: expected at least one [width, count] pair (or "
            "model.char_cnn.dim: 0, no character features)",
        ),
    ],
)
def test_out_of_range_values_blame_where_they_came_from(tmp_path: Path, override: str, message: str) -> None:
    """On the command line, the command line; in the file, the file (``key: value`` written there)."""
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, ""), [override])
    assert str(error.value) == f"command line: {message}"
    key, value = override.split("=")
    nested: dict = {}
    section = nested
    for name in key.split(".")[:-1]:
        section = section.setdefault(name, {})
    section[key.split(".")[-1]] = yaml.safe_load(value)
    path = write(tmp_path, yaml.safe_dump(nested))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {message}"


_VALUES = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.text(max_size=5)
    | st.lists(st.integers(-3, 2**65) | st.lists(st.integers(-3, 70)), max_size=4)
)


@settings(max_examples=50, deadline=None)
@given(key=st.sampled_from(sorted(RANGES)), value=_VALUES, on_command_line=st.booleans())
def test_fuzzed_values_load_in_range_or_are_refused_naming_the_key(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: object, on_command_line: bool
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    *sections, leaf = key.split(".")
    if on_command_line:
        path, overrides = (
            write(folder, ""),
            [f"{key}={yaml.safe_dump(value, default_flow_style=True)}".removesuffix("\n...\n").strip()],
        )
    else:
        nested: dict = {leaf: value}
        for name in reversed(sections):
            nested = {name: nested}
        path, overrides = write(folder, yaml.safe_dump(nested)), []
    origin = "command line" if on_command_line else str(path)
    try:
        config = load_config(path, overrides)
    except ConfigError as error:
        assert "\n" not in str(error)
        assert all(part.startswith(f"{origin}: ") and key.split(".")[0] in part for part in str(error).split("; "))
    else:
        loaded = config
        for name in key.split("."):
            loaded = getattr(loaded, name)
        inside, _ = RANGES[key]
        assert inside(loaded)
