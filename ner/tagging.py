"""Tag raw text files with a trained tagger, streaming: `ner tag RUN_DIR INPUT... [-o OUTPUT] [--format ...]`.

Each input line is split into sentences and tokens with character offsets (``ner.data.text``). Lines are read and
written incrementally: sentences are buffered in a window of about ``WINDOW_TOKENS`` tokens, sorted by length
there so batches hold sentences of similar length, tagged, and the window's lines are written back in input
order. Memory is bounded by the window and the longest line, whatever the size of the file.

Output formats:

- ``jsonl`` (default): one object per input line, blank lines included, in input order:
  ``{"line": N, "text": "...", "entities": [{"start": S, "end": E, "type": "PER", "text": "...", "score": P}]}``.
  ``line`` counts from 1 in each file; ``"file"`` is added when several files are tagged. ``start``/``end`` are
  Python string offsets into ``text`` (the line without its line ending and, on line 1, without a byte-order
  mark), so ``text[start:end] == entity["text"]``. ``score`` is the span probability from the CRF.
- ``conll``: one ``token TAG`` line per token (IOB2 tags), a blank line after each sentence; a ``-DOCSTART- O``
  line starts each file when several files are tagged.
- ``inline``: one output line per input line, tokens separated by spaces, entities bracketed:
  ``[PER John Smith] visited [LOC Paris] .``

Bad input: a file with a NUL byte is refused as binary (``DataError``; the CLI exits with status 2, and no output
file is left behind). Invalid UTF-8 is decoded with replacement characters (U+FFFD), reported once per file on
standard error with the line and byte offset; offsets then refer to the decoded text. Empty files give no records.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from tqdm import tqdm

from ner.data.text import Token, split_sentences
from ner.errors import DataError, NerError, location

FORMATS = ("jsonl", "conll", "inline")
WINDOW_TOKENS = 20_000
"""Tokens buffered before a window is tagged and written (a longer line is kept whole)."""
SNIFF_BYTES = 8192
"""Bytes read from the start of each input file to refuse binary files before any output is written."""
STDIN = "-"

Span = tuple[str, int, int, float]
"""An entity in a sentence: (type, first token, end token exclusive, probability)."""


class SpanPredictor(Protocol):
    """What tagging needs from a model (``ner.model.Tagger``)."""

    def predict_spans(self, sentences: list[list[str]]) -> list[list[Span]]:
        """Per sentence, its entities."""
        ...


@dataclass
class _Line:
    """One input line, its sentences and, once tagged, each sentence's entity spans."""

    file: str
    number: int
    text: str
    sentences: list[list[Token]]
    spans: list[list[Span]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _input_files(inputs: list[str]) -> list[str]:
    """Expand directories (their ``*.txt`` files, sorted) and check every file exists and is not binary."""
    files: list[str] = []
    for name in inputs:
        path = Path(name)
        if name == STDIN:
            files.append(name)
        elif path.is_dir():
            found = sorted(str(child) for child in path.glob("*.txt") if child.is_file())
            if not found:
                raise DataError(f"{name}: expected a text file or a directory with *.txt files, found no *.txt")
            files.extend(found)
        elif path.is_file():
            files.append(name)
        else:
            raise DataError(f"{name}: no such file or directory")
    for name in files:
        if name != STDIN:
            with open(name, "rb") as stream:
                _refuse_binary(stream.read(SNIFF_BYTES), name, 1, 0)
    return files


def _refuse_binary(data: bytes, name: str, line: int, offset: int) -> None:
    """Raise DataError if ``data``, read from byte ``offset`` of the file where ``line`` starts, has a NUL byte."""
    position = data.find(b"\0")
    if position >= 0:
        line += data.count(b"\n", 0, position)
        raise DataError(
            f"{location(name, line)}: expected UTF-8 text, found a NUL byte at byte offset {offset + position} "
            f"(binary file?)"
        )


def _read_lines(stream: BinaryIO, name: str, stats: dict[str, float]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line: UTF-8 (invalid bytes replaced, reported once), line ending removed."""
    offset = 0
    warned = False
    for number, raw in enumerate(stream, start=1):
        _refuse_binary(raw, name, number, offset)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace")
            stats["lines_with_invalid_utf8"] += 1
            if not warned:
                warned = True
                tqdm.write(
                    f"warning: {location(name, number)}: invalid UTF-8 at byte offset {offset + error.start}; "
                    f"undecodable bytes are replaced with U+FFFD (reported once per file)",
                    file=sys.stderr,
                )
        offset += len(raw)
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text
    if offset == 0:
        tqdm.write(f"warning: {name}: empty file, nothing to tag", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# Tagging


def _tag_sentences(tagger: SpanPredictor, sentences: list[list[Token]], batch_size: int) -> list[list[Span]]:
    """Entity spans of each sentence, tagging in batches of sentences of similar length."""
    order = sorted(range(len(sentences)), key=lambda index: len(sentences[index]))
    spans: list[list[Span]] = [[] for _ in sentences]
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        predicted = tagger.predict_spans([[token.text for token in sentences[index]] for index in batch])
        for index, sentence_spans in zip(batch, predicted):
            spans[index] = sentence_spans
    return spans


def _tag_window(tagger: SpanPredictor, lines: list[_Line], batch_size: int) -> None:
    """Fill ``spans`` of every line in the window."""
    sentences = [sentence for line in lines for sentence in line.sentences]
    spans = iter(_tag_sentences(tagger, sentences, batch_size))
    for line in lines:
        line.spans = [next(spans) for _ in line.sentences]


def _kept(spans: list[Span], min_score: float) -> list[Span]:
    """The spans scored at least ``min_score``."""
    return [span for span in spans if span[3] >= min_score]


def _entity_dicts(text: str, sentences: list[list[Token]], spans: list[list[Span]], min_score: float) -> list[dict]:
    """Entities as dicts with character offsets into ``text``."""
    entities = []
    for tokens, sentence_spans in zip(sentences, spans):
        for kind, first, end, score in _kept(sentence_spans, min_score):
            start, stop = tokens[first].start, tokens[end - 1].end
            entities.append(
                {"start": start, "end": stop, "type": kind, "text": text[start:stop], "score": round(float(score), 4)}
            )
    return entities


def tag_text(tagger: SpanPredictor, text: str, batch_size: int = 64, min_score: float = 0.0) -> list[dict]:
    """Entities in ``text`` (any number of lines): ``{"start", "end", "type", "text", "score"}`` dicts with
    character offsets into ``text``, so that ``text[start:end] == entity["text"]``."""
    sentences = split_sentences(text)
    return _entity_dicts(text, sentences, _tag_sentences(tagger, sentences, batch_size), min_score)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _jsonl(line: _Line, min_score: float, several_files: bool) -> str:
    """One JSON record for the line."""
    record: dict[str, object] = {"file": line.file} if several_files else {}
    record["line"] = line.number
    record["text"] = line.text
    record["entities"] = _entity_dicts(line.text, line.sentences, line.spans, min_score)
    return json.dumps(record, ensure_ascii=False) + "\n"


def _token_tags(length: int, spans: list[Span], min_score: float) -> list[str]:
    """IOB2 tags of one sentence."""
    tags = ["O"] * length
    for kind, first, end, _ in _kept(spans, min_score):
        tags[first:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - first - 1)
    return tags


def _conll(line: _Line, min_score: float, several_files: bool) -> str:
    """``token TAG`` lines for each sentence of the line, each sentence followed by a blank line."""
    parts = []
    for tokens, spans in zip(line.sentences, line.spans):
        tags = _token_tags(len(tokens), spans, min_score)
        parts.append("".join(f"{token.text} {tag}\n" for token, tag in zip(tokens, tags)) + "\n")
    return "".join(parts)


def _inline(line: _Line, min_score: float, several_files: bool) -> str:
    """The line's tokens separated by spaces, entities as ``[TYPE tokens]``."""
    words = []
    for tokens, spans in zip(line.sentences, line.spans):
        sentence_words = [token.text for token in tokens]
        for kind, first, end, _ in _kept(spans, min_score):
            sentence_words[first] = f"[{kind} {sentence_words[first]}"
            sentence_words[end - 1] += "]"
        words.extend(sentence_words)
    return " ".join(words) + "\n"


_WRITERS = {"jsonl": _jsonl, "conll": _conll, "inline": _inline}


# ---------------------------------------------------------------------------------------------------------------
# Pipeline

Writer = Callable[[_Line, float, bool], str]


class _Pipeline:
    """Reads lines into a window, tags the window when it is full, writes its lines back in input order."""

    def __init__(self, tagger: SpanPredictor, sink: BinaryIO, fmt: str, several_files: bool, batch_size: int,
                 min_score: float, bar: tqdm) -> None:
        self.tagger, self.sink, self.bar = tagger, sink, bar
        self.writer: Writer = _WRITERS[fmt]
        self.several_files = several_files
        self.batch_size, self.min_score = batch_size, min_score
        self.window: list[_Line] = []
        self.window_tokens = 0
        self.stats: dict[str, float] = dict.fromkeys(
            ("files", "lines", "sentences", "tokens", "entities", "lines_with_invalid_utf8",
             "read_seconds", "split_seconds", "tag_seconds", "write_seconds"), 0
        )

    def add_file(self, name: str, stream: BinaryIO) -> None:
        """Read, split and buffer every line of one file, flushing full windows."""
        stats = self.stats
        lines = _read_lines(stream, "<stdin>" if name == STDIN else name, stats)
        while True:
            clock = time.perf_counter()
            number, text = next(lines, (0, ""))
            read = time.perf_counter()
            stats["read_seconds"] += read - clock
            if not number:
                break
            sentences = split_sentences(text)
            stats["split_seconds"] += time.perf_counter() - read
            tokens = sum(len(sentence) for sentence in sentences)
            self.window.append(_Line(name, number, text, sentences))
            self.window_tokens += tokens
            stats["lines"] += 1
            stats["sentences"] += len(sentences)
            stats["tokens"] += tokens
            if self.window_tokens >= WINDOW_TOKENS:
                self.flush()
        stats["files"] += 1

    def flush(self) -> None:
        """Tag the buffered lines and write them out in input order."""
        clock = time.perf_counter()
        _tag_window(self.tagger, self.window, self.batch_size)
        tagged = time.perf_counter()
        text = "".join(self.writer(line, self.min_score, self.several_files) for line in self.window)
        self.sink.write(text.encode("utf-8"))
        self.stats["tag_seconds"] += tagged - clock
        self.stats["write_seconds"] += time.perf_counter() - tagged
        self.stats["entities"] += sum(len(_kept(spans, self.min_score)) for line in self.window for spans in line.spans)
        self.bar.update(self.window_tokens)
        self.window, self.window_tokens = [], 0


def tag_files(
    tagger: SpanPredictor,
    inputs: list[str],
    output: str | None = None,
    fmt: str = "jsonl",
    batch_size: int = 64,
    min_score: float = 0.0,
    progress: bool = False,
) -> dict[str, float]:
    """Tag text files (``-`` is standard input; a directory means its ``*.txt`` files, sorted) into ``output``
    (standard output if None) in format ``fmt``; returns counts and the seconds spent in each stage.

    Raises ``DataError`` for a missing or binary input (before writing anything where it can), ``NerError`` for a
    bad option. An output file is written under a temporary name and renamed at the end, so a failed run leaves
    none behind. A closed standard output (``ner tag ... | head``) ends the run quietly.
    """
    if fmt not in FORMATS:
        raise NerError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if batch_size < 1:
        raise NerError(f"--batch-size: expected an integer >= 1, got {batch_size}")
    if not 0.0 <= min_score <= 1.0:
        raise NerError(f"--min-score: expected a probability in [0, 1], got {min_score}")
    files = _input_files(inputs)
    started = time.perf_counter()
    temporary = f"{output}.tmp{os.getpid()}" if output else None
    sink = open(temporary, "wb") if temporary else sys.stdout.buffer
    try:
        with tqdm(desc="tagging", unit=" tokens", unit_scale=True, disable=not progress, file=sys.stderr) as bar:
            pipeline = _Pipeline(tagger, sink, fmt, len(files) > 1, batch_size, min_score, bar)
            for name in files:
                if pipeline.several_files and fmt == "conll":
                    pipeline.flush()
                    sink.write(b"-DOCSTART- O\n\n")
                if name == STDIN:
                    pipeline.add_file(name, sys.stdin.buffer)
                else:
                    with open(name, "rb") as stream:
                        pipeline.add_file(name, stream)
            pipeline.flush()
            sink.flush()
        if temporary:
            sink.close()
            os.replace(temporary, output)
    except BrokenPipeError:
        if temporary:
            raise
        # The reader went away: send what Python still wants to flush at exit to /dev/null instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if temporary and os.path.exists(temporary):
            sink.close()
            os.remove(temporary)
    stats = pipeline.stats
    stats["seconds"] = time.perf_counter() - started
    stats["tokens_per_second"] = stats["tokens"] / stats["seconds"] if stats["seconds"] else 0.0
    return stats
