"""Entity tag schemes IOB1, IOB2 and BIOES: detect, validate, decode to spans, convert.

A tag is ``O`` or ``P-TYPE`` with prefix ``P`` in ``B I E S`` and a non-empty ``TYPE``.

- **IOB1** (CoNLL-2003): ``I-X`` is the normal tag inside an entity; ``B-X`` marks the first token of an
  entity that directly follows another entity of the same type.
- **IOB2**: every entity starts with ``B-X``; its other tokens are ``I-X``.
- **BIOES**: ``S-X`` is a one-token entity; longer ones are ``B-X (I-X)* E-X``.

A span is ``(type, start, end)`` with ``end`` exclusive. Conversion goes through spans, so it is lossless for
every valid sequence: ``convert_tags(convert_tags(t, a, b), b, a) == t`` whenever ``t`` is valid in ``a``.

The rules of each scheme are here once: ``validate_tags`` checks a sequence by them, ``transition_rules`` gives
them as the start/transition/end masks of the CRF (``ner.nn.crf``), and ``span_segments`` the tag segments whose
probabilities under a CRF give a span's (``ner.nn.crf``, ``ner.runtime.crf``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("IOB1", "IOB2", "BIOES")
PREFIXES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}  # of each scheme's entity tags

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
    if not may_end(previous, scheme):
        raise SchemeError(len(tags) - 1, f"{previous!r} ends the sentence in BIOES: expected E- or S-")


def may_follow(previous: str, tag: str, scheme: str) -> bool:
    """Whether well-formed ``tag`` may come right after ``previous`` in ``scheme`` (``previous`` ``O`` also stands
    for the start of a sentence)."""
    return _transition_problem(previous, tag, scheme) is None


def may_end(tag: str, scheme: str) -> bool:
    """Whether well-formed ``tag`` may end a sentence in ``scheme`` (BIOES closes every entity with E- or S-)."""
    return not (scheme == "BIOES" and tag[0] in "BI")


def transition_rules(tag_names: Sequence[str], scheme: str) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """The rules of ``scheme`` over the tags ``tag_names`` (tag id i is ``tag_names[i]``): which may start a
    sentence (K,), which may follow which (K, K) [from, to], and which may end one (K,).

    ``tag_names`` must be distinct, each ``O`` or ``PREFIX-TYPE`` with one of the scheme's prefixes (IOB1/IOB2:
    B, I; BIOES: B, I, E, S): any other name (``"<pad>"``, ``"E-PER"`` in IOB2, ``"B-"``) is a ValueError.
    """
    check_scheme_name(scheme)
    duplicates = sorted({name for name in tag_names if list(tag_names).count(name) > 1})
    if duplicates:
        raise ValueError(f"tag_names must be distinct, got {', '.join(map(repr, duplicates))} more than once")
    for index, name in enumerate(tag_names):
        prefix, dash, kind = name.partition("-")
        if name != "O" and not (dash and kind and prefix in PREFIXES[scheme]):
            expected = ", ".join(f"{p}-TYPE" for p in PREFIXES[scheme])
            raise ValueError(f"tag {name!r} at index {index} is not valid in scheme {scheme}: expected O or {expected}")
    start = [may_follow("O", name, scheme) for name in tag_names]
    transitions = [[may_follow(previous, name, scheme) for name in tag_names] for previous in tag_names]
    return start, transitions, [may_end(name, scheme) for name in tag_names]


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


Segment = tuple[int, int, list[int]]
"""Tags of a stretch of a sentence: (sentence, first token, tag ids)."""


def span_segments(
    spans: Sequence[Sequence[Span]], lengths: Sequence[int], tag_names: Sequence[str], scheme: str
) -> tuple[list[Segment], list[bool]]:
    """The segments whose probabilities under a CRF in ``scheme`` (IOB2 or BIOES) give P(span is an entity of its
    type) for sentence b's ``spans[b]`` (``lengths[b]`` tokens; tag id i is ``tag_names[i]``).

    With BIOES the span's tags (``S-X`` or ``B-X I-X.. E-X``) determine it exactly: one segment. With IOB2 the
    span is ``B-X I-X..`` not followed by ``I-X``, so a span that ends before its sentence does also needs the
    segment followed by ``I-X`` (its probability is subtracted). Returns one segment per span (in span order),
    then the followed segments (in span order), and whether each span has one.
    """
    if scheme not in ("IOB2", "BIOES"):
        raise ValueError(f"span probabilities need scheme IOB2 or BIOES, got {scheme!r}")
    if len(spans) != len(lengths):
        raise ValueError(f"spans must list the spans of each of the {len(lengths)} sentences, got {len(spans)}")
    tag_ids = {name: index for index, name in enumerate(tag_names)}
    plain: list[Segment] = []
    followed: list[Segment] = []
    has_follower: list[bool] = []
    for sentence, sentence_spans in enumerate(spans):
        for kind, start, end in sentence_spans:
            if not 0 <= start < end <= lengths[sentence]:
                raise ValueError(
                    f"span ({kind!r}, {start}, {end}) of sentence {sentence} must satisfy "
                    f"0 <= start < end <= {lengths[sentence]} (the sentence length)"
                )
            names = spans_to_tags([(kind, 0, end - start)], end - start, scheme)
            follows = scheme == "IOB2" and end < lengths[sentence]
            missing = [name for name in names + [f"I-{kind}"] * follows if name not in tag_ids]
            if missing:
                raise ValueError(f"span type {kind!r} needs tag {missing[0]!r}, which is not in tag_names")
            ids = [tag_ids[name] for name in names]
            plain.append((sentence, start, ids))
            has_follower.append(follows)
            if follows:
                followed.append((sentence, start, ids + [tag_ids[f"I-{kind}"]]))
    return plain + followed, has_follower
