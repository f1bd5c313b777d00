"""Our span scorer (ner/scoring.py) against seqeval itself: every number equal, on random and real tag sequences,
in default and strict mode."""

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


def seqeval_report(gold: list[list[str]], predicted: list[list[str]], strict: bool) -> dict[str, Any]:
    """The report as ner.evaluation built it from seqeval before ner/scoring.py."""
    options: dict[str, Any] = {"mode": "strict", "scheme": IOB2} if strict else {}
    raw = seqeval.metrics.classification_report(gold, predicted, output_dict=True, zero_division=0, **options)
    rows = {"micro": raw["micro avg"]} | {name: row for name, row in sorted(raw.items()) if not name.endswith(" avg")}
    return {name: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                   "f1": float(row["f1-score"]), "support": int(row["support"])} for name, row in rows.items()}


def assert_same(gold: list[list[str]], predicted: list[list[str]], strict: bool) -> None:
    ours, reference = report(gold, predicted, strict), seqeval_report(gold, predicted, strict)
    assert list(ours) == list(reference)
    assert ours == reference  # floats compared exactly


# Default mode reads any prefix letter the way conlleval does; odd tags exercise its type parsing.
DEFAULT_TAGS = [*IOB2_TAGS, "E-PER", "S-LOC", "S-PER", "B", "I", "I-", "B-A-B", "I-A-B", ".", "O-X"]
STRICT_TAGS = [*IOB2_TAGS, "I-PER-", "B--PER", "B", "I"]  # seqeval strips the dashes off a strict type


def sentences(tags: list[str]) -> st.SearchStrategy[list[list[str]]]:
    return st.lists(st.lists(st.sampled_from(tags), min_size=1, max_size=12), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_default_mode_equals_seqeval_on_random_sequences(data: st.DataObject) -> None:
    gold = data.draw(sentences(DEFAULT_TAGS))
    predicted = [data.draw(st.lists(st.sampled_from(DEFAULT_TAGS), min_size=len(s), max_size=len(s))) for s in gold]
    assert_same(gold, predicted, strict=False)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_strict_mode_equals_seqeval_on_random_sequences(data: st.DataObject) -> None:
    gold = data.draw(sentences(STRICT_TAGS))
    predicted = [data.draw(st.lists(st.sampled_from(STRICT_TAGS), min_size=len(s), max_size=len(s))) for s in gold]
    assert_same(gold, predicted, strict=True)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_equals_seqeval_on_real_sequences_with_errors(split: str) -> None:
    """Gold tags of the sample corpus against copies with a tenth of the tags replaced at random (ill-formed
    sequences included), through ner.evaluation.score as training and `ner evaluate` call it."""
    corpus = read_conll(REPO / "data" / "sample" / f"{split}.txt")
    gold = [s.tags for s in corpus.sentences]
    rng = random.Random(17)
    iob1_tags = ["O", *(f"I-{kind}" for kind in TYPES), "B-LOC"]
    for _ in range(3):
        predicted = [[rng.choice(iob1_tags) if rng.random() < 0.1 else tag for tag in tags] for tags in gold]
        ours = score(gold, predicted, corpus.scheme)
        gold_iob2 = [convert_tags(tags, corpus.scheme, "IOB2") for tags in gold]
        predicted_iob2 = [convert_tags(tags, corpus.scheme, "IOB2") for tags in predicted]
        for mode, strict in (("default", False), ("strict", True)):
            assert ours[mode] == seqeval_report(gold_iob2, predicted_iob2, strict)
        assert 0.5 < ours["default"]["micro"]["f1"] < 1.0


def test_ill_formed_iob2_differs_between_modes_as_seqeval_says() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["I-PER", "I-PER", "O", "B-LOC"]]  # an entity started with I-: conlleval takes it, strict does not
    assert report(gold, predicted)["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert report(gold, predicted, strict=True)["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert_same(gold, predicted, strict=True)


def test_no_entities_and_bad_input() -> None:
    assert report([["O", "O"]], [["O", "O"]]) == {"micro": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    assert_same([["O", "O"]], [["O", "O"]], strict=False)
    with pytest.raises(ValueError, match="same number"):
        report([["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="invalid tag 'E-PER' for strict IOB2"):
        report([["E-PER"]], [["O"]], strict=True)
