"""The ``ner`` command: bad input gives one line naming the file (and line) or key, exit 2, no output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_training import FAST

from ner.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "data" / "sample"
GOOD = "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n"


def write_config(tmp_path: Path, train: str, dev: str | None = None, extra: str = "") -> Path:
    (tmp_path / "train.txt").write_bytes(train.encode("utf-8") if isinstance(train, str) else train)
    lines = ["data:", "  train: train.txt"]
    if dev is not None:
        (tmp_path / "dev.txt").write_text(dev, encoding="utf-8")
        lines.append("  dev: dev.txt")
    lines += ["output:", "  dir: out", extra]
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert err == f"error: {message}\n"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "tag", "pretrain-lm"):
        assert command in out


@pytest.mark.parametrize(
    "content, where, expected",
    [
        (b"", "", "empty file"),
        (b"EU NNP I-ORG\nrejects VBZ\n", ":2", "expected 3 columns (as on line 1), got 2"),
        (b"EU NNP X-ORG\n", ":1", "ill-formed tag 'X-ORG'"),
        (b"EU NNP B-\n", ":1", "ill-formed tag 'B-'"),
        (b"EU NNP I-ORG\nr\xe9jects VBZ O\n", ":2", "invalid UTF-8"),
        (b"\x7fELF\x02\x01\x00\x00\x00", ":1", "looks like a binary file"),
    ],
)
def test_bad_training_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, where: str, expected: str
) -> None:
    """Each message is pinned exactly in test_conll.py; here: the CLI shows it as one line and writes nothing."""
    config = write_config(tmp_path, content)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / 'train.txt'}{where}: ") and expected in err, err
    assert not (tmp_path / "out").exists()


def test_missing_training_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, GOOD)
    (tmp_path / "train.txt").unlink()
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'train.txt'}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_dev_tag_unseen_in_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, GOOD, dev="Paris NNP B-NP I-LOC\n")
    fails_with(
        capsys,
        ["train", str(config)],
        f"{tmp_path / 'dev.txt'}:1: tag 'I-LOC' has entity type 'LOC', unseen in training: expected one "
        "of the training types (ORG, PER); set data.unseen_tags: O to map unseen types to O",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ("training:\n  epochs: x", "{config}: training.epochs: expected an integer, got str 'x'"),
        ("training:\n  epochz: 3", "{config}: unknown key 'training.epochz' (did you mean 'epochs'?)"),
        ("training: [", "{config}:6: YAML syntax error: expected the node content, but found '<stream end>'"),
    ],
)
def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str) -> None:
    config = write_config(tmp_path, GOOD, extra=extra)
    fails_with(capsys, ["train", str(config)], message.format(config=config))


def test_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, GOOD)
    fails_with(
        capsys,
        ["train", str(config), "training.epochs=three"],
        "command line: training.epochs: expected an integer, got str 'three'",
    )


def test_overrides_may_follow_an_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, GOOD)
    lm_config = REPO / "configs" / "lm_reuters.yaml"
    fails_with(
        capsys,
        ["pretrain-lm", str(lm_config), "--resume", "training.epochz=1"],
        "command line: unknown key 'training.epochz' (did you mean 'epochs'?)",
    )
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(config), "--resume", str(tmp_path / "out"), "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(REPO / "configs" / "sample.yaml"), *FAST, "training.epochs=2", f"output.dir={out}"]) == 0
    return out


def test_evaluate_writes_metrics_and_predictions(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = tmp_path / "pred.conll"
    assert main(["evaluate", str(run_dir), str(SAMPLE_DATA / "dev.txt"), "--output", str(predictions)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run_dir / "evaluate" / "dev" / "metrics.json").read_text())
    [micro] = [line.split() for line in out.splitlines() if line.startswith("micro ")]  # type support | P R F1
    assert micro[-1] == f"{100 * metrics['default']['micro']['f1']:.2f}"
    # Evaluating the dev file again reproduces the dev score recorded by training for the best epoch.
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["default"] == trained["dev"]["default"]
    rows = [line.split() for line in predictions.read_text().splitlines() if line]
    assert rows and all(len(row) == 3 for row in rows)


def test_evaluate_file_with_tags_the_model_never_saw(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "gold.txt"
    data.write_text("Acme NNP B-NP I-ORG\nCorp NNP I-NP I-PRODUCT\n")
    fails_with(
        capsys,
        ["evaluate", str(run_dir), str(data)],
        f"{data}:2: tag 'I-PRODUCT' has entity type 'PRODUCT', unseen in training: expected one of the "
        "training types (LOC, MISC, ORG, PER); set data.unseen_tags: O to map unseen types to O",
    )


def test_evaluate_run_directory_without_weights(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.pt").unlink()
    fails_with(
        capsys,
        ["evaluate", str(broken), str(SAMPLE_DATA / "dev.txt")],
        f"{broken}: missing model.pt (expected a run directory written by `ner train`)",
    )


def test_evaluate_run_from_an_incompatible_version(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    config = old / "config.yaml"
    config.write_text(config.read_text().replace("version: 1", "version: 0"))
    fails_with(
        capsys,
        ["evaluate", str(old), str(SAMPLE_DATA / "dev.txt")],
        f"{config}: version: config version 0 is not supported by this ner (expected 1) "
        "(the run was written by an incompatible version of ner)",
    )


def test_train_py_is_ner_train(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'missing.yaml'}: config file not found\n"


def test_a_file_the_system_refuses_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Permissions, a full disk: an OSError naming a file is one line with exit status 2 too."""
    import ner.cli

    def refuse(args: object) -> None:
        raise PermissionError(13, "Permission denied", "/srv/out.jsonl")

    monkeypatch.setattr(ner.cli, "_tag", refuse)
    fails_with(capsys, ["tag", "RUN", "in.txt"], "/srv/out.jsonl: Permission denied")
