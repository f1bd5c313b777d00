"""Read and write CoNLL files: one token per line, columns separated by spaces or tabs, blank lines between sentences.

Rules, each a case found in real files:

- The token and tag columns are configurable (default: first and last). A file with one column is untagged.
- Columns are separated by a tab if the first token line holds one, otherwise by runs of spaces.
- Every token line has as many columns as the first one; any other count is an error.
- A blank or whitespace-only line ends a sentence.
- A line whose first field is ``-DOCSTART-`` is a document marker, not a sentence, wherever it occurs (CoNLL-2003
  keeps one at the very end of each file, and its test file writes it with different columns).
- The last line may lack its newline. Text is UTF-8; a byte-order mark is dropped.

The reader keeps every non-token line and the file's separator and line ending, so that :func:`write_conll`
gives back the file byte for byte when its token lines use single separators and no trailing space.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ner.data.schemes import (
    SchemeError,
    check_scheme_name,
    convert_tags,
    detect_scheme,
    is_well_formed,
    validate_tags,
)
from ner.errors import DataError, location
from ner.fileio import write_text_atomic

DOCSTART = "-DOCSTART-"
_BETWEEN_SENTENCES = ("",)  # the usual gap: one blank line


@dataclass(slots=True)
class Sentence:
    """One sentence: its tokens, entity tags (empty when untagged), every column as read (a tuple per token
    line, smaller than a list: the CoNLL-2003 training file takes 43 MB instead of 53), and first line (1-based)."""

    tokens: list[str]
    tags: list[str]
    columns: list[tuple[str, ...]]
    line: int


@dataclass
class Corpus:
    """The sentences of one file (or dataset split) and what it takes to write them back the same way.

    ``scheme`` is the tag scheme of ``sentences`` (None when untagged). ``gaps[i]`` holds the raw lines
    (blank lines, ``-DOCSTART-`` markers) before sentence ``i``; ``gaps[-1]`` those after the last sentence
    (empty: one blank line between sentences). ``token_lines`` is False for a dataset split, whose sentences
    are rows: a sentence's ``line`` is then its row number (from 0) and error locations name the row.
    """

    sentences: list[Sentence]
    path: str
    scheme: str | None
    token_column: int = 0
    tag_column: int | None = 1
    separator: str = " "
    gaps: list[tuple[str, ...]] = field(default_factory=list)
    newline: str = "\n"
    final_newline: bool = True
    token_lines: bool = True

    @property
    def num_columns(self) -> int:
        """Columns per token line."""
        return len(self.sentences[0].columns[0]) if self.sentences else 0

    def token_location(self, sentence: Sentence, index: int) -> str:
        """``path:line`` of token ``index`` of ``sentence`` (``path:row`` for a dataset split)."""
        return location(self.path, sentence.line + index if self.token_lines else sentence.line)

    def document_ids(self) -> list[int]:
        """The document number of each sentence, from 0: a ``-DOCSTART-`` line before a sentence starts a new
        document (CoNLL-2003 marks each news story so); a corpus without markers is one document."""
        ids, current = [], 0
        for index in range(len(self.sentences)):
            gap = self.gaps[index] if index < len(self.gaps) else ()
            if index > 0 and any(_is_docstart(line) for line in gap):
                current += 1
            ids.append(current)
        return ids

    def with_tags(self, tag_seqs: Sequence[Sequence[str]], scheme: str) -> Corpus:
        """A copy whose sentences carry ``tag_seqs`` (given in ``scheme``), converted to this corpus's scheme.

        An untagged corpus gains a last column for the tags and takes ``scheme``.
        """
        if len(tag_seqs) != len(self.sentences):
            raise ValueError(f"expected tags for {len(self.sentences)} sentences, got {len(tag_seqs)}")
        target = self.scheme or scheme
        tag_column = self.tag_column
        sentences = []
        for sentence, tags in zip(self.sentences, tag_seqs):
            if len(tags) != len(sentence.tokens):
                raise ValueError(f"sentence at line {sentence.line}: {len(sentence.tokens)} tokens, {len(tags)} tags")
            columns = sentence.columns
            if tag_column is None:
                columns = [(*row, tag) for row, tag in zip(columns, tags)]
            sentences.append(dataclasses.replace(sentence, tags=convert_tags(tags, scheme, target), columns=columns))
        if tag_column is None:
            tag_column = self.num_columns
        return dataclasses.replace(self, sentences=sentences, scheme=target, tag_column=tag_column)


def read_conll(
    path: str | os.PathLike[str],
    token_column: int = 0,
    tag_column: int | None = -1,
    scheme: str = "auto",
) -> Corpus:
    """Read a CoNLL file; raise :class:`DataError` naming ``file:line`` for anything malformed.

    ``tag_column=None`` reads an untagged file (so does a one-column file). ``scheme`` is the tag scheme of the
    file, or ``"auto"`` to detect it (see :func:`ner.data.schemes.detect_scheme`); the tags are validated
    against it.
    """
    with paused_gc():
        return _read_conll(str(path), token_column, tag_column, scheme)


def _read_conll(name: str, token_column: int, tag_column: int | None, scheme: str) -> Corpus:
    """:func:`read_conll` with the garbage collector paused."""
    text = _read_text(name)
    newline = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    if newline == "\r\n":
        lines = [line.removesuffix("\r") for line in lines]

    first_number, separator = _first_token_line(lines)
    if first_number is None:
        raise DataError(
            f"{location(name)}: no sentences, only blank lines and {DOCSTART} markers: expected CoNLL lines"
        )
    split = str.split if separator == " " else lambda line: line.split("\t")
    num_columns = len(split(lines[first_number - 1]))
    token_column = _column_index(name, first_number, "token_column", token_column, num_columns)
    if tag_column is not None:
        tag_column = _column_index(name, first_number, "tag_column", tag_column, num_columns)
        if tag_column == token_column:
            tag_column = None

    sentences: list[Sentence] = []
    gaps: list[tuple[str, ...]] = []
    gap: list[str] = []
    rows: list[tuple[str, ...]] = []
    start = 0
    known_tags: set[str] = set()
    strings: dict[str, str] = {}  # one object per distinct field: corpora repeat words and tags (40 % less memory)

    def close_sentence() -> None:
        tokens = [row[token_column] for row in rows]
        tags = [row[tag_column] for row in rows] if tag_column is not None else []
        for offset, tag in enumerate(tags):
            if tag not in known_tags:
                if not is_well_formed(tag):
                    raise DataError(
                        f"{location(name, start + offset)}: ill-formed tag {tag!r}: "
                        "expected 'O' or B-, I-, E-, S- followed by a type (e.g. B-PER)"
                    )
                known_tags.add(tag)
        gaps.append(_BETWEEN_SENTENCES if gap == [""] else tuple(gap))
        gap.clear()
        sentences.append(Sentence(tokens, tags, rows.copy(), start))
        rows.clear()

    for number, line in enumerate(lines, 1):
        if not line or line.isspace() or _is_docstart(line):
            if rows:
                close_sentence()
            gap.append(line)
            continue
        fields = split(line)
        if len(fields) != num_columns:
            raise DataError(
                f"{location(name, number)}: expected {num_columns} columns (as on line {first_number}), "
                f"got {len(fields)}"
            )
        if not rows:
            start = number
        rows.append(tuple(map(strings.setdefault, fields, fields)))
    if rows:
        close_sentence()
    gaps.append(tuple(gap))

    corpus = Corpus(sentences, name, None, token_column, tag_column, separator, gaps, newline, final_newline)
    if tag_column is not None:
        corpus.scheme = check_corpus_scheme(corpus, scheme)
    return corpus


def check_corpus_scheme(corpus: Corpus, scheme: str = "auto") -> str:
    """Detect (``"auto"``) or check the scheme name, validate every sentence against it, and return it.

    Raises :class:`DataError` at the ``file:line`` of the first tag that breaks the scheme.
    """
    tag_seqs = [sentence.tags for sentence in corpus.sentences]
    detected = scheme == "auto"
    if detected:
        scheme = detect_scheme(tag_seqs)
    else:
        check_scheme_name(scheme)
    for sentence in corpus.sentences:
        try:
            validate_tags(sentence.tags, scheme)
        except SchemeError as error:
            how = "detected" if detected else "configured"
            raise DataError(
                f"{corpus.token_location(sentence, error.index)}: {error} (the {how} scheme of this file)"
            ) from None
    return scheme


def write_conll(corpus: Corpus, path: str | os.PathLike[str]) -> None:
    """Write ``corpus`` in its own layout: columns, separator, document markers, blank lines, line ending.

    Each sentence's ``tokens`` and ``tags`` go into the token and tag columns. The file appears complete or
    not at all (written to a temporary file, then renamed).
    """
    gaps = corpus.gaps or [()] + [_BETWEEN_SENTENCES] * (len(corpus.sentences) - 1) + [()]
    if len(gaps) != len(corpus.sentences) + 1:
        raise ValueError(f"{len(gaps)} gaps for {len(corpus.sentences)} sentences: expected one more gap")
    lines: list[str] = []
    for gap, sentence in zip(gaps, corpus.sentences):
        lines.extend(gap)
        lines.extend(_token_lines(corpus, sentence))
    lines.extend(gaps[-1])
    text = corpus.newline.join(lines) + (corpus.newline if corpus.final_newline else "")
    write_text_atomic(path, text)


def write_predictions(
    path: str | os.PathLike[str],
    sentences: Sequence[Sentence],
    predictions: Sequence[Sequence[str]],
    separator: str = " ",
) -> None:
    """Write ``token gold predicted`` lines (``token predicted`` for untagged sentences), blank lines between.

    This is the input format of conlleval. Tags are written as given.
    """
    if len(predictions) != len(sentences):
        raise ValueError(f"expected predictions for {len(sentences)} sentences, got {len(predictions)}")
    blocks = []
    for sentence, predicted in zip(sentences, predictions):
        if len(predicted) != len(sentence.tokens):
            raise ValueError(f"sentence at line {sentence.line}: {len(sentence.tokens)} tokens, {len(predicted)} tags")
        columns = (sentence.tokens, sentence.tags, predicted) if sentence.tags else (sentence.tokens, predicted)
        blocks.append("\n".join(separator.join(row) for row in zip(*columns)))
    write_text_atomic(path, "\n\n".join(blocks) + "\n")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small lists that form no cycles.

    Reading CoNLL-2003 allocates about a million containers; the collector would traverse all of them
    again and again, tripling the time (measured on the training file: 1.0 s -> 0.3 s).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _token_lines(corpus: Corpus, sentence: Sentence) -> list[str]:
    """The lines of one sentence, with its current tokens and tags placed in their columns."""
    join = corpus.separator.join
    token_column, tag_column = corpus.token_column, corpus.tag_column
    lines = []
    for index, row in enumerate(sentence.columns):
        row = list(row)
        row[token_column] = sentence.tokens[index]
        if tag_column is not None:
            row[tag_column] = sentence.tags[index]
        lines.append(join(row))
    return lines


def _read_text(name: str) -> str:
    """The file's text, or a DataError for a missing, empty, binary or non-UTF-8 file."""
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{location(name)}: no such file: expected a CoNLL file") from None
    except IsADirectoryError:
        raise DataError(f"{location(name)}: is a directory: expected a CoNLL file") from None
    except OSError as error:
        raise DataError(f"{location(name)}: cannot read: {error.strerror}") from None
    if not data:
        raise DataError(f"{location(name)}: empty file: expected CoNLL lines (one token per line)")
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _line_and_column(data, nul)
        raise DataError(
            f"{location(name, line)}: looks like a binary file (NUL byte at byte offset {nul}, column {column}): "
            "expected UTF-8 text"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_and_column(data, error.start)
        raise DataError(
            f"{location(name, line)}: invalid UTF-8 byte 0x{data[error.start]:02x} at byte offset {error.start} "
            f"(byte {column} of the line): expected UTF-8 text"
        ) from None
    return text.removeprefix("\ufeff")


def _line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and 1-based byte column of byte ``offset``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _is_docstart(line: str) -> bool:
    return line.startswith(DOCSTART) and line.split(maxsplit=1)[0] == DOCSTART


def _first_token_line(lines: list[str]) -> tuple[int | None, str]:
    """1-based number of the first token line and the file's separator (tab or space)."""
    for number, line in enumerate(lines, 1):
        if line and not line.isspace() and not _is_docstart(line):
            return number, "\t" if "\t" in line.strip() else " "
    return None, " "


def _column_index(name: str, line: int, key: str, index: int, num_columns: int) -> int:
    """``index`` made non-negative, or a DataError when the file has no such column."""
    if not -num_columns <= index < num_columns:
        raise DataError(f"{location(name, line)}: {key} {index} does not exist: the file has {num_columns} columns")
    return index % num_columns
