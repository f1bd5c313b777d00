"""Streaming tagging of raw text files (ner.tagging) with a fake span predictor."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
import types
from pathlib import Path

import pytest

import ner.tagging
from ner.cli import main
from ner.data.text import MAX_TOKENS
from ner.entities import tag_text
from ner.errors import DataError, NerError
from ner.tagging import tag_files


class CapitalisedTagger:
    """Runs of capitalised tokens are PER entities, scored 0.9 when two or more tokens long, else 0.5."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []  # sentence lengths of each call
        self.batch_sizes: list[int] = []

    def predict_spans(self, sentences: list[list[str]], batch_size: int) -> list[list[tuple[str, int, int, float]]]:
        self.batches.append([len(tokens) for tokens in sentences])
        self.batch_sizes.append(batch_size)
        result = []
        for tokens in sentences:
            spans, start = [], None
            for index, token in enumerate([*tokens, ""]):
                if token[:1].isupper():
                    start = index if start is None else start
                elif start is not None:
                    spans.append(("PER", start, index, 0.9 if index - start > 1 else 0.5))
                    start = None
            result.append(spans)
        return result


TEXT = "John Smith visited Paris.\n\nHe met Mary in Rome. Then left\n"


def entity(start: int, end: int, text: str, score: float) -> dict:
    return {"start": start, "end": end, "type": "PER", "text": text, "score": score}


EXPECTED = [
    {
        "line": 1,
        "text": "John Smith visited Paris.",
        "entities": [entity(0, 10, "John Smith", 0.9), entity(19, 24, "Paris", 0.5)],
    },
    {"line": 2, "text": "", "entities": []},
    {
        "line": 3,
        "text": "He met Mary in Rome. Then left",
        "entities": [
            entity(0, 2, "He", 0.5),
            entity(7, 11, "Mary", 0.5),
            entity(15, 19, "Rome", 0.5),
            entity(21, 25, "Then", 0.5),
        ],
    },
]


def run(tmp_path: Path, data: bytes | dict[str, bytes], **options: object) -> tuple[str, dict]:
    """Tag ``data`` (one file's bytes, or several files by name) into an output file; (output text, stats)."""
    files = data if isinstance(data, dict) else {"input.txt": data}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    output = tmp_path / "out"
    options.setdefault("tagger", CapitalisedTagger())
    stats = tag_files(inputs=[str(tmp_path / name) for name in files], output=str(output), **options)
    return output.read_text(encoding="utf-8"), stats


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_has_one_record_per_line_in_order(tmp_path: Path) -> None:
    output, stats = run(tmp_path, TEXT.encode())
    assert records(output) == EXPECTED
    assert (stats["files"], stats["lines"], stats["sentences"], stats["tokens"], stats["entities"]) == (1, 3, 3, 13, 6)


def test_entity_offsets_index_the_line_text(tmp_path: Path) -> None:
    russian = "\u041c\u0430\u0440\u0438\u044f \u0418\u0432\u0430\u043d\u043e\u0432\u0430"
    line = f"Tab\tand John Smith\x01met \U0001f44d\U0001f3fd {russian} in \u6771\u4eac\x0bok \u201cBig Ben\u201d"
    output, _ = run(tmp_path, (line + "\n").encode())
    [record] = records(output)
    assert record["text"] == line
    assert [e["text"] for e in record["entities"]] == ["Tab", "John Smith", russian, "Big Ben"]
    assert all(line[e["start"] : e["end"]] == e["text"] for e in record["entities"])


def test_windows_line_endings_are_removed_and_offsets_unchanged(tmp_path: Path) -> None:
    output, _ = run(tmp_path, TEXT.replace("\n", "\r\n").encode())
    assert records(output) == EXPECTED


def test_several_files_and_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("Anna\n")
    (folder / "a.txt").write_text("x\nBob\n")
    (folder / "notes.md").write_text("Ignored\n")
    output = tmp_path / "out.jsonl"
    tag_files(CapitalisedTagger(), [str(folder)], output=str(output))
    assert records(output.read_text()) == [
        {"file": str(folder / "a.txt"), "line": 1, "text": "x", "entities": []},
        {"file": str(folder / "a.txt"), "line": 2, "text": "Bob", "entities": [entity(0, 3, "Bob", 0.5)]},
        {"file": str(folder / "b.txt"), "line": 1, "text": "Anna", "entities": [entity(0, 4, "Anna", 0.5)]},
    ]


def test_standard_input_to_standard_output(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode())))
    tag_files(CapitalisedTagger(), ["-"])
    assert records(capsysbinary.readouterr().out.decode()) == EXPECTED


def test_empty_file_gives_no_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output, stats = run(tmp_path, b"")
    assert output == "" and stats["lines"] == 0
    assert capsys.readouterr().err == f"warning: {tmp_path / 'input.txt'}: empty file, nothing to tag\n"


def test_blank_lines_each_get_a_record(tmp_path: Path) -> None:
    output, _ = run(tmp_path, b"\n \n\r\n\t")
    assert records(output) == [
        {"line": n, "text": text, "entities": []} for n, text in [(1, ""), (2, " "), (3, ""), (4, "\t")]
    ]


def test_invalid_utf8_is_replaced_and_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output, stats = run(tmp_path, b"caf\xe9 in Paris\nok\n\xff Berlin\n")
    assert [record["text"] for record in records(output)] == ["caf\ufffd in Paris", "ok", "\ufffd Berlin"]
    assert [e["text"] for record in records(output) for e in record["entities"]] == ["Paris", "Berlin"]
    assert capsys.readouterr().err == (
        f"warning: {tmp_path / 'input.txt'}:1: invalid UTF-8 at byte offset 3; undecodable bytes are replaced with "
        "U+FFFD (reported once per file)\n"
    )
    assert stats["lines_with_invalid_utf8"] == 2


def test_binary_file_is_refused_before_any_output(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        run(tmp_path, {"good.txt": b"Anna\n", "data.bin": b"ab\ncd\x00ef"})
    assert str(error.value) == (
        f"{tmp_path / 'data.bin'}:2: expected UTF-8 text, found a NUL byte at byte offset 5 (binary file?)"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.bin", "good.txt"]


def test_nul_byte_late_in_a_file_is_refused_and_no_output_is_left(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        run(tmp_path, b"line\n" * 3000 + b"x\x00\n")
    assert str(error.value) == (
        f"{tmp_path / 'input.txt'}:3001: expected UTF-8 text, found a NUL byte at byte offset 15001 (binary file?)"
    )
    assert [path.name for path in tmp_path.iterdir()] == ["input.txt"]


def test_cli_exits_2_on_a_binary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake_model = types.ModuleType("ner.model")
    fake_model.Tagger = types.SimpleNamespace(load=lambda run_dir, precision: CapitalisedTagger())
    monkeypatch.setitem(sys.modules, "ner.model", fake_model)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert main(["tag", str(tmp_path), str(tmp_path / "image.png")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'image.png'}:3: expected UTF-8 text, found a NUL byte at byte offset 8 (binary file?)\n"
    )


def test_one_megabyte_line_without_sentence_break(tmp_path: Path) -> None:
    chunk = "Anna Berg inspected the installations, "
    assert len(chunk) == 39
    line = chunk * 27_000  # 1.05 MB, no sentence terminal
    tagger = CapitalisedTagger()
    output, _ = run(tmp_path, line.encode() + b"\n", tagger=tagger)
    [record] = records(output)
    assert max(length for batch in tagger.batches for length in batch) <= MAX_TOKENS
    found = record["entities"]
    assert all(line[e["start"] : e["end"]] == e["text"] for e in found)
    assert [e["start"] for e in found] == sorted(e["start"] for e in found)
    # Chunks are cut at whitespace, so at most a few names are split across chunks.
    assert sum(e["text"] == "Anna Berg" for e in found) >= 27_000 - 30


@pytest.mark.parametrize("fmt", ["jsonl", "conll", "inline", "html"])
def test_a_line_longer_than_a_window_gives_what_the_whole_line_gives(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in pieces (cut within a UTF-8 character, between \\r and \\n) and tagged piece by piece, a long line
    gives the records of the line taken whole, byte for byte."""
    words = ["Anna", "Berg", "visited", "Zürich", ".", "\u2028", "\r", "日本", "x" * 130, "Dr.", "  ", "\t"]
    line = " ".join(words[(7 * n * n + n) % len(words)] for n in range(4_000))
    data = {"a.txt": f"Short line.\n{line}\r\nAfter it.\n{line[:20_000]}".encode(), "b.txt": line.encode()}
    monkeypatch.setattr(ner.tagging, "WINDOW_CHARS", 10**8)  # every line whole
    whole, whole_stats = run(tmp_path, data, fmt=fmt)
    monkeypatch.setattr(ner.tagging, "WINDOW_CHARS", 1_001)
    pieces, piece_stats = run(tmp_path, data, fmt=fmt)
    assert pieces == whole
    assert {k: v for k, v in piece_stats.items() if "second" not in k} == {
        k: v for k, v in whole_stats.items() if "second" not in k
    }


def test_memory_does_not_grow_with_the_length_of_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak Python memory while tagging one line without a sentence break: the same for lines of 20 and 80
    windows (``bench/long_line_memory.py`` measures the whole process on 1 MB and 16 MB lines)."""
    monkeypatch.setattr(ner.tagging, "WINDOW_CHARS", 5_000)
    chunk = "Anna Berg inspected the installations, "

    def peak(size: int) -> int:
        source = tmp_path / f"line{size}.txt"
        source.write_text(chunk * (size // len(chunk)) + "\n")
        tracemalloc.start()
        try:
            tag_files(CapitalisedTagger(), [str(source)], output=str(tmp_path / "out.jsonl"))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(100_000), peak(400_000)
    assert large < 1.2 * small, (small, large)


def test_jsonl_escapes_the_characters_that_split_lines(tmp_path: Path) -> None:
    """U+0085, U+2028 and U+2029 end a line for str.splitlines: escaped, each record stays one line."""
    output, _ = run(tmp_path, "Anna\u2028Berg\u2029met\x85Carl\n".encode())
    assert "\\u2028" in output and "\\u2029" in output and "\\u0085" in output
    assert [record["text"] for record in records(output)] == ["Anna\u2028Berg\u2029met\x85Carl"]


def test_lines_come_back_in_input_order_across_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ner.tagging, "WINDOW_CHARS", 120)
    lines = [" ".join(["Word"] * (1 + (7 * n) % 11) + [f"n{n}"]) for n in range(60)]
    tagger = CapitalisedTagger()
    output, _ = run(tmp_path, "\n".join(lines).encode(), tagger=tagger, batch_size=3)
    assert [(record["line"], record["text"]) for record in records(output)] == list(enumerate(lines, start=1))
    assert len(tagger.batches) > 10  # one call per window
    assert set(tagger.batch_sizes) == {3}


def test_conll_format(tmp_path: Path) -> None:
    output, _ = run(tmp_path, TEXT.encode(), fmt="conll")
    assert output == (
        "John B-PER\nSmith I-PER\nvisited O\nParis B-PER\n. O\n\n"
        "He B-PER\nmet O\nMary B-PER\nin O\nRome B-PER\n. O\n\n"
        "Then B-PER\nleft O\n\n"
    )


def test_conll_format_marks_each_file(tmp_path: Path) -> None:
    output, _ = run(tmp_path, {"a.txt": b"Anna\n", "b.txt": b"x\n"}, fmt="conll")
    assert output == "-DOCSTART- O\n\nAnna B-PER\n\n-DOCSTART- O\n\nx O\n\n"


def test_inline_format_has_one_line_per_input_line(tmp_path: Path) -> None:
    output, _ = run(tmp_path, "\u201cJohn Smith\u201d visited Paris.\n\nHe left\n".encode(), fmt="inline")
    assert output == '" [PER John Smith] " visited [PER Paris] .\n\n[PER He] left\n'


def test_min_score_filters_entities_in_every_format(tmp_path: Path) -> None:
    output, stats = run(tmp_path, TEXT.encode(), min_score=0.6)
    assert [record["entities"] for record in records(output)] == [[entity(0, 10, "John Smith", 0.9)], [], []]
    assert stats["entities"] == 1
    output, _ = run(tmp_path, TEXT.encode(), fmt="inline", min_score=0.6)
    assert output == "[PER John Smith] visited Paris .\n\nHe met Mary in Rome . Then left\n"


def test_tag_text_offsets_index_the_whole_string() -> None:
    text = "John Smith visited\r\nParis. Then left"
    assert tag_text(CapitalisedTagger(), text) == [
        entity(0, 10, "John Smith", 0.9),
        entity(20, 25, "Paris", 0.5),
        entity(27, 31, "Then", 0.5),
    ]
    assert tag_text(CapitalisedTagger(), text, min_score=0.6) == [entity(0, 10, "John Smith", 0.9)]
    assert tag_text(CapitalisedTagger(), "") == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fmt": "xml"}, "--format: expected one of jsonl, conll, inline, html, got 'xml'"),
        ({"batch_size": 0}, "--batch-size: expected an integer >= 1, got 0"),
        ({"min_score": 1.5}, "--min-score: expected a probability in [0, 1], got 1.5"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(NerError) as error:
        run(tmp_path, b"x\n", **options)
    assert str(error.value) == message


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        tag_files(CapitalisedTagger(), [str(tmp_path / "nope.txt")])
    assert str(error.value) == f"{tmp_path / 'nope.txt'}: no such file or directory"
    with pytest.raises(DataError) as error:
        tag_files(CapitalisedTagger(), [str(tmp_path)])
    assert str(error.value) == f"{tmp_path}: expected a text file or a directory with *.txt files, found no *.txt"
