"""Document-level entity propagation after decoding: a name tagged somewhere in a document is tagged wherever
else it appears there, untagged, with a capital letter (as in Mikheev et al. 1999's "partial matching").

News names an entity in full once and repeats it in headlines, tables and later sentences where the tagger has
less context to go on; each sentence is decoded alone, so those repeats are sometimes missed. On CoNLL-2003 dev
this step adds about 0.3 F1 (BENCHMARKS.md). Spans are ``(type, start, end_exclusive)`` token offsets.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from ner.data.features import document_ranges

Span = tuple[str, int, int]


def propagate_entities(
    sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]], document_ids: Sequence[int] | None = None
) -> list[list[Span]]:
    """``spans`` of each sentence plus the propagated ones, in order; consecutive sentences with the same
    ``document_ids`` entry form a document (None: all one document).

    Every tagged text (its tokens lowercased, with at least one letter) is looked for in the other places of its
    document; an occurrence that starts with a capital letter and overlaps no span becomes an entity of the
    type the text was tagged with most often there. Longer texts are placed first.
    """
    if len(spans) != len(sentences):
        raise ValueError(f"spans: expected one list per sentence ({len(sentences)}), got {len(spans)}")
    result = [sorted(sentence_spans, key=_start) for sentence_spans in spans]
    for document in document_ranges(len(sentences), document_ids):
        _propagate_in_document(sentences[document.start : document.stop], result[document.start : document.stop])
    return result


def _propagate_in_document(sentences: Sequence[Sequence[str]], spans: list[list[Span]]) -> None:
    """Add the propagated spans of one document to ``spans`` (in place)."""
    lowered = [[token.lower() for token in tokens] for tokens in sentences]
    votes: defaultdict[tuple[str, ...], Counter[str]] = defaultdict(Counter)  # entity text -> type counts
    for words, sentence_spans in zip(lowered, spans):
        for kind, start, end in sentence_spans:
            text = tuple(words[start:end])
            if any(c.isalpha() for word in text for c in word):
                votes[text][kind] += 1
    by_first_word: defaultdict[str, list[tuple[str, ...]]] = defaultdict(list)  # longest texts first
    for text in sorted(votes, key=len, reverse=True):
        by_first_word[text[0]].append(text)
    for tokens, words, sentence_spans in zip(sentences, lowered, spans):
        covered = [False] * len(words)
        for _, start, end in sentence_spans:
            covered[start:end] = [True] * (end - start)
        added = []
        for start, word in enumerate(words):
            texts = by_first_word.get(word)
            if texts is None or covered[start] or not tokens[start][:1].isupper():
                continue
            for text in texts:
                end = start + len(text)
                if tuple(words[start:end]) == text and not any(covered[start:end]):
                    added.append((votes[text].most_common(1)[0][0], start, end))
                    covered[start:end] = [True] * len(text)
                    break
        if added:
            sentence_spans[:] = sorted(sentence_spans + added, key=_start)


def _start(span: Span) -> int:
    return span[1]
