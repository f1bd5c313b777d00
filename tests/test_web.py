"""`ner tag --format html` and the highlighting it shares with the page of `ner serve` (ner/web/), tag_texts.

The browser tests run Debian's headless chromium; they are skipped where it is not installed (never in CI,
where .ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_tagging import TEXT, CapitalisedTagger

from ner.entities import tag_text, tag_texts
from ner.tagging import tag_files
from ner.web import asset, line_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="headless browser tests need Debian's chromium package (apt-get install chromium)",
)


def browser_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (network included: virtual time waits for fetches)."""
    assert CHROMIUM is not None, "chromium is not installed (.ci/run installs it)"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return result.stdout


class Marks(HTMLParser):
    """The lines (``<p class="line">``: their text and marks) and legend items of a tagged-text page."""

    def __init__(self, html_text: str) -> None:
        super().__init__()
        self.lines: list[dict] = []  # {"text", "marks": [{"type", "score", "title", "text", "coloured"}]}
        self.legend: list[str] = []  # the text of each swatch and count
        self.headings: list[str] = []
        self._element: str | None = None  # inside: "line", "mark", "legend" or "heading"
        self.feed(html_text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "p" and "line" in classes:
            self.lines.append({"text": "", "marks": []})
            self._element = "line"
        elif tag == "mark" and "ent" in classes:
            self.lines[-1]["marks"].append(
                {
                    "type": attributes["data-type"],
                    "score": attributes["data-score"],
                    "title": attributes["title"],
                    "text": "",
                    "coloured": "--ent-colour" in (attributes.get("style") or ""),
                }
            )
            self._element = "mark"
        elif "swatch" in classes or "count" in classes:
            self._element = "legend"
        elif tag == "h2":
            self._element = "heading"

    def handle_endtag(self, tag: str) -> None:
        self._element = "line" if tag == "mark" else None

    def handle_data(self, data: str) -> None:
        if self._element == "mark":
            self.lines[-1]["marks"][-1]["text"] += data
        if self._element in ("mark", "line"):
            self.lines[-1]["text"] += data
        elif self._element == "legend":
            self.legend.append(data)
        elif self._element == "heading":
            self.headings.append(data)


def html_page(tmp_path: Path, files: dict[str, str], **options: object) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    output = tmp_path / "out.html"
    tag_files(CapitalisedTagger(), [str(tmp_path / name) for name in files], output=str(output), fmt="html", **options)
    return output.read_text(encoding="utf-8")


def test_line_html_pins_the_markup() -> None:
    entities = [
        {"start": 0, "end": 4, "type": "PER", "score": 0.9},
        {"start": 9, "end": 14, "type": "LOC", "score": 0.51234},
    ]
    assert line_html('Anna <&> Paris "', entities, 7) == (
        '<p class="line" data-line="7"><mark class="ent" data-type="PER" data-score="0.9000" title="PER 0.9000">'
        'Anna</mark> &lt;&amp;&gt; <mark class="ent" data-type="LOC" data-score="0.5123" title="LOC 0.5123">'
        "Paris</mark> &quot;</p>"
    )


def test_html_format_has_a_paragraph_per_line_with_the_jsonl_entities(tmp_path: Path) -> None:
    text = TEXT + "Tom <b>&amp; Ann\tx \U0001f44d Bo\n"
    page = Marks(html_page(tmp_path, {"in.txt": text}))
    records = [json.loads(line) for line in tag_jsonl(tmp_path, text)]
    assert [line["text"] for line in page.lines] == [record["text"] for record in records]
    assert [[(m["type"], m["text"], float(m["score"])) for m in line["marks"]] for line in page.lines] == [
        [(e["type"], e["text"], e["score"]) for e in record["entities"]] for record in records
    ]
    assert page.lines[-1]["marks"][0]["title"] == "PER 0.5000"


def tag_jsonl(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "jsonl.txt").write_text(text, encoding="utf-8")
    tag_files(CapitalisedTagger(), [str(tmp_path / "jsonl.txt")], output=str(tmp_path / "out.jsonl"))
    return (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()


def test_html_format_is_one_self_contained_page(tmp_path: Path) -> None:
    page = html_page(tmp_path, {"a.txt": "Anna\n", "b.txt": "x\nBob went\n"}, min_score=0.0)
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    assert page.count("<html") == 1 and "<link" not in page and "src=" not in page  # nothing to fetch
    assert asset("highlight.css") in page and asset("highlight.js") in page
    assert f"<title>ner tag {tmp_path / 'a.txt'} {tmp_path / 'b.txt'}</title>" in page
    assert Marks(page).headings == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_html_format_of_nothing_is_still_a_page(tmp_path: Path) -> None:
    page = html_page(tmp_path, {"empty.txt": ""})
    assert page.endswith("</html>\n") and Marks(page).lines == []


class DocumentTagger(CapitalisedTagger):
    """Also records the ``document_ids`` of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.documents: list[list[int] | None] = []

    def predict_spans(
        self, sentences: list[list[str]], batch_size: int, document_ids: list[int] | None = None
    ) -> list[list[tuple[str, int, int, float]]]:
        self.documents.append(document_ids)
        return super().predict_spans(sentences, batch_size)


def test_tag_texts_tags_every_text_in_one_call_each_its_own_document() -> None:
    texts = ["John Smith met Ann. Then Bob left.", "", "nobody here", "Paris\nRome"]
    tagger = DocumentTagger()
    assert tag_texts(tagger, texts) == [tag_text(CapitalisedTagger(), text) for text in texts]
    assert tagger.documents == [[0, 0, 2, 3, 3]]  # the empty text has no sentence
    assert tag_texts(tagger, texts, min_score=0.6) == [tag_text(CapitalisedTagger(), t, min_score=0.6) for t in texts]
    assert tag_texts(DocumentTagger(), []) == []


@needs_chromium
def test_html_format_page_gets_colours_and_a_legend_in_a_browser(tmp_path: Path) -> None:
    html_page(tmp_path, {"in.txt": TEXT})
    page = Marks(browser_dom((tmp_path / "out.html").as_uri(), tmp_path / "profile"))
    assert all(mark["coloured"] for line in page.lines for mark in line["marks"])
    assert page.legend == ["PER", "6"]


@needs_chromium
def test_javascript_marks_a_line_as_python_does(tmp_path: Path) -> None:
    """NerHighlight.line (the service's page) and line_html (the html format) give the same DOM, astral
    characters included (offsets count code points in both)."""
    text = "\U0001f44d Anna & <Bo> met \u00e9mile in \U0001f3fd Paris"
    entities = [
        {"start": 2, "end": 6, "type": "PER", "score": 0.97},
        {"start": 18, "end": 23, "type": "PER", "score": 0.5},
        {"start": 29, "end": 34, "type": "LOC", "score": 0.123456},
    ]
    assert [text[e["start"] : e["end"]] for e in entities] == ["Anna", "émile", "Paris"]
    page = tmp_path / "both.html"
    page.write_text(
        f'<!doctype html><meta charset="utf-8"><div id="python">{line_html(text, entities, 3)}</div>'
        f'<div id="js"></div><script>{asset("highlight.js")}\n'
        f'document.getElementById("js").append(NerHighlight.line({json.dumps(text)}, {json.dumps(entities)}, 3));'
        f"</script>",
        encoding="utf-8",
    )
    dom = browser_dom(page.as_uri(), tmp_path / "profile")
    python = dom.split('<div id="python">')[1].split("</div>")[0]
    javascript = dom.split('<div id="js">')[1].split("</div>")[0]
    assert javascript == python
    assert [mark["text"] for mark in Marks(python).lines[0]["marks"]] == ["Anna", "émile", "Paris"]
