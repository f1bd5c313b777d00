"""`ner tag` on lines too long to hold: read in pieces, tagged piece by piece, written out as they come.

A line longer than a window (``ner.tagging.WINDOW_CHARS``) is read ``WINDOW_CHARS`` bytes at a time (``held_back``
keeps a UTF-8 sequence or a ``\\r\\n`` cut by a read for the next one) and cut where sentence splitting would cut
it anyway (``ner.data.text.cut_point``), so its sentences and tokens are those of the whole line. Each piece is one
window (and one document, for the document features). Its output comes as a ``Piece``: ``head`` is written at
once, ``tail`` after the line's last piece (JSONL's entities follow the whole text; they wait in a temporary file
on disk, not in memory). So memory does not depend on the length of a line, and the output is byte for byte what
the whole line would give.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from typing import IO, BinaryIO

_LINE_SEPARATORS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Characters that ``str.splitlines`` (and JavaScript before ES2019) take as line ends, which JSON leaves raw."""


def to_json(value: object) -> str:
    """``value`` as JSON on one line: UTF-8 text as is, but U+0085, U+2028 and U+2029 escaped, so a JSONL
    record stays one line for any reader."""
    return json.dumps(value, ensure_ascii=False).translate(_LINE_SEPARATORS)


def json_string_body(text: str) -> str:
    """``text`` as the inside of a JSON string (``to_json`` without the quotes): pieces of a string give, joined,
    the string's."""
    return to_json(text)[1:-1]


def held_back(data: bytes) -> int:
    """How many bytes at the end of ``data`` (a read that ended mid-line) belong with the next read: a UTF-8
    sequence cut short, or a ``\\r`` that may be the start of ``\\r\\n``."""
    if data.endswith(b"\r"):
        return 1
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the first byte of the last sequence
            length = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF8 else 1
            return back if length > back else 0
    return 0


@dataclass
class Part:
    """Where a window's text lies in its (long) line: its character offset, first and last piece or not."""

    offset: int
    first: bool
    last: bool


@dataclass
class Piece:
    """The output of one piece of a long line: ``head`` now, ``tail`` after the line's last piece."""

    head: bytes
    tail: bytes
    last: bool


# Per format: between two non-empty heads, between two non-empty tails, before the tails, after them.
_JOINS: dict[str, tuple[bytes, bytes, bytes, bytes]] = {
    "jsonl": (b"", b", ", b'", "entities": [', b"]}\n"),
    "conll": (b"", b"", b"", b""),
    "inline": (b" ", b"", b"", b"\n"),
    "html": (b"", b"", b"", b"</p>\n"),
}


class LongLineWriter:
    """Writes the pieces of long lines to ``sink`` in order, keeping their tails in a temporary file."""

    def __init__(self, sink: BinaryIO, fmt: str) -> None:
        self.sink = sink
        self.head_join, self.tail_join, self.before_tails, self.after_tails = _JOINS[fmt]
        self.tails: IO[bytes] | None = None
        self.wrote_head = False

    def write(self, piece: Piece) -> None:
        if piece.head:
            self.sink.write((self.head_join if self.wrote_head else b"") + piece.head)
            self.wrote_head = True
        if piece.tail:
            if self.tails is None:
                self.tails = tempfile.TemporaryFile()
            elif self.tail_join:
                self.tails.write(self.tail_join)
            self.tails.write(piece.tail)
        if piece.last:
            self.sink.write(self.before_tails)
            if self.tails is not None:
                self.tails.seek(0)
                shutil.copyfileobj(self.tails, self.sink)
                self.tails.close()
            self.sink.write(self.after_tails)
            self.tails, self.wrote_head = None, False
