"""Corpus tagging on Ray Data: `ner tag RUN_DIR INPUT... --engine ray [--address ADDR]` and ``tag_dataset``.

Tagging runs in Ray actors that load the model once each (``map_batches`` with a callable class, one CPU and one
torch thread per actor), on this machine (a local Ray with ``workers`` CPUs) or on a running cluster (``address``).

- ``tag_dataset(dataset, run_dir)`` takes a Ray Dataset of text lines (a ``text`` column; other columns, such as
  ``file`` and ``line``, are kept) and gives it back with an ``entities`` column: per row, the entities ``ner tag``
  writes (``{"start", "end", "type", "text", "score"}``, offsets into the row's text). Each row is one document.
- ``tag_files_on_ray`` is ``ner tag --engine ray``: the same JSONL records as ``ner tag`` (``ner.tagging``), byte
  for byte, in input order. Files are read by Ray tasks pinned to this machine (the inputs are here), one per
  file, and cut into the windows of about ``WINDOW_CHARS`` characters that ``ner tag`` cuts, a Ray block each so
  that the actors share the windows of one file; each window is one document, split, tagged in one call and
  written as ``ner tag`` does it; this process writes the windows' records in input order (Ray Data's
  ``preserve_order``) to a temporary file renamed at the end.

What the Ray engine does not do that ``ner tag`` does: formats other than JSONL, standard input, and lines
longer than ``MAX_LINE_BYTES`` (refused with their file and line; ``ner tag`` tags them in pieces). Input files
are sniffed for binary content before anything is written; a NUL byte found later fails the run, leaving no
output. ``ray`` is the optional extra ``pip install -e ".[ray]"``; without it, a one-line error says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from ner.data.text import split_sentences
from ner.entities import kept, tag_texts
from ner.errors import DataError, NerError, location
from ner.fileio import atomic_stream, check_output
from ner.formats import WRITERS, Line
from ner.tagging import STDIN, WINDOW_CHARS, check_tag_options, input_files, read_lines, tag_lines

if TYPE_CHECKING:
    import ray.data

MAX_LINE_BYTES = WINDOW_CHARS
"""The longest line (in bytes, line ending included) the Ray engine reads."""
CONNECT_SECONDS = 10.0
"""How long ``--address`` may take to accept a connection before the run is refused."""
LOCAL_RAY = {"enable_metrics_collection": False, "worker_niceness": 0}
"""Ray's settings when it starts here: the actors run at this process's priority, as ``ner tag --workers`` does
(by default Ray adds 15 to its workers' niceness, which starves them on a busy machine); no metrics (their
collector thread can crash a worker as it exits, a stack trace on our standard error)."""
EXTRA_HINT = 'the Ray engine needs the ray extra: pip install -e ".[ray]"'


def _ray() -> Any:
    """The ``ray`` module with Ray Data, or a NerError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise NerError(f"{EXTRA_HINT} ({error})") from None
    return ray


# ---------------------------------------------------------------------------------------------------------------
# Actors


class _Counting:
    """A tagger that counts the tokens it is given (``ner.tagging.SpanPredictor``)."""

    def __init__(self, tagger: Any) -> None:
        self.tagger, self.tokens = tagger, 0

    def predict_spans(self, sentences: list[list[str]], batch_size: int, **options: Any) -> list:
        self.tokens += sum(len(sentence) for sentence in sentences)
        return self.tagger.predict_spans(sentences, batch_size, **options)


class _Actor:
    """Loads the model once per actor, one torch thread."""

    def __init__(self, run_dir: str, batch_size: int, min_score: float) -> None:
        import torch

        from ner.model import Tagger

        torch.set_num_threads(1)
        self.tagger = _Counting(Tagger.load(run_dir))
        self.batch_size, self.min_score = batch_size, min_score


class _TextTagger(_Actor):
    """A batch of rows with ``text`` -> the same rows with ``entities`` (each row one document)."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        texts = [str(text) for text in batch["text"]]
        entities = tag_texts(self.tagger, texts, self.batch_size, self.min_score)
        column = np.empty(len(entities), dtype=object)
        column[:] = entities
        return {**batch, "entities": column}


class _WindowTagger(_Actor):
    """A batch of windows (``file``, first ``line``, ``text`` = lines joined by newlines, ``several`` files)
    -> per window its JSONL records (``records``) and counts. A window is split, tagged in one call (one
    document) and written as ``ner tag`` does it (``ner.entities``, ``ner.formats``)."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        records, tokens, entities = [], [], []
        for name, first, text, several in zip(batch["file"], batch["line"], batch["text"], batch["several"]):
            lines = [
                Line(str(name), number, line, split_sentences(line))
                for number, line in enumerate(str(text).split("\n"), int(first))
            ]
            before = self.tagger.tokens
            tag_lines(self.tagger, lines, self.batch_size)
            records.append("".join(WRITERS["jsonl"](line, self.min_score, bool(several)) for line in lines))
            tokens.append(self.tagger.tokens - before)
            entities.append(sum(len(kept(spans, self.min_score)) for line in lines for spans in line.spans))
        return {"records": records, "tokens": tokens, "entities": entities}


# ---------------------------------------------------------------------------------------------------------------
# Tagging a dataset


def tag_dataset(
    dataset: ray.data.Dataset,
    run_dir: str | Path,
    *,
    batch_size: int = 64,
    min_score: float = 0.0,
    actors: int = 2,
    rows_per_call: int = 64,
) -> ray.data.Dataset:
    """``dataset`` (rows with a ``text`` column, e.g. ``ray.data.read_text``) with an ``entities`` column added:
    per row, its entities as ``ner tag`` writes them, each row one document. ``actors`` actors of one CPU each
    load the model once and tag ``rows_per_call`` rows per call (their sentences batched together,
    ``batch_size`` at a time). The rows come out in input order: this sets Ray Data's ``preserve_order`` in the
    dataset's context (which its parent shares)."""
    ray = _ray()
    check_tag_options(batch_size, min_score, actors)
    tagged = dataset.map_batches(
        _TextTagger,
        fn_constructor_kwargs={
            "run_dir": str(Path(run_dir).resolve()),
            "batch_size": batch_size,
            "min_score": min_score,
        },
        batch_size=rows_per_call,
        batch_format="numpy",
        num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    tagged.context.execution_options.preserve_order = True
    return tagged


# ---------------------------------------------------------------------------------------------------------------
# Reading files


def _lines(path: str, name: str) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of the file at ``path`` (``name`` in messages), read as ``ner tag`` reads it
    (``ner.tagging.read_lines``); a line longer than ``MAX_LINE_BYTES`` is refused with its file and line."""
    stats = {"lines_with_invalid_utf8": 0.0}
    with open(path, "rb") as stream:
        for number, text, more in read_lines(stream, name, stats):
            if more:
                raise DataError(
                    f"{location(name, number)}: a line longer than {MAX_LINE_BYTES:,} bytes; the Ray "
                    f"engine reads lines up to that length (ner tag without --engine ray reads any)"
                )
            yield number, text


def _file_windows(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The windows of the file at ``row["path"]`` (``row["file"]`` as given): consecutive lines of about
    ``WINDOW_CHARS`` characters (a line is never cut), cut where ``ner tag`` cuts them, as rows (``file``, first
    ``line``, ``text``, ``several``)."""
    name, lines, first, size = str(row["file"]), [], 1, 0
    for number, text in _lines(str(row["path"]), name):
        first = number if not lines else first
        lines.append(text)
        size += len(text) + 1
        if size >= WINDOW_CHARS:
            yield {"file": name, "line": first, "text": "\n".join(lines), "several": row["several"]}
            lines, size = [], 0
    if lines:
        yield {"file": name, "line": first, "text": "\n".join(lines), "several": row["several"]}


# ---------------------------------------------------------------------------------------------------------------
# ner tag --engine ray


def _reachable(address: str) -> None:
    """Refuse, within ``CONNECT_SECONDS``, a ``HOST:PORT`` nothing listens on."""
    if address.startswith("ray://"):
        raise NerError(
            f"--address {address}: Ray Client addresses are not supported (the input files are read where "
            f"ner tag runs): run it on a node of the cluster with --address HOST:PORT of the head"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NerError(
            f"--address: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379) or auto, got {address!r}"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, socket.timeout) else error.strerror or str(error)
        raise NerError(
            f"--address {address}: no Ray cluster reachable there ({reason}); start one with "
            f"`ray start --head` or leave --address out to run on this machine"
        ) from None


@contextlib.contextmanager
def _connected(ray: Any, address: str | None, workers: int) -> Iterator[None]:
    """Ray started on this machine (``workers`` CPUs) or connected to ``address``, shut down at the end; a Ray
    session the application started itself is used as it is."""
    if ray.is_initialized():
        yield
        return
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING, _system_config=LOCAL_RAY)
    except (ConnectionError, RuntimeError, ValueError) as error:
        ray.shutdown()
        where = f"--address {address}: cannot connect to a Ray cluster" if address else "cannot start Ray here"
        raise NerError(f"{where}: {str(error).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _settings(context: Any, preserve_order: bool, **values: Any) -> Iterator[None]:
    """Ray Data's ``context`` with ``values`` (and ``preserve_order``) set, as it was again at the end."""
    saved = {name: getattr(context, name) for name in values}
    order = context.execution_options.preserve_order
    try:
        for name, value in values.items():
            setattr(context, name, value)
        context.execution_options.preserve_order = preserve_order
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        context.execution_options.preserve_order = order


def _user_error(error: BaseException) -> NerError | None:
    """The NerError a Ray task failed with (Ray wraps it, with its traceback), if that is what happened."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(current, NerError) and not isinstance(cause, BaseException):
            return NerError(str(current).splitlines()[0])
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


def tag_files_on_ray(
    run_dir: str | Path,
    inputs: list[str],
    output: str | None = None,
    batch_size: int = 64,
    min_score: float = 0.0,
    workers: int = 2,
    address: str | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """``ner tag RUN_DIR INPUT... --engine ray``: JSONL records of the input files, as ``ner.tagging.tag_files``
    writes them, tagged by ``workers`` Ray actors; into ``output`` (written under a temporary name, renamed at the
    end) or standard output. Returns counts, ``tokens_per_second`` and ``seconds_to_first_record`` (the actors'
    start-up)."""
    check_tag_options(batch_size, min_score, workers)
    if STDIN in inputs:
        raise NerError("--engine ray: standard input (-) is not supported; give files or folders")
    files = input_files(inputs)
    if output:
        check_output(output, inputs=files)
    ray = _ray()
    if address and address != "auto":
        _reachable(address)
    from ner.model import Tagger

    Tagger.load(run_dir)  # a bad run directory is one line here, not an actor's traceback
    stats = dict.fromkeys(("files", "lines", "tokens", "entities"), 0.0)
    started = time.perf_counter()
    with _connected(ray, address, workers):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}  # the input files are on this machine
        # A block per window (so the actors share a file's windows), in input order, no progress bars of Ray's:
        # the datasets keep these settings, the application's context gets its own back.
        with _settings(
            ray.data.DataContext.get_current(), target_max_block_size=1, enable_progress_bars=False, preserve_order=True
        ):
            windows = ray.data.from_items(
                [{"file": name, "path": str(Path(name).resolve()), "several": len(files) > 1} for name in files]
            ).flat_map(_file_windows, num_cpus=0, label_selector=here)
            tagged = windows.map_batches(
                _WindowTagger,
                fn_constructor_kwargs={
                    "run_dir": str(Path(run_dir).resolve()),
                    "batch_size": batch_size,
                    "min_score": min_score,
                },
                batch_size=1,
                num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=workers),
            )
        try:
            with (
                atomic_stream(output) if output else contextlib.nullcontext(sys.stdout.buffer) as sink,
                tqdm(desc="tagging", unit=" tokens", unit_scale=True, disable=not progress, file=sys.stderr) as bar,
            ):
                for row in tagged.iter_rows():
                    stats["seconds_to_first_record"] = stats.get(
                        "seconds_to_first_record", time.perf_counter() - started
                    )
                    sink.write(row["records"].encode("utf-8"))
                    stats["lines"] += row["records"].count("\n")
                    stats["tokens"] += row["tokens"]
                    stats["entities"] += row["entities"]
                    bar.update(row["tokens"])
                sink.flush()
        except BrokenPipeError:
            if output:
                raise
            # The reader went away (``... | head``): what Python still flushes at exit goes to /dev/null.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except Exception as error:  # Ray wraps a task's error (a NUL byte found late) with its traceback
            user = _user_error(error)
            if user is None:
                raise
            raise user from None
    stats["files"] = len(files)
    stats["seconds"] = time.perf_counter() - started
    stats["tokens_per_second"] = stats["tokens"] / stats["seconds"] if stats["seconds"] else 0.0
    return stats
