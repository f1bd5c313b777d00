"""Entity propagation within documents: what is added, what is left alone, where documents end."""

from __future__ import annotations

import pytest

from ner.propagation import propagate_entities

DOCUMENT = [
    ["JAPAN", "BEAT", "SYRIA", "IN", "ASIAN", "CUP"],
    ["Japan", "beat", "Syria", "2-1", "in", "the", "Asian", "Cup", "on", "Friday", "."],
    ["Syria", "coach", "Asian", "Cup", "officials", "and", "japan", "watched", "."],
    ["Syria", "'s", "Syria", "Ministry", "said", "."],
]


def test_tagged_names_are_propagated_to_their_untagged_capitalised_repeats() -> None:
    spans = [[], [("LOC", 0, 1), ("LOC", 2, 3), ("MISC", 6, 8)], [], [("ORG", 2, 4)]]
    assert propagate_entities(DOCUMENT, spans) == [
        [("LOC", 0, 1), ("LOC", 2, 3), ("MISC", 4, 6)],  # the headline, in capitals
        [("LOC", 0, 1), ("LOC", 2, 3), ("MISC", 6, 8)],
        [("LOC", 0, 1), ("MISC", 2, 4)],  # "japan" in lower case stays untagged
        [("LOC", 0, 1), ("ORG", 2, 4)],  # "Syria Ministry" was tagged: its "Syria" is not taken again
    ]


def test_the_most_frequent_type_wins_and_longer_names_go_first() -> None:
    sentences = [["Syria", "won"], ["Syria", "lost"], ["Syria", "Ministry"], ["Syria", "Ministry", "and", "Syria"]]
    spans = [[("LOC", 0, 1)], [("LOC", 0, 1)], [("ORG", 0, 2)], []]
    result = propagate_entities(sentences, spans)
    assert result[3] == [("ORG", 0, 2), ("LOC", 3, 4)]
    spans = [[("ORG", 0, 1)], [("LOC", 0, 1)], [("ORG", 0, 1)], []]
    assert propagate_entities(sentences[:3] + [["Syria"]], spans)[3] == [("ORG", 0, 1)]


def test_names_do_not_cross_documents_and_bad_lengths_are_refused() -> None:
    spans = [[], [("LOC", 0, 1)], [], []]
    assert propagate_entities(DOCUMENT, spans, [0, 1, 1, 2])[0] == []  # the headline is another document
    assert propagate_entities(DOCUMENT, spans, [0, 1, 1, 2])[2] == []  # "japan" is lower case
    assert propagate_entities(DOCUMENT, [[], [("LOC", 2, 3)], [], []], [0, 1, 1, 2])[2] == [("LOC", 0, 1)]
    with pytest.raises(ValueError, match=r"^document_ids: expected one per sentence \(4\), got 3$"):
        propagate_entities(DOCUMENT, spans, [0, 1, 1])
    with pytest.raises(ValueError, match=r"^spans: expected one list per sentence \(4\), got 1$"):
        propagate_entities(DOCUMENT, [[]])
