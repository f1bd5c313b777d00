"""The real CoNLL-2003 files in ../shared/data/conll2003 (or $NER_SHARED_DIR/data/conll2003).

A user's clone has no ../shared: there these tests skip with the reason. Under ``CI=true`` (or
``NER_REQUIRE_CORPUS=1``) they fail instead when the data is missing, so CI never passes silently without them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from ner.data.conll import DOCSTART, Corpus, read_conll, write_conll
from ner.data.schemes import convert_tags, tags_to_spans

SPLITS = ("train", "dev", "test")
SENTENCES = {"train": 14_041, "dev": 3_250, "test": 3_453}
TOKENS = {"train": 203_621, "dev": 51_362, "test": 46_435}
DOCUMENTS = {"train": 946, "dev": 216, "test": 231}


def conll2003_dir() -> Path:
    shared = Path(os.environ.get("NER_SHARED_DIR") or Path(__file__).parents[2] / "shared")
    folder = shared / "data" / "conll2003"
    missing = [name for name in ("train.txt", "dev.txt", "test.txt") if not (folder / name).is_file()]
    if missing:
        reason = (
            f"CoNLL-2003 not found: {folder} lacks {', '.join(missing)}. Put the shared folder beside the "
            "repository (../shared) or set NER_SHARED_DIR to it."
        )
        if corpus_required():
            pytest.fail(reason + " (required: CI or NER_REQUIRE_CORPUS is set)", pytrace=False)
        pytest.skip(reason)
    return folder


def corpus_required() -> bool:
    """True under CI (``CI=true``) or with ``NER_REQUIRE_CORPUS=1``: missing shared data is then a failure."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("NER_REQUIRE_CORPUS", "") not in ("", "0")


@pytest.fixture(scope="module")
def corpora() -> dict[str, Corpus]:
    folder = conll2003_dir()
    return {split: read_conll(folder / f"{split}.txt") for split in SPLITS}


def test_sentence_token_and_document_counts(corpora: dict[str, Corpus]) -> None:
    assert {split: len(corpus.sentences) for split, corpus in corpora.items()} == SENTENCES
    assert {split: sum(len(s.tokens) for s in corpus.sentences) for split, corpus in corpora.items()} == TOKENS
    documents = {
        split: sum(line.split(maxsplit=1)[0] == DOCSTART for gap in corpus.gaps for line in gap if line.strip())
        for split, corpus in corpora.items()
    }
    assert documents == DOCUMENTS
    assert {corpus.scheme for corpus in corpora.values()} == {"IOB1"}


def test_training_entities_per_type(corpora: dict[str, Corpus]) -> None:
    counts = Counter(kind for s in corpora["train"].sentences for kind, _, _ in tags_to_spans(s.tags))
    assert counts == {"PER": 6_600, "LOC": 7_140, "ORG": 6_321, "MISC": 3_438}


@pytest.mark.parametrize("split", SPLITS)
def test_read_write_read_is_identical(corpora: dict[str, Corpus], split: str, tmp_path: Path) -> None:
    corpus = corpora[split]
    write_conll(corpus, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == Path(corpus.path).read_bytes()  # even the file's quirks
    again = read_conll(tmp_path / "out.txt")
    assert [(s.tokens, s.tags, s.columns, s.line) for s in again.sentences] == [
        (s.tokens, s.tags, s.columns, s.line) for s in corpus.sentences
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_iob1_to_iob2_to_bioes_to_iob1_is_the_identity(corpora: dict[str, Corpus], split: str) -> None:
    for sentence in corpora[split].sentences:
        iob2 = convert_tags(sentence.tags, "IOB1", "IOB2")
        bioes = convert_tags(iob2, "IOB2", "BIOES")
        assert convert_tags(bioes, "BIOES", "IOB1") == sentence.tags, f"line {sentence.line}"
