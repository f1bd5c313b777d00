"""The output formats of ``ner tag``: how a tagged input line is written, whole or as a piece of a long line.

- ``jsonl`` (default): one object per input line, blank lines included, in input order:
  ``{"line": N, "text": "...", "entities": [{"start": S, "end": E, "type": "PER", "text": "...", "score": P}]}``.
  ``line`` counts from 1 in each file; ``"file"`` is added when several files are tagged. ``start``/``end`` are
  Python string offsets into ``text`` (the line without its line ending and, on line 1, without a byte-order
  mark), so ``text[start:end] == entity["text"]``. ``score`` is the span probability from the CRF. U+0085,
  U+2028 and U+2029 are escaped, so each record is one line for ``str.splitlines`` too.
- ``conll``: one ``token TAG`` line per token (IOB2 tags), a blank line after each sentence; a ``-DOCSTART- O``
  line starts each file when several files are tagged.
- ``inline``: one output line per input line, tokens separated by spaces, entities bracketed:
  ``[PER John Smith] visited [LOC Paris] .``
- ``html``: a self-contained page, one paragraph per input line, entities highlighted by type with their score
  on hover and a legend, as on the page of ``ner serve`` (``ner/web/``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from ner.data.schemes import spans_to_tags
from ner.data.text import Token
from ner.entities import Span, entity_dicts, kept
from ner.long_lines import Part, Piece, json_string_body, to_json
from ner.web import line_html

FORMATS = ("jsonl", "conll", "inline", "html")


@dataclass
class Line:
    """One input line, its sentences and, once tagged, each sentence's entity spans."""

    file: str
    number: int
    text: str
    sentences: list[list[Token]]
    spans: list[list[Span]] = field(default_factory=list)


def _jsonl(line: Line, min_score: float, several_files: bool) -> str:
    """One JSON record for the line."""
    record: dict[str, object] = {"file": line.file} if several_files else {}
    record["line"] = line.number
    record["text"] = line.text
    record["entities"] = entity_dicts(line.text, line.sentences, line.spans, min_score)
    return to_json(record) + "\n"


def _conll(line: Line, min_score: float, several_files: bool) -> str:
    """``token TAG`` lines (IOB2) for each sentence of the line, each sentence followed by a blank line."""
    parts = []
    for tokens, spans in zip(line.sentences, line.spans):
        tags = spans_to_tags([span[:3] for span in kept(spans, min_score)], len(tokens), "IOB2")
        parts.append("".join(f"{token.text} {tag}\n" for token, tag in zip(tokens, tags)) + "\n")
    return "".join(parts)


def _inline(line: Line, min_score: float, several_files: bool) -> str:
    """The line's tokens separated by spaces, entities as ``[TYPE tokens]``."""
    words = []
    for tokens, spans in zip(line.sentences, line.spans):
        sentence_words = [token.text for token in tokens]
        for kind, first, end, _ in kept(spans, min_score):
            sentence_words[first] = f"[{kind} {sentence_words[first]}"
            sentence_words[end - 1] += "]"
        words.extend(sentence_words)
    return " ".join(words) + "\n"


def _html(line: Line, min_score: float, several_files: bool) -> str:
    """The line as a paragraph with its entities highlighted (a heading names each file when there are several)."""
    heading = f'<h2 class="file">{html.escape(line.file)}</h2>\n' if several_files and line.number == 1 else ""
    entities = entity_dicts(line.text, line.sentences, line.spans, min_score)
    return heading + line_html(line.text, entities, line.number) + "\n"


Writer = Callable[[Line, float, bool], str]
WRITERS: dict[str, Writer] = {"jsonl": _jsonl, "conll": _conll, "inline": _inline, "html": _html}


def piece(fmt: str, line: Line, part: Part, header: str, min_score: float, several_files: bool) -> Piece:
    """The output of a piece of a long line: what the whole line would give there (offsets from its start);
    ``header`` goes before it (``-DOCSTART- O`` in CoNLL output)."""
    entities = entity_dicts(line.text, line.sentences, line.spans, min_score)
    tail = ""
    if fmt == "jsonl":
        start = {"file": line.file, "line": line.number} if several_files else {"line": line.number}
        head = (to_json(start)[:-1] + ', "text": "' if part.first else "") + json_string_body(line.text)
        tail = ", ".join(
            to_json({**entity, "start": entity["start"] + part.offset, "end": entity["end"] + part.offset})
            for entity in entities
        )
    elif fmt == "html":
        opening = f'<p class="line" data-line="{line.number}">'
        body = line_html(line.text, entities, line.number)[len(opening) : -len("</p>")]
        heading = _html(line, min_score, several_files).split(opening)[0]
        head = (heading + opening if part.first else "") + body
    else:
        head = header + WRITERS[fmt](line, min_score, several_files).removesuffix("\n" if fmt == "inline" else "")
    return Piece(head.encode("utf-8"), tail.encode("utf-8"), part.last)
