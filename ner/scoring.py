"""Span-level precision, recall, F1 and support, exactly as seqeval 1.2 computes them, without seqeval.

seqeval imports scikit-learn (for one warning class), which costs ~130 MB of memory and a second of start-up
in every training run; these few lines give the same numbers (``tests/test_scoring.py`` checks them against
seqeval on random and real tag sequences), in seqeval's default mode (``seqeval.metrics.classification_report``,
conlleval's chunking): any tag ``P-TYPE`` (prefix letter ``B I E S O``), chunks end and start by seqeval's
``end_of_chunk``/``start_of_chunk`` rules, so an ``I-X`` after ``O`` starts an entity. (Its strict mode is not
needed: ``ner.evaluation`` says why.)

A report maps ``"micro"`` and each entity type (sorted) to ``{"precision", "recall", "f1", "support"}``;
a ratio with a zero denominator is 0 (seqeval's ``zero_division=0``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

Entity = tuple[str, int, int]  # (type, first position, last position)


def report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Micro and per-type scores of ``predicted`` against ``gold`` (equal numbers of sentences and tags)."""
    if [len(tags) for tags in gold] != [len(tags) for tags in predicted]:
        raise ValueError("gold and predicted need the same number of sentences and of tags in each")
    gold_entities, predicted_entities = set(default_entities(gold)), set(default_entities(predicted))
    true = Counter(entity[0] for entity in gold_entities)
    found = Counter(entity[0] for entity in predicted_entities)
    correct = Counter(entity[0] for entity in gold_entities & predicted_entities)
    rows = {"micro": _row(sum(correct.values()), sum(found.values()), sum(true.values()))}
    for kind in sorted(true.keys() | found.keys()):
        rows[kind] = _row(correct[kind], found[kind], true[kind])
    return rows


def _row(correct: int, found: int, true: int) -> dict[str, float]:
    """P/R/F1 in seqeval's float64 arithmetic, in its order of operations."""
    precision = correct / found if found else 0.0
    recall = correct / true if true else 0.0
    denominator = precision + recall
    f1 = 2.0 * precision * recall / denominator if denominator else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": true}


def default_entities(sequences: Iterable[Sequence[str]]) -> list[Entity]:
    """``(type, first, last)`` of each chunk, positions counted over the sentences joined with an ``O`` after
    each (seqeval's ``get_entities`` on a list of sentences)."""
    chunks: list[Entity] = []
    prev_tag, prev_type, begin, position = "O", "", 0, 0
    for tags in sequences:
        for chunk in (*tags, "O"):
            tag, kind = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
            if _ends(prev_tag, tag, prev_type, kind):
                chunks.append((prev_type, begin, position - 1))
            if _starts(prev_tag, tag, prev_type, kind):
                begin = position
            prev_tag, prev_type = tag, kind
            position += 1
    return chunks


def _ends(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    """seqeval's ``end_of_chunk``: a chunk ended before this tag."""
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != kind)
    )


def _starts(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    """seqeval's ``start_of_chunk``: a chunk starts at this tag."""
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != kind)
    )
