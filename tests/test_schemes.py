"""Tag schemes: decoding to spans, encoding from spans, detection, validation, lossless conversion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ner.data.schemes import (
    SCHEMES,
    SchemeError,
    convert_tags,
    detect_scheme,
    scheme_tags,
    spans_to_tags,
    tags_to_spans,
    validate_tags,
)

# One sentence in all three schemes: PER PER (adjacent, same type), O, LOC, ORG ORG ORG, LOC (after ORG).
SPANS = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5), ("ORG", 5, 8), ("LOC", 8, 9)]
TAGS = {
    "IOB1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "I-ORG", "I-LOC"],
    "IOB2": ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG", "B-LOC"],
    "BIOES": ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG", "S-LOC"],
}


@st.composite
def span_sets(draw: st.DrawFn) -> tuple[list[tuple[str, int, int]], int]:
    """Sorted, non-overlapping spans over a random sentence, often adjacent and of the same type."""
    pieces = draw(st.lists(st.tuples(st.sampled_from(["O", "PER", "LOC", "B-X"]), st.integers(1, 4)), max_size=8))
    spans, position = [], 0
    for kind, width in pieces:
        if kind != "O":
            spans.append((kind, position, position + width))
        position += width
    return spans, position


@pytest.mark.parametrize("scheme", SCHEMES)
def test_known_sentence_decodes_and_encodes(scheme: str) -> None:
    assert tags_to_spans(TAGS[scheme], scheme) == SPANS
    assert spans_to_tags(SPANS, len(TAGS[scheme]), scheme) == TAGS[scheme]


@pytest.mark.parametrize("source", SCHEMES)
@pytest.mark.parametrize("target", SCHEMES)
def test_known_sentence_converts_between_every_pair(source: str, target: str) -> None:
    assert convert_tags(TAGS[source], source, target) == TAGS[target]


@given(span_sets())
def test_spans_survive_every_scheme(case: tuple[list[tuple[str, int, int]], int]) -> None:
    spans, length = case
    for scheme in SCHEMES:
        tags = spans_to_tags(spans, length, scheme)
        validate_tags(tags, scheme)
        assert tags_to_spans(tags, scheme) == spans


@given(span_sets())
def test_conversion_is_lossless_in_every_direction(case: tuple[list[tuple[str, int, int]], int]) -> None:
    spans, length = case
    encoded = {scheme: spans_to_tags(spans, length, scheme) for scheme in SCHEMES}
    for source in SCHEMES:
        for target in SCHEMES:
            assert convert_tags(encoded[source], source, target) == encoded[target]
    iob2 = convert_tags(encoded["IOB1"], "IOB1", "IOB2")
    assert convert_tags(convert_tags(iob2, "IOB2", "BIOES"), "BIOES", "IOB1") == encoded["IOB1"]


@given(span_sets())
def test_detection_never_contradicts_validation(case: tuple[list[tuple[str, int, int]], int]) -> None:
    spans, length = case
    for scheme in SCHEMES:
        tags = spans_to_tags(spans, length, scheme)
        validate_tags(tags, detect_scheme([tags]))


def test_detect_scheme() -> None:
    assert detect_scheme([TAGS["IOB1"]]) == "IOB1"
    assert detect_scheme([TAGS["IOB2"]]) == "IOB2"
    assert detect_scheme([TAGS["BIOES"]]) == "BIOES"
    assert detect_scheme([["B-PER", "I-PER"], ["O", "I-LOC"]]) == "IOB1"  # an I- start anywhere means IOB1
    assert detect_scheme([["B-PER", "I-LOC"]]) == "IOB1"  # a change of type starts an entity with I-
    assert detect_scheme([["O", "O"], []]) == "IOB2"  # no entities: every scheme fits


@pytest.mark.parametrize(
    ("tags", "scheme", "index", "message"),
    [
        (["O", "X-PER"], "IOB2", 1, "ill-formed tag 'X-PER': expected 'O' or B-, I-, E-, S- and a type"),
        (["B-"], "IOB1", 0, "ill-formed tag 'B-': expected 'O' or B-, I-, E-, S- and a type"),
        (["I-"], "BIOES", 0, "ill-formed tag 'I-': expected 'O' or B-, I-, E-, S- and a type"),
        (["O", "I-PER"], "IOB2", 1, "'I-PER' after 'O': an entity starts with B- in IOB2"),
        (["B-PER", "I-LOC"], "IOB2", 1, "'I-LOC' after 'B-PER': an entity starts with B- in IOB2"),
        (
            ["O", "B-PER"],
            "IOB1",
            1,
            "'B-PER' after 'O': B- only starts an entity directly after one of the same type in IOB1",
        ),
        (
            ["I-LOC", "B-PER"],
            "IOB1",
            1,
            "'B-PER' after 'I-LOC': B- only starts an entity directly after one of the same type in IOB1",
        ),
        (["S-PER"], "IOB2", 0, "'S-PER': E- and S- tags exist only in BIOES, not in IOB2"),
        (["B-PER", "O"], "BIOES", 1, "'O' after 'B-PER': expected I-PER or E-PER in BIOES"),
        (["B-PER", "E-LOC"], "BIOES", 1, "'E-LOC' after 'B-PER': expected I-PER or E-PER in BIOES"),
        (["O", "I-PER", "E-PER"], "BIOES", 1, "'I-PER' after 'O': an entity starts with B- or S- in BIOES"),
        (["S-PER", "E-PER"], "BIOES", 1, "'E-PER' after 'S-PER': an entity starts with B- or S- in BIOES"),
        (["O", "B-PER", "I-PER"], "BIOES", 2, "'I-PER' ends the sentence in BIOES: expected E- or S-"),
    ],
)
def test_validate_tags_names_the_first_bad_tag(tags: list[str], scheme: str, index: int, message: str) -> None:
    with pytest.raises(SchemeError) as caught:
        validate_tags(tags, scheme)
    assert (caught.value.index, str(caught.value)) == (index, message)


def test_unknown_scheme_name() -> None:
    with pytest.raises(ValueError, match=r"^unknown tag scheme 'BIO': expected one of IOB1, IOB2, BIOES$"):
        convert_tags(["O"], "BIO", "IOB2")


def test_lenient_decoding_of_invalid_sequences_matches_conlleval() -> None:
    # I- after O or another type starts an entity; B- always starts one; E-/S- close one.
    assert tags_to_spans(["O", "I-PER", "I-LOC", "B-LOC", "E-LOC", "I-LOC"]) == [
        ("PER", 1, 2),
        ("LOC", 2, 3),
        ("LOC", 3, 5),
        ("LOC", 5, 6),
    ]


def test_scheme_tags_lists_every_tag_per_type() -> None:
    assert scheme_tags({"PER", "LOC"}, "BIOES") == [
        "O",
        "B-LOC",
        "I-LOC",
        "E-LOC",
        "S-LOC",
        "B-PER",
        "I-PER",
        "E-PER",
        "S-PER",
    ]
    assert scheme_tags({"PER"}, "IOB1") == ["O", "B-PER", "I-PER"]
