"""Entity tag schemes IOB1, IOB2 and BIOES: detect, validate, decode to spans, convert.

A tag is ``O`` or ``P-TYPE`` with prefix ``P`` in ``B I E S`` and a non-empty ``TYPE``.

- **IOB1** (CoNLL-2003): ``I-X`` is the normal tag inside an entity; ``B-X`` marks the first token of an
  entity that directly follows another entity of the same type.
- **IOB2**: every entity starts with ``B-X``; its other tokens are ``I-X``.
- **BIOES**: ``S-X`` is a one-token entity; longer ones are ``B-X (I-X)* E-X``.

A span is ``(type, start, end)`` with ``end`` exclusive. Conversion goes through spans, so it is lossless for
every valid sequence: ``convert_tags(convert_tags(t, a, b), b, a) == t`` whenever ``t`` is valid in ``a``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("IOB1", "IOB2", "BIOES")

Span = tuple[str, int, int]


class SchemeError(ValueError):
    """A tag sequence that breaks its scheme's rules; ``index`` is the position of the offending tag."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def is_well_formed(tag: str) -> bool:
    """Whether ``tag`` is ``O`` or ``B-``/``I-``/``E-``/``S-`` followed by a non-empty type."""
    return tag == "O" or (len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES")


def tag_type(tag: str) -> str | None:
    """The entity type of ``tag`` (``"PER"`` for ``"B-PER"``), or None for ``O``."""
    return None if tag == "O" else tag[2:]


def scheme_tags(types: Iterable[str], scheme: str) -> list[str]:
    """Every tag of ``scheme`` for the entity ``types``: ``O``, then per type B, I (and E, S in BIOES)."""
    check_scheme_name(scheme)
    prefixes = "BIES" if scheme == "BIOES" else "BI"
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in prefixes]


def check_scheme_name(scheme: str) -> None:
    """Raise ValueError unless ``scheme`` is one of IOB1, IOB2, BIOES."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")


def detect_scheme(tag_seqs: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of well-formed tag sequences.

    BIOES if any ``E-``/``S-`` tag occurs; otherwise IOB1 if some entity starts with ``I-`` (after ``O``, at the
    start of a sentence, or after another type); otherwise IOB2 (also for all-``O`` data, which fits every
    scheme).
    """
    iob1 = False
    for tags in tag_seqs:
        previous = "O"
        for tag in tags:
            prefix = tag[0]
            if prefix in "ES":
                return "BIOES"
            if prefix == "I" and (previous == "O" or previous[2:] != tag[2:]):
                iob1 = True
            previous = tag
    return "IOB1" if iob1 else "IOB2"


def validate_tags(tags: Sequence[str], scheme: str) -> None:
    """Raise :class:`SchemeError` at the first tag that is ill-formed or breaks ``scheme``'s rules."""
    check_scheme_name(scheme)
    previous = "O"
    for index, tag in enumerate(tags):
        if not is_well_formed(tag):
            raise SchemeError(index, f"ill-formed tag {tag!r}: expected 'O' or B-, I-, E-, S- and a type")
        problem = _transition_problem(previous, tag, scheme)
        if problem:
            raise SchemeError(index, problem)
        previous = tag
    if scheme == "BIOES" and previous[0] in "BI":
        raise SchemeError(len(tags) - 1, f"{previous!r} ends the sentence in BIOES: expected E- or S-")


def _transition_problem(previous: str, tag: str, scheme: str) -> str | None:
    """Why ``previous`` -> ``tag`` is not allowed in ``scheme`` (both well-formed), or None if it is."""
    prefix, kind = tag[0], tag[2:]
    same_entity = previous != "O" and previous[2:] == kind
    if scheme == "BIOES":
        open_entity = previous[0] in "BI"
        if open_entity and not (prefix in "IE" and same_entity):
            return f"{tag!r} after {previous!r}: expected I-{previous[2:]} or E-{previous[2:]} in BIOES"
        if not open_entity and prefix in "IE":
            return f"{tag!r} after {previous!r}: an entity starts with B- or S- in BIOES"
        return None
    if prefix in "ES":
        return f"{tag!r}: E- and S- tags exist only in BIOES, not in {scheme}"
    if scheme == "IOB2" and prefix == "I" and not same_entity:
        return f"{tag!r} after {previous!r}: an entity starts with B- in IOB2"
    if scheme == "IOB1" and prefix == "B" and not same_entity:
        return f"{tag!r} after {previous!r}: B- only starts an entity directly after one of the same type in IOB1"
    return None


def tags_to_spans(tags: Sequence[str], scheme: str | None = None) -> list[Span]:
    """Entity spans ``(type, start, end)`` of ``tags``, end exclusive.

    With ``scheme`` the tags are first validated (:class:`SchemeError` if they break it). Without it, decoding
    is lenient like conlleval, and the same rule serves all three schemes: ``B-``/``S-`` or a change of type
    starts an entity, ``I-``/``E-`` of the current type continue it, ``E-``/``S-``/``O`` close it.
    """
    if scheme is not None:
        validate_tags(tags, scheme)
    spans: list[Span] = []
    kind: str | None = None  # type of the open entity
    start = 0
    for index, tag in enumerate(tags):
        if tag == "O":
            if kind is not None:
                spans.append((kind, start, index))
                kind = None
            continue
        prefix, tag_kind = tag[0], tag[2:]
        if prefix in "BS" or tag_kind != kind:
            if kind is not None:
                spans.append((kind, start, index))
            kind, start = tag_kind, index
        if prefix in "ES":
            spans.append((kind, start, index + 1))
            kind = None
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Tags of a sentence of ``length`` tokens holding the sorted, non-overlapping ``spans``, in ``scheme``."""
    check_scheme_name(scheme)
    tags = ["O"] * length
    previous_end, previous_kind = -1, None
    for kind, start, end in spans:
        tags[start:end] = [f"I-{kind}"] * (end - start)
        if scheme == "IOB2":
            tags[start] = f"B-{kind}"
        elif scheme == "IOB1":
            if start == previous_end and kind == previous_kind:
                tags[start] = f"B-{kind}"
        elif end - start == 1:
            tags[start] = f"S-{kind}"
        else:
            tags[start], tags[end - 1] = f"B-{kind}", f"E-{kind}"
        previous_end, previous_kind = end, kind
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Rewrite ``tags`` from scheme ``source`` into scheme ``target`` (lossless for valid input)."""
    check_scheme_name(source)
    if source == target:
        return list(tags)
    return spans_to_tags(tags_to_spans(tags), len(tags), target)
