"""Hostile and damaged run directories, outputs and runs (issue 16): each a one-line error with exit status 2, no
traceback, nothing written outside the run directory, no run clobbered, memory bounded by the files' size."""

from __future__ import annotations

import json
import os
import pickle
import re
import resource
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ner.checkpoints import CHECKPOINT_FILE, METRICS_FILE, METRICS_LOG
from ner.cli import main
from ner.config import load_config, save_config
from ner.data.conll import read_conll
from ner.errors import NerError
from ner.fileio import atomic_path, atomic_stream, run_lock, write_text_atomic
from ner.model import Tagger

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
DEV = REPO / "data" / "sample" / "dev.txt"
FAST = ["training.epochs=2", "model.lstm.hidden_size=24", "model.embeddings.dim=24", "output.progress=false"]
TEXT = "Maren Quist scored twice for Versk United.\n"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained sample run, written under umask 022."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    umask = os.umask(0o022)
    try:
        assert main(["train", str(SAMPLE), *FAST, f"output.dir={out}"]) == 0
    finally:
        os.umask(umask)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root``: size, modification time and contents (but a run directory's lock file, which
    ``ner train`` takes and releases before it refuses anything)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != ".lock":
            files[str(path)] = (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
    return files


def fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``ner ARGV``: exit status 2 and one line on standard error; returns the message after ``error: ``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err[len("error: ") : -1]


# ---------------------------------------------------------------------------------------------------------------
# Damaged run directories


def _json(name: str, data: object) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(json.dumps(data))


def _edit_json(name: str, edit: Callable[[dict], dict]) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(json.dumps(edit(json.loads((run / name).read_text()))))


def _truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[: int((run / name).stat().st_size * keep)])


def _truncate_at_line(name: str, keep: float) -> Callable[[Path], None]:
    """Cut at the first line end past ``keep`` of the file: where a cut inside a line falls depends on the length
    of the paths the run's config.yaml holds, so on where the repository was cloned."""

    def cut(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: data.index(b"\n", int(len(data) * keep)) + 1])

    return cut


def _folder(name: str) -> Callable[[Path], None]:
    def make(run: Path) -> None:
        (run / name).unlink()
        (run / name).mkdir()

    return make


def _weights(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda run: torch.save(edit(torch.load(run / "model.pt", weights_only=True)), run / "model.pt")


def _config(old: str, new: str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        text = (run / "config.yaml").read_text()
        assert old in text
        (run / "config.yaml").write_text(text.replace(old, new, 1))

    return edit


class _RunsCode:
    """Unpickling this would run ``touch PWNED``: the safe unpickler must refuse it."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch PWNED",))


def _nan(state: dict) -> dict:
    state["emissions.weight"][0, 0] = float("nan")
    return state


def _swap_tags(items: list[str]) -> list[str]:
    return [items[0], items[2], items[1], *items[3:]]


DAMAGED = {
    "model.pt truncated": (_truncate("model.pt"), "{run}/model.pt: not a weights file written by `ner train`"),
    "model.pt empty": (_truncate("model.pt", 0), "{run}/model.pt: not a weights file written by `ner train`"),
    "model.pt of pickled code": (
        lambda run: (run / "model.pt").write_bytes(pickle.dumps([_RunsCode()], protocol=2)),
        "{run}/model.pt: not a weights file written by `ner train`",
    ),
    "model.pt not tensors": (
        lambda run: torch.save({"a": 1}, run / "model.pt"),
        "{run}/model.pt: expected a state dict (tensor names to tensors), got a dict holding 'a': int",
    ),
    "model.pt a list": (
        lambda run: torch.save([1, 2], run / "model.pt"),
        "{run}/model.pt: expected a state dict (tensor names to tensors), got list",
    ),
    "model.pt a folder": (_folder("model.pt"), "{run}/model.pt: is a folder, expected a file"),
    "model.pt with NaN": (_weights(_nan), "{run}/model.pt: tensor 'emissions.weight' holds NaN or infinity"),
    "model.pt extra tensor": (
        _weights(lambda s: {**s, "extra": torch.zeros(2)}),
        "{run}/model.pt: weights do not fit the model described by config.yaml, model.json and "
        "the vocabularies: tensor 'extra' has no place in it",
    ),
    "model.pt missing tensor": (
        _weights(lambda s: {k: v for k, v in s.items() if k != "emissions.bias"}),
        "tensor 'emissions.bias' is missing",
    ),
    "model.pt wrong shape": (
        _weights(lambda s: {**s, "emissions.bias": torch.zeros(3)}),
        "tensor 'emissions.bias' has shape (3,), expected (17,)",
    ),
    "model.pt zero-stride view": (
        _weights(lambda s: {**s, "embedder.words.weight": torch.zeros(1).expand(10**6, 24)}),
        "{run}/model.pt: its tensors claim more numbers than the file holds",
    ),
    "words.json truncated": (_truncate("words.json"), "{run}/words.json:"),
    "words.json a list": (_json("words.json", [1, 2]), "{run}/words.json: expected a JSON object with keys"),
    "words.json items not strings": (
        _edit_json("words.json", lambda d: {**d, "items": [1, 2]}),
        "{run}/words.json: items: expected a list of strings",
    ),
    "words.json duplicate": (
        _edit_json("words.json", lambda d: {**d, "items": d["items"] + ["the"]}),
        "{run}/words.json: items: 'the' occurs more than once",
    ),
    "words.json pad not a bool": (
        _edit_json("words.json", lambda d: {**d, "pad": "yes"}),
        "{run}/words.json: pad, unk and lowercase: expected true or false",
    ),
    "words.json fewer words": (
        _edit_json("words.json", lambda d: {**d, "items": d["items"][:10]}),
        "tensor 'embedder.words.weight' has shape (477, 24), expected (10, 24)",
    ),
    "chars.json a folder": (_folder("chars.json"), "{run}/chars.json: is a folder, expected a file"),
    "tags.json ill-formed tag": (
        _edit_json("tags.json", lambda d: {**d, "items": ["O", "X-FOO", *d["items"][2:]]}),
        "{run}/tags.json: tag 'X-FOO' at index 1 is not valid in scheme BIOES",
    ),
    "tags.json fewer tags": (
        _edit_json("tags.json", lambda d: {**d, "items": d["items"][:3]}),
        "tensor 'emissions.weight' has shape (17, 48), expected (3, 48)",
    ),
    "tags.json reordered": (
        _edit_json("tags.json", lambda d: {**d, "items": _swap_tags(d["items"])}),
        "{run}/model.pt: tensor 'crf.start_allowed' does not match tags.json",
    ),
    "model.json truncated": (_truncate("model.json"), "{run}/model.json:"),
    "model.json a list": (_json("model.json", []), "{run}/model.json: expected a JSON object, got list"),
    "model.json without schemes": (
        _json("model.json", {"format": 1}),
        "{run}/model.json: data_scheme: expected one of IOB1, IOB2, BIOES, got None",
    ),
    "model.json model scheme": (
        _edit_json("model.json", lambda d: {**d, "model_scheme": "IOB2"}),
        "{run}/model.json: model_scheme: expected 'BIOES' (model.scheme of config.yaml)",
    ),
    "model.json biLM options": (
        _edit_json("model.json", lambda d: {**d, "elmo_options": {"x": 1}}),
        "{run}/model.json: not an ELMo options file",
    ),
    "model.json huge biLM": (
        _edit_json(
            "model.json",
            lambda d: {
                **d,
                "elmo_options": {
                    "lstm": {"use_skip_connections": True, "projection_dim": 10**6, "dim": 10**6, "n_layers": 2},
                    "char_cnn": {
                        "activation": "relu",
                        "filters": [[1, 10**6]],
                        "n_highway": 10**6,
                        "embedding": {"dim": 16},
                    },
                },
            },
        ),
        "too few for the model that config.yaml, model.json and tags.json describe",
    ),
    "config.yaml other size": (
        _config("hidden_size: 24", "hidden_size: 32"),
        "tensor 'encoder.weight_ih_l0' has shape (96, 64), expected (128, 64)",
    ),
    "config.yaml truncated": (_truncate_at_line("config.yaml", 0.1), "{run}/model.pt: weights do not fit"),
    "config.yaml a folder": (_folder("config.yaml"), "{run}/config.yaml: is a folder, expected a file"),
    "config.yaml NaN": (
        _config("dropout: 0.3", "dropout: .nan"),
        "{run}/config.yaml: model.dropout: expected a number in [0, 1), got nan",
    ),
    "config.yaml python tag": (
        _config("dropout: 0.3", "dropout: !!python/object/apply:os.system ['touch PWNED']"),
        "{run}/config.yaml:",
    ),
    "config.yaml huge model": (
        _config("hidden_size: 24", "hidden_size: 65536"),
        "tensor 'encoder.weight_ih_l0' has shape (96, 64), expected (262144, 64)",
    ),
}


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_a_damaged_run_directory_is_one_line_and_writes_nothing(
    damage: str, sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate, expected = DAMAGED[damage]
    run = tmp_path / "run"
    shutil.copytree(sample, run)
    mutate(run)
    source = tmp_path / "in.txt"
    source.write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    message = fails(capsys, ["tag", str(run), str(source), "-o", str(tmp_path / "out.jsonl")])
    assert expected.format(run=run) in message
    assert snapshot(tmp_path) == before  # no output, nothing touched, no PWNED
    assert fails(capsys, ["evaluate", str(run), str(DEV)]) == message
    with pytest.raises(NerError, match="^" + re.escape(message) + "$"):
        Tagger.load(run)


def test_a_huge_config_is_refused_before_anything_is_allocated(sample: Path, tmp_path: Path) -> None:
    """``ner tag`` in a fresh process on a config.yaml asking for a 4 x 65536 x 65536 LSTM (68 GB): refused in
    the memory of a small model, even under an address-space limit that such a model could never fit."""
    run = tmp_path / "run"
    shutil.copytree(sample, run)
    _config("hidden_size: 24", "hidden_size: 65536")(run)
    _config("  dim: 24", "  dim: 65536")(run)
    source = tmp_path / "in.txt"
    source.write_text(TEXT)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    command = [
        sys.executable,
        "-c",
        "import sys; from ner.cli import main; sys.exit(main(sys.argv[1:]))",
        "tag",
        str(run),
        str(source),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=REPO,
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err.decode()
    assert err.decode() == (
        f"error: {run}/model.pt: weights do not fit the model described by config.yaml, "
        f"model.json and the vocabularies: tensor 'embedder.words.weight' has shape (477, 24), "
        f"expected (477, 65536)\n"
    )
    assert out == b""


# ---------------------------------------------------------------------------------------------------------------
# Pretrained vectors and multi-seed runs


@pytest.fixture(scope="module")
def vectors_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) run directory with pretrained vectors: a text table, vectors.json records its sha256."""
    root = tmp_path_factory.mktemp("vectors")
    words = sorted({t.lower() for s in read_conll(REPO / "data/sample/train.txt").sentences for t in s.tokens})
    table = np.random.default_rng(0).normal(0, 0.5, (len(words), 24)).astype(np.float32)
    (root / "table.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, table)))
    run = root / "run"
    config = load_config(SAMPLE, [*FAST, f"output.dir={run}", f"model.embeddings.pretrained={root / 'table.txt'}"])
    tagger = Tagger.build(config, read_conll(REPO / "data/sample/train.txt"))
    run.mkdir()
    save_config(config, run / "config.yaml")
    tagger.save_vocabularies(run)
    tagger.save_weights(run)
    assert Tagger.load(run).predict([["EU", "rejects"]])
    return run


VECTORS_DAMAGED = {
    "vectors.json missing": (lambda run, table: (run / "vectors.json").unlink(), "{run}/vectors.json: missing"),
    "vectors.json truncated": (lambda run, table: _truncate("vectors.json")(run), "{run}/vectors.json:"),
    "vectors.json a list": (
        lambda run, table: _json("vectors.json", [])(run),
        "{run}/vectors.json: expected a JSON object, got list",
    ),
    "vectors.json a folder": (lambda run, table: _folder("vectors.json")(run), "{run}/vectors.json: cannot read"),
    "table changed": (
        lambda run, table: table.write_text(table.read_text().replace("0", "1", 1)),
        "{run}/vectors.json: the model was trained with word vectors",
    ),
    "table a device": (lambda run, table: _config(str(table), "/dev/zero")(run), "/dev/zero: not a regular file"),
}


@pytest.mark.parametrize("damage", VECTORS_DAMAGED, ids=list(VECTORS_DAMAGED))
def test_damaged_vectors_are_one_line(
    damage: str, vectors_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, expected = VECTORS_DAMAGED[damage]
    run, table = tmp_path / "run", tmp_path / "table.txt"
    shutil.copy(vectors_run.parent / "table.txt", table)
    shutil.copytree(vectors_run, run)
    _config(str(vectors_run.parent / "table.txt"), str(table))(run)
    mutate(run, table)
    before = snapshot(tmp_path)
    assert expected.format(run=run) in fails(capsys, ["evaluate", str(run), str(DEV)])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "damage", ["metrics.json a folder", "metrics.json not metrics", "metrics.json empty", "best seed damaged"]
)
def test_a_damaged_multi_seed_run_is_one_line(
    damage: str, sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "seeds"
    for seed in (1, 2):
        shutil.copytree(sample, run / f"seed-{seed}")
    shutil.copy(sample / "config.yaml", run / "config.yaml")
    metrics = run / "seed-2" / METRICS_FILE
    if damage == "metrics.json a folder":
        _folder(METRICS_FILE)(run / "seed-2")
        expected = f"{metrics}: cannot read the metrics of a finished run"
    elif damage in ("metrics.json not metrics", "metrics.json empty"):
        metrics.write_text('{"dev": 1}' if damage == "metrics.json not metrics" else "{}")
        expected = f"{metrics}: not the metrics of a finished run"
    else:
        _truncate("model.pt")(run / "seed-1")  # seeds tie on dev: the lowest wins
        expected = f"{run}/seed-1/model.pt: not a weights file written by `ner train`"
    before = snapshot(tmp_path)
    assert main(["tag", str(run), str(REPO / "data" / "sample" / "raw.txt")]) == 2
    *said, last = capsys.readouterr().err.splitlines()  # the seed chosen may be said first
    assert last.startswith(f"error: {expected}") and all("using seed-1" in line for line in said), said
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------------------
# Runs: never clobbered, one writer at a time, no way out through a link, a torn log repaired


def test_an_earlier_run_without_its_checkpoint_is_not_overwritten(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(sample, run)
    (run / CHECKPOINT_FILE).unlink()
    before = snapshot(tmp_path)
    message = fails(capsys, ["train", str(SAMPLE), *FAST, f"output.dir={run}"])
    assert message == (
        f"{run}: already holds a run (config.yaml, model.json, model.pt, words.json, chars.json, "
        f"tags.json, metrics.jsonl, metrics.json) with no checkpoint.pt to resume from; choose another "
        f"output.dir (or remove that run)"
    )
    assert snapshot(tmp_path) == before


def test_a_second_train_into_a_locked_run_directory_says_who_holds_it(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(sample, run)
    (run / METRICS_FILE).unlink()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with run_lock(run), run_lock(fresh):
        holder = f"pid {os.getpid()} on {os.uname().nodename}"
        before = snapshot(tmp_path)
        assert fails(capsys, ["train", "--resume", str(run)]) == (
            f"{run}: in use by another `ner train` ({holder}); wait for it to finish or choose another output.dir"
        )
        assert fails(capsys, ["train", str(SAMPLE), *FAST, f"output.dir={fresh}"]).startswith(
            f"{fresh}: in use by another `ner train` ({holder})"
        )
        assert snapshot(tmp_path) == before
    assert (run / ".lock").read_text() == ""  # released


def test_no_write_follows_a_symbolic_link_out_of_the_run_directory(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    shutil.copytree(sample, run)
    (run / METRICS_FILE).unlink()
    outside.mkdir()
    (outside / "log").write_text("precious\n")
    (run / METRICS_LOG).unlink()
    (run / METRICS_LOG).symlink_to(outside / "log")
    before = snapshot(tmp_path)
    assert fails(capsys, ["train", "--resume", str(run)]) == (
        f"{run / METRICS_LOG}: a symbolic link out of the run directory (to {outside / 'log'}): refusing to write "
        f"through it"
    )
    (run / "evaluate").symlink_to(outside, target_is_directory=True)
    assert fails(capsys, ["evaluate", str(run), str(DEV)]) == (
        f"{run / 'evaluate'}: a symbolic link out of the run directory (to {outside}): refusing to write through it"
    )
    assert snapshot(tmp_path) == before


def test_resume_repairs_a_metrics_log_torn_by_a_kill(sample: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(sample, run)
    (run / METRICS_FILE).unlink()  # as if killed while writing epoch 3's line, after epoch 2's checkpoint
    lines = (run / METRICS_LOG).read_text()
    with (run / METRICS_LOG).open("a") as log:
        log.write('{"epoch": 3, "loss": 0.1')
    (run / f".{CHECKPOINT_FILE}.999999.tmp").write_bytes(b"half a checkpoint")  # its writer was killed too
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / METRICS_LOG).read_text() == lines
    assert (run / METRICS_FILE).is_file()
    assert not list(run.glob(".*.tmp"))


def test_run_files_have_the_umask_permissions(sample: Path, tmp_path: Path) -> None:
    """Written under umask 022, every file is 0644, readable by a service running as another user."""
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in sample.iterdir() if path.name != ".lock"} == {
        name: "0o644"
        for name in (
            "config.yaml",
            "model.json",
            "words.json",
            "chars.json",
            "tags.json",
            "model.pt",
            CHECKPOINT_FILE,
            METRICS_LOG,
            METRICS_FILE,
        )
    }
    umask = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "file", "text")
    finally:
        os.umask(umask)
    assert oct((tmp_path / "file").stat().st_mode & 0o777) == "0o640"


# ---------------------------------------------------------------------------------------------------------------
# Outputs


@pytest.mark.parametrize("command", ["tag", "evaluate"])
def test_an_output_never_replaces_an_input_or_lands_where_it_cannot(
    command: str, sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.txt"
    shutil.copy(DEV, source)
    argv = (
        ["tag", str(sample), str(source), "-o"]
        if command == "tag"
        else ["evaluate", str(sample), str(source), "--output"]
    )
    before = snapshot(tmp_path), snapshot(sample)
    assert fails(capsys, [*argv, str(source)]) == (
        f"{source}: is also an input ({source}): refusing to overwrite it; choose another output path"
    )
    assert fails(capsys, [*argv, str(tmp_path / "missing" / "out")]) == (
        f"{tmp_path / 'missing' / 'out'}: cannot write there: {tmp_path / 'missing'} is no such folder"
    )
    assert fails(capsys, [*argv, str(tmp_path)]) == f"{tmp_path}: is a folder: expected the path of a file to write"
    assert (snapshot(tmp_path), snapshot(sample)) == before


def test_predict_takes_empty_tokens(sample: Path) -> None:
    tagger = Tagger.load(sample)
    assert tagger.predict([[""]]) == [["O"]]
    assert tagger.predict_spans([["", ""]]) == [[]]
    with pytest.raises(TypeError, match="^sentence 0: expected tokens as strings, got int 1$"):
        tagger.predict([[1]])
    with pytest.raises(TypeError, match="^sentence 1: expected tokens as strings, got NoneType None$"):
        tagger.predict([["EU"], ["rejects", None]])

    class Word(str):
        pass

    assert tagger.predict([[Word("EU")]]) == tagger.predict([["EU"]])  # a str subclass is a string


# ---------------------------------------------------------------------------------------------------------------
# Fuzz: damaged vocabularies load or give a one-line NerError, never anything else

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=50, deadline=None)
@given(name=st.sampled_from(["words.json", "chars.json", "tags.json"]), data=st.data())
def test_fuzzed_vocabularies_load_or_are_one_line_errors(
    name: str, data: st.DataObject, sample: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(sample, run)
    original = json.loads((run / name).read_text())
    kind = data.draw(st.sampled_from(["value", "key", "item", "bytes"]))
    if kind == "value":
        (run / name).write_text(json.dumps(data.draw(_JSON)))
    elif kind == "key":
        key = data.draw(st.sampled_from(sorted(original)))
        (run / name).write_text(json.dumps({**original, key: data.draw(_JSON)}))
    elif kind == "item":
        items = list(original["items"])
        items[data.draw(st.integers(0, len(items) - 1))] = data.draw(_JSON)
        (run / name).write_text(json.dumps({**original, "items": items}))
    else:
        raw = bytearray((run / name).read_bytes())
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        (run / name).write_bytes(bytes(raw[: data.draw(st.integers(1, len(raw)))]))
    try:
        tagger = Tagger.load(run)
    except NerError as error:
        assert "\n" not in str(error) and str(error).startswith(str(run))
    else:
        assert tagger.predict([["EU", "rejects", "German", "call"]])[0]
    shutil.rmtree(run.parent)


def test_a_pipe_as_output_is_written_through_and_stays_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with atomic_stream(fifo) as handle:
        handle.write(b"tagged\n")
    reader.join(10)
    assert received == [b"tagged\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(NerError, match=r"pipe: not a regular file \(a device or a pipe\): expected the path of a"):
        with atomic_path(fifo):
            pass
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
