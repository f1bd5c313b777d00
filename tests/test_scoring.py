"""Our span scorer (ner/scoring.py) against seqeval itself: every number equal, on random and real tag sequences,
in seqeval's default mode; and seqeval's strict mode equal to it on what ner.evaluation scores."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import seqeval.metrics  # the reference: in the dev extra, with pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.scheme import IOB2

from ner.data.conll import read_conll
from ner.data.schemes import convert_tags
from ner.evaluation import score
from ner.scoring import report

REPO = Path(__file__).resolve().parents[1]
TYPES = ("PER", "LOC", "ORG", "MISC")
IOB2_TAGS = ["O", *(f"{prefix}-{kind}" for kind in TYPES for prefix in "BI")]


def seqeval_report(gold: list[list[str]], predicted: list[list[str]], strict: bool = False) -> dict[str, Any]:
    """The report as ner.evaluation built it from seqeval before ner/scoring.py."""
    options: dict[str, Any] = {"mode": "strict", "scheme": IOB2} if strict else {}
    raw = seqeval.metrics.classification_report(gold, predicted, output_dict=True, zero_division=0, **options)
    rows = {"micro": raw["micro avg"]} | {name: row for name, row in sorted(raw.items()) if not name.endswith(" avg")}
    return {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in rows.items()
    }


def assert_same(gold: list[list[str]], predicted: list[list[str]]) -> None:
    ours, reference = report(gold, predicted), seqeval_report(gold, predicted)
    assert list(ours) == list(reference)
    assert ours == reference  # floats compared exactly


# Default mode reads any prefix letter the way conlleval does; odd tags exercise its type parsing.
DEFAULT_TAGS = [*IOB2_TAGS, "E-PER", "S-LOC", "S-PER", "B", "I", "I-", "B-A-B", "I-A-B", ".", "O-X"]


def sentences(tags: list[str]) -> st.SearchStrategy[list[list[str]]]:
    return st.lists(st.lists(st.sampled_from(tags), min_size=1, max_size=12), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_default_mode_equals_seqeval_on_random_sequences(data: st.DataObject) -> None:
    gold = data.draw(sentences(DEFAULT_TAGS))
    predicted = [data.draw(st.lists(st.sampled_from(DEFAULT_TAGS), min_size=len(s), max_size=len(s))) for s in gold]
    assert_same(gold, predicted)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_equals_seqeval_on_real_sequences_with_errors(split: str) -> None:
    """Gold tags of the sample corpus against copies with a tenth of the tags replaced at random (ill-formed
    sequences included), through ner.evaluation.score as training and `ner evaluate` call it. Converted to IOB2
    through their spans, they score the same in seqeval's strict mode: why ner.evaluation has none."""
    corpus = read_conll(REPO / "data" / "sample" / f"{split}.txt")
    gold = [s.tags for s in corpus.sentences]
    rng = random.Random(17)
    iob1_tags = ["O", *(f"I-{kind}" for kind in TYPES), "B-LOC"]
    for _ in range(3):
        predicted = [[rng.choice(iob1_tags) if rng.random() < 0.1 else tag for tag in tags] for tags in gold]
        ours = score(gold, predicted, corpus.scheme)
        gold_iob2 = [convert_tags(tags, corpus.scheme, "IOB2") for tags in gold]
        predicted_iob2 = [convert_tags(tags, corpus.scheme, "IOB2") for tags in predicted]
        assert ours == {"default": seqeval_report(gold_iob2, predicted_iob2)}
        assert seqeval_report(gold_iob2, predicted_iob2, strict=True) == ours["default"]
        assert 0.5 < ours["default"]["micro"]["f1"] < 1.0


def test_ill_formed_iob2_counts_as_conlleval_says() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["I-PER", "I-PER", "O", "B-LOC"]]  # an entity started with I-: conlleval takes it
    assert report(gold, predicted)["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert_same(gold, predicted)


def test_no_entities_and_bad_input() -> None:
    assert report([["O", "O"]], [["O", "O"]]) == {"micro": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    assert_same([["O", "O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="same number"):
        report([["O"]], [["O", "O"]])
