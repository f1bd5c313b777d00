"""Tag raw text files with a trained tagger, streaming: `ner tag RUN_DIR INPUT... [-o OUTPUT] [--format ...]`.

Each input line is split into sentences and tokens with character offsets (``ner.data.text``). Lines are read and
written incrementally, in windows of about ``WINDOW_CHARS`` characters: a window's sentences are sorted by
length so batches hold sentences of similar length, tagged, and its lines are written back in input order.
With ``workers`` > 1, that many processes (one thread each) split, tag and format windows side by side while
this one reads and writes, in order, with at most two windows per worker in flight. Memory is bounded by the
windows in flight, whatever the size of the file or of a line: a line longer than a window is read, tagged and
written in pieces (``ner.long_lines``). A model with the document casing feature
(``model.embeddings.document_casing_dim``) takes each window as one document (windows never span files).

Output formats: ``ner.formats``.

Bad input: a file with a NUL byte is refused as binary (``DataError``; the CLI exits with status 2, and no output
file is left behind). Invalid UTF-8 is decoded with replacement characters (U+FFFD), reported once per file on
standard error with the line and byte offset; offsets then refer to the decoded text. Empty files give no records.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ner.data.text import cut_point, split_sentences
from ner.entities import SpanPredictor, kept, tag_sentences
from ner.errors import DataError, NerError, location
from ner.fileio import atomic_stream, check_output
from ner.formats import FORMATS, WRITERS, Line, piece
from ner.long_lines import LongLineWriter, Part, Piece, held_back
from ner.web import document_frame

WINDOW_CHARS = 100_000
"""Characters read (about 20,000 tokens of news) before a window is split, tagged and written (a longer line
is kept whole)."""
SNIFF_BYTES = 8192
"""Bytes read from the start of each input file to refuse binary files before any output is written."""
STDIN = "-"


# ---------------------------------------------------------------------------------------------------------------
# Reading


def input_files(inputs: list[str]) -> list[str]:
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
                refuse_binary(stream.read(SNIFF_BYTES), name, 1, 0)
    return files


def refuse_binary(data: bytes, name: str, line: int, offset: int) -> None:
    """Raise DataError if ``data``, read from byte ``offset`` of the file where ``line`` starts, has a NUL byte."""
    position = data.find(b"\0")
    if position >= 0:
        line += data.count(b"\n", 0, position)
        raise DataError(
            f"{location(name, line)}: expected UTF-8 text, found a NUL byte at byte offset {offset + position} "
            f"(binary file?)"
        )


def read_lines(stream: BinaryIO, name: str, stats: dict[str, float]) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, more) of each line: UTF-8 (invalid bytes replaced, reported once), line ending
    removed. A line longer than ``WINDOW_CHARS`` bytes comes in pieces of at most that many, ``more`` true on all
    but its last (``ner.long_lines``), so no line is ever held whole."""
    offset, number, carry = 0, 0, b""
    warned = more = invalid = False
    while True:
        chunk = stream.readline(WINDOW_CHARS)
        raw = carry + chunk
        if not raw and not more:
            break
        starts = not more
        number, invalid = (number + 1, False) if starts else (number, invalid)
        more = len(chunk) == WINDOW_CHARS and not chunk.endswith(b"\n")
        keep = held_back(raw) if more else 0
        raw, carry = raw[: len(raw) - keep], raw[len(raw) - keep :]
        refuse_binary(raw, name, number, offset)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace")
            stats["lines_with_invalid_utf8"] += not invalid
            invalid = True
            if not warned:
                warned = True
                tqdm.write(
                    f"warning: {location(name, number)}: invalid UTF-8 at byte offset {offset + error.start}; "
                    f"undecodable bytes are replaced with U+FFFD (reported once per file)",
                    file=sys.stderr,
                )
        offset += len(raw)
        if text.endswith("\n") and not more:
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        if number == 1 and starts and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text, more
    if offset == 0:
        tqdm.write(f"warning: {name}: empty file, nothing to tag", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# Tagging


def tag_lines(tagger: SpanPredictor, lines: list[Line], batch_size: int) -> None:
    """Fill ``spans`` of every line (a window of ``ner tag``, a document of ``--engine ray``) in one call."""
    sentences = [sentence for line in lines for sentence in line.sentences]
    spans = iter(tag_sentences(tagger, sentences, batch_size))
    for line in lines:
        line.spans = [next(spans) for _ in line.sentences]


# ---------------------------------------------------------------------------------------------------------------
# Pipeline

RawLine = tuple[str, int, str]
"""An input line as read: (file name, line number, text)."""


@dataclass
class _Window:
    """Consecutive lines of one file, processed together; ``starts_file`` if the first of its file."""

    lines: list[RawLine]
    starts_file: bool
    part: Part | None = None  # a piece of a long line: the window's one line is that piece (ner.long_lines)


@dataclass
class _WindowJob:
    """Split, tag and format one window, in this process or in a worker; returns the output bytes and counts."""

    tagger: SpanPredictor
    fmt: str
    several_files: bool
    batch_size: int
    min_score: float

    def __call__(self, window: _Window) -> tuple[bytes | Piece, dict[str, float]]:
        clock = time.perf_counter()
        lines = [Line(name, number, text, split_sentences(text)) for name, number, text in window.lines]
        split = time.perf_counter()
        tag_lines(self.tagger, lines, self.batch_size)
        tagged = time.perf_counter()
        writer = WRITERS[self.fmt]
        header = "-DOCSTART- O\n\n" if window.starts_file and self.several_files and self.fmt == "conll" else ""
        if window.part is None:
            output: bytes | Piece = (
                header + "".join(writer(line, self.min_score, self.several_files) for line in lines)
            ).encode("utf-8")
        else:
            output = piece(self.fmt, lines[0], window.part, header, self.min_score, self.several_files)
        counts = {
            "sentences": sum(len(line.sentences) for line in lines),
            "tokens": sum(len(sentence) for line in lines for sentence in line.sentences),
            "entities": sum(len(kept(spans, self.min_score)) for line in lines for spans in line.spans),
            "split_seconds": split - clock,
            "tag_seconds": tagged - split,
            "write_seconds": time.perf_counter() - tagged,
        }
        return output, counts


def _windows(files: list[str], stats: dict[str, float]) -> Iterator[_Window]:
    """The input files' lines in windows of about ``WINDOW_CHARS`` characters (a window never spans files)."""
    for name in files:
        stream = sys.stdin.buffer if name == STDIN else open(name, "rb")
        try:
            clock = time.perf_counter()
            window, size, first = [], 0, True
            pending: str | None = None  # the part of a long line read and not yet in a window
            for number, text, more in read_lines(stream, "<stdin>" if name == STDIN else name, stats):
                if pending is None and not more:
                    window.append((name, number, text))
                    stats["lines"] += 1
                    size += len(text) + 1
                    if size >= WINDOW_CHARS:
                        stats["read_seconds"] += time.perf_counter() - clock
                        yield _Window(window, first)
                        clock = time.perf_counter()
                        window, size, first = [], 0, False
                    continue
                if pending is None:  # a long line starts: the lines before it go first
                    if window:
                        yield _Window(window, first)
                        window, size, first = [], 0, False
                    pending, offset, first_piece = "", 0, True
                    stats["lines"] += 1
                pending += text
                cut = cut_point(pending) if more else len(pending)
                if cut or not more:
                    stats["read_seconds"] += time.perf_counter() - clock
                    yield _Window([(name, number, pending[:cut])], first, Part(offset, first_piece, not more))
                    clock = time.perf_counter()
                    first = first_piece = False
                    offset, pending = offset + cut, pending[cut:]
                if not more:
                    pending = None
            stats["read_seconds"] += time.perf_counter() - clock
            if window or first:
                yield _Window(window, first)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        stats["files"] += 1


_worker_job: _WindowJob | None = None  # a worker process's job, set by _start_worker


def _start_worker(job: _WindowJob, threads: int) -> None:
    global _worker_job
    _worker_job = job
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    freeze_long_lived()


def freeze_long_lived() -> None:
    """Leave the objects alive now (the tagger, its vocabularies, the modules) out of every later garbage
    collection: a process that tags creates many short-lived objects, and each full collection would walk these
    again (15 % of tagging, BENCHMARKS.md). For processes that only tag: what is frozen is never collected."""
    gc.freeze()


def _run_in_worker(window: _Window) -> tuple[bytes, dict[str, float]]:
    assert _worker_job is not None
    return _worker_job(window)


def _processed(job: _WindowJob, windows: Iterator[_Window], workers: int) -> Iterator[tuple[bytes, dict[str, float]]]:
    """Each window's output, in input order; with several ``workers`` processes (one thread each), at most
    two windows per worker are read ahead."""
    if workers == 1:
        yield from map(job, windows)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")  # fork: no reloading
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job, 1)) as pool:
        pending: deque[Future] = deque()
        try:
            for window in windows:
                pending.append(pool.submit(_run_in_worker, window))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def check_tag_options(batch_size: int, min_score: float, workers: int) -> None:
    """NerError naming the option if one of ``ner tag``'s numeric options is out of range."""
    if batch_size < 1:
        raise NerError(f"--batch-size: expected an integer >= 1, got {batch_size}")
    if not 0.0 <= min_score <= 1.0:
        raise NerError(f"--min-score: expected a probability in [0, 1], got {min_score}")
    if workers < 1:
        raise NerError(f"--workers: expected an integer >= 1, got {workers}")


def tag_files(
    tagger: SpanPredictor,
    inputs: list[str],
    output: str | None = None,
    fmt: str = "jsonl",
    batch_size: int = 64,
    min_score: float = 0.0,
    progress: bool = False,
    workers: int = 1,
) -> dict[str, float]:
    """Tag text files (``-`` is standard input; a directory means its ``*.txt`` files, sorted) into ``output``
    (standard output if None) in format ``fmt``; returns counts and the seconds spent in each stage (summed
    over the ``workers``, the processes that split, tag and format windows; with one, this process does).

    Raises ``DataError`` for a missing or binary input (before writing anything where it can), ``NerError`` for a
    bad option. An output file is written under a temporary name and renamed at the end, so a failed run leaves
    none behind. A closed standard output (``ner tag ... | head``) ends the run quietly.
    """
    if fmt not in FORMATS:
        raise NerError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    check_tag_options(batch_size, min_score, workers)
    files = input_files(inputs)
    if output:
        check_output(output, inputs=files)
    started = time.perf_counter()
    stats: dict[str, float] = dict.fromkeys(
        (
            "files",
            "lines",
            "sentences",
            "tokens",
            "entities",
            "lines_with_invalid_utf8",
            "read_seconds",
            "split_seconds",
            "tag_seconds",
            "write_seconds",
        ),
        0,
    )
    job = _WindowJob(tagger, fmt, len(files) > 1, batch_size, min_score)
    title = "ner tag " + " ".join("<stdin>" if name == STDIN else name for name in inputs)
    page_start, page_end = document_frame(title) if fmt == "html" else ("", "")
    try:
        with atomic_stream(output) if output else contextlib.nullcontext(sys.stdout.buffer) as sink:
            sink.write(page_start.encode("utf-8"))
            long_lines = LongLineWriter(sink, fmt)
            with tqdm(desc="tagging", unit=" tokens", unit_scale=True, disable=not progress, file=sys.stderr) as bar:
                for data, counts in _processed(job, _windows(files, stats), workers):
                    if isinstance(data, Piece):
                        long_lines.write(data)
                    else:
                        sink.write(data)
                    for key, value in counts.items():
                        stats[key] += value
                    bar.update(counts["tokens"])
                sink.write(page_end.encode("utf-8"))
                sink.flush()
    except BrokenPipeError:
        if output:
            raise
        # The reader went away: send what Python still wants to flush at exit to /dev/null instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    stats["seconds"] = time.perf_counter() - started
    stats["tokens_per_second"] = stats["tokens"] / stats["seconds"] if stats["seconds"] else 0.0
    return stats
