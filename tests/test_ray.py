"""Corpus tagging on Ray Data (``ner/ray_tagging.py``), in local mode with 2 CPUs: ``ner tag --engine ray`` writes
the records ``ner tag`` writes, byte for byte and in input order; ``tag_dataset`` tags a Ray Dataset of lines; an
unreachable ``--address``, a missing extra and a binary file are one line, exit 2, no output left behind."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from ner.cli import main
from ner.entities import tag_text
from ner.model import Tagger
from ner.ray_tagging import LOCAL_RAY, tag_dataset
from ner.tagging import SNIFF_BYTES, WINDOW_CHARS
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "sample" / "raw.txt"
FAST = [
    "training.epochs=1",
    "model.lstm.hidden_size=16",
    "model.embeddings.dim=16",
    "output.progress=false",
    # the document features make a window's lines one document: the Ray engine must cut windows where ner tag does
    "model.document_context=true",
    "model.embeddings.document_casing_dim=4",
    "model.propagate_entities=true",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "run"
    train_from_config(REPO / "configs" / "sample.yaml", [*FAST, f"output.dir={out}"])
    return out


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _system_config=LOCAL_RAY)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample text; a file of several windows; one with a byte-order mark, CRLF, blank lines, invalid UTF-8."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = RAW.read_text(encoding="utf-8").splitlines()
    rng = random.Random(7)
    big = folder / "big.txt"
    big.write_text("".join(rng.choice(lines) + "\n" for _ in range(2 * WINDOW_CHARS // 70)), encoding="utf-8")
    assert big.stat().st_size > 2 * WINDOW_CHARS
    odd = folder / "odd.txt"
    odd.write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines[:4]).encode() + b"\r\n\r\nBad \xff byte in Paris .\n\n" + lines[5].encode()
    )
    return [RAW, big, odd]


def test_ray_engine_writes_the_records_of_ner_tag(
    run_dir: Path, local_ray: None, corpus: list[Path], tmp_path: Path
) -> None:
    reference, records = tmp_path / "ref.jsonl", tmp_path / "ray.jsonl"
    files = [str(path) for path in corpus]
    assert main(["tag", str(run_dir), *files, "-o", str(reference)]) == 0
    assert main(["tag", str(run_dir), *files, "-o", str(records), "--engine", "ray", "--workers", "2"]) == 0
    assert records.read_bytes() == reference.read_bytes()
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    big_lines = corpus[1].read_text(encoding="utf-8").count("\n")
    assert [row["line"] for row in rows if row["file"] == files[1]] == list(range(1, big_lines + 1))
    assert sum(len(row["entities"]) for row in rows) > 100
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ray.jsonl", "ref.jsonl"]  # no temporary file left


def test_tag_dataset_adds_the_entities_of_each_line(run_dir: Path, local_ray: None) -> None:
    texts = RAW.read_text(encoding="utf-8").splitlines() * 3
    ray.data.DataContext.get_current().execution_options.preserve_order = False  # tag_dataset keeps the order
    dataset = ray.data.from_items([{"text": text, "id": number} for number, text in enumerate(texts)])
    rows = list(tag_dataset(dataset, run_dir, actors=2, rows_per_call=5).iter_rows())
    assert [row["id"] for row in rows] == list(range(len(texts)))
    tagger = Tagger.load(run_dir)
    for row, text in zip(rows, texts):
        expected = tag_text(tagger, text)  # each line alone, one document
        got = [dict(entity) for entity in row["entities"]]
        assert [{**e, "score": None} for e in got] == [{**e, "score": None} for e in expected], text
        assert all(abs(g["score"] - e["score"]) <= 1e-4 for g, e in zip(got, expected))
    assert sum(len(row["entities"]) for row in rows) > 10


def test_a_nul_byte_past_the_sniffed_start_fails_the_run_leaving_no_output(
    run_dir: Path, local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "late.txt"
    binary.write_bytes(b"EU rejects German call .\n" * (SNIFF_BYTES // 10) + b"a \x00 b\n")
    out = tmp_path / "out.jsonl"
    assert main(["tag", str(run_dir), str(binary), "-o", str(out), "--engine", "ray", "--workers", "1"]) == 2
    line = SNIFF_BYTES // 10 + 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {binary}:{line}: expected UTF-8 text, found a NUL byte at byte offset {25 * (line - 1) + 2} "
        f"(binary file?)"
    )
    assert list(tmp_path.iterdir()) == [binary]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_address_is_one_line_and_every_process_exits(run_dir: Path, tmp_path: Path) -> None:
    port = _closed_port()
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ner.cli",
            "tag",
            str(run_dir),
            str(RAW),
            "-o",
            str(out),
            "--engine",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2 and time.monotonic() - started < 180
    assert done.stderr.splitlines() == [
        f"error: --address 127.0.0.1:{port}: no Ray cluster reachable there (Connection refused); start one with "
        f"`ray start --head` or leave --address out to run on this machine"
    ]
    assert list(tmp_path.iterdir()) == []


def test_without_the_extra_the_error_names_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    assert main(["tag", str(run_dir), str(RAW), "-o", str(tmp_path / "out.jsonl"), "--engine", "ray"]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith('error: the Ray engine needs the ray extra: pip install -e ".[ray]"')
    assert list(tmp_path.iterdir()) == []


def test_bad_options_of_the_ray_engine(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (
            ["--engine", "ray", "--format", "conll"],
            "error: --engine ray: writes --format jsonl with --backend pytorch, got --format conll --backend pytorch",
        ),
        (["--address", "10.0.0.5:6379"], "error: --address: only with --engine ray"),
        (
            ["--engine", "ray", "--address", "nowhere"],
            "error: --address: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379) or auto, got 'nowhere'",
        ),
    ]:
        assert main(["tag", str(run_dir), str(RAW), *argv]) == 2
        assert capsys.readouterr().err.splitlines() == [message]
    assert main(["tag", str(run_dir), "-", "--engine", "ray"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --engine ray: standard input (-) is not supported; give files or folders"
    ]
