"""The HTML, CSS and JavaScript that show tagged text, shared by the `ner serve` page and `ner tag --format html`.

Both write an entity the same way, ``<mark class="ent" data-type="PER" data-score="0.9731" title="PER 0.9731">``
around its text, one ``<p class="line">`` per line: ``line_html`` here (the html format), ``NerHighlight.line`` in
``highlight.js`` (the page, from the service's JSON). ``NerHighlight.decorate`` then colours the marks by type and
writes the legend, and ``highlight.css`` styles them. Pages are self-contained: the CSS and JavaScript are inlined.
"""

from __future__ import annotations

import html
from importlib.resources import files


def asset(name: str) -> str:
    """The text of a file of this package (``highlight.css``, ``highlight.js``, ``page.html``, ...)."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def _inlined(template: str) -> str:
    """``template`` with its ``{{style}}`` and ``{{script}}`` replaced by the shared CSS and JavaScript."""
    return template.replace("{{style}}", asset("highlight.css")).replace("{{script}}", asset("highlight.js"))


def service_page() -> str:
    """The page of ``GET /``: a text box, the tagged text and the legend."""
    return _inlined(asset("page.html"))


def document_frame(title: str) -> tuple[str, str]:
    """The start and the end of a tagged-text document: the ``line_html`` of every line goes between them."""
    start, end = _inlined(asset("document.html")).replace("{{title}}", html.escape(title)).split("{{body}}")
    return start, end


def line_html(text: str, entities: list[dict], number: int) -> str:
    """One line of text as a ``<p class="line">`` with a ``<mark>`` per entity (sorted ``{"start", "end", "type",
    "score"}`` dicts, offsets into ``text``), the same markup as ``NerHighlight.line``."""
    parts, at = [f'<p class="line" data-line="{number}">'], 0
    for entity in entities:
        start, end, kind, score = entity["start"], entity["end"], entity["type"], entity["score"]
        parts.append(html.escape(text[at:start]))
        parts.append(
            f'<mark class="ent" data-type="{html.escape(kind)}" data-score="{score:.4f}" '
            f'title="{html.escape(kind)} {score:.4f}">{html.escape(text[start:end])}</mark>'
        )
        at = end
    parts.append(html.escape(text[at:]) + "</p>")
    return "".join(parts)
