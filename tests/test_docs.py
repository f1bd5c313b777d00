"""Every Markdown file that code, tests, benchmarks or configs cite exists in the repository (at its root or
under ``docs/``), so no docstring points at a document a reader of the repository cannot open.

A citation is a word ending in ``.md`` anywhere in a file's text; a quoted string holding only the name
(``"notes.md"``, a path a test creates) is an operand, not a citation.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("ner", "tests", "bench", "configs")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".toml", ".sh", ".cpp", ".html", ".js", ".css", ".txt"}
CITATION = re.compile(r"(?<![\w.-])([A-Za-z_]+\.md)(?!\w)")


def cited_markdown(text: str) -> set[str]:
    """The ``.md`` file names cited in ``text``, leaving out quoted strings that are only a file name."""
    names = set()
    for match in CITATION.finditer(text):
        before = text[match.start() - 1] if match.start() else ""
        after = text[match.end()] if match.end() < len(text) else ""
        if before in "\"'" and before and after == before:
            continue
        names.add(match.group(1))
    return names


def _citations() -> dict[str, set[str]]:
    """File (relative to the root) -> the Markdown names it cites, for every scanned text file."""
    found = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                names = cited_markdown(path.read_text(encoding="utf-8"))
                if names:
                    found[str(path.relative_to(ROOT))] = names
    return found


def test_citation_pattern() -> None:
    md = ".md"  # written apart, so that this file cites no missing document itself
    text = f'See ``docs/elmo{md}`` section 2 and README{md}; (folder / "notes{md}") is a path; x{md}5, a-b{md}.'
    assert cited_markdown(text) == {f"elmo{md}", f"README{md}"}
    assert cited_markdown(f"# OUTSIDE_SPEC{md} sections 3-4") == {f"OUTSIDE_SPEC{md}"}


def test_cited_markdown_files_exist_in_the_repository() -> None:
    citations = _citations()
    assert "elmo.md" in citations["ner/elmo/bilm.py"]  # the scan sees docstrings
    missing = sorted(
        f"{file}: {name}"
        for file, names in citations.items()
        for name in names
        if not (ROOT / name).is_file() and not (ROOT / "docs" / name).is_file()
    )
    assert missing == []
