"""Word-form features the tagger derives from each token: its casing class, and how the same word is
written elsewhere in its document."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

# Casing classes (index 0 is padding). Lowercased word embeddings lose case; this feature gives it back.
CASING_CLASSES = ("<pad>", "lower", "upper", "title", "mixed", "numeric", "has_digit", "punct", "other")


@functools.lru_cache(maxsize=1 << 16)  # tokens repeat: tagging a large file asks for the same words again
def casing_class(token: str) -> int:
    """Index into CASING_CLASSES for ``token``: ``"Paris"`` -> title, ``"EU"`` -> upper, ``"1996"`` -> numeric."""
    if token.isdigit():
        return 5
    if any(c.isdigit() for c in token):
        return 6
    letters = [c for c in token if c.isalpha()]
    if not letters:
        return 7 if token and all(not c.isalnum() for c in token) else 8
    if all(c.islower() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 2
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 3
    return 4


# Document casing classes (index 0 is padding): how a token's word (lowercased) is written at the *other*
# places of its document where casing is informative: not the first token of a sentence, not in a sentence
# written all in capitals (headlines, tables). "EU REJECTS GERMAN CALL" or a sentence-initial "Hurricane" say
# little by themselves; "... the German call ..." or "... a hurricane ..." further down say which words are names.
DOCUMENT_CASING_CLASSES = ("<pad>", "unseen", "lower", "capitalized", "both")


def document_casing(document: Sequence[Sequence[str]]) -> list[list[int]]:
    """Index into DOCUMENT_CASING_CLASSES for every token of ``document`` (its sentences, in order), from the
    informative occurrences of the same lowercased word elsewhere in the document (the token's own excluded):
    the tokens after the first that start with a letter, in sentences with a lower-case letter."""
    spellings: dict[str, tuple[str, int]] = {}  # token -> (lowercased, 1 lower-case / 2 capital initial / 0)
    words, marks = [], []  # per token of the document: lowercased word, 0 or its initial if informative
    for tokens in document:
        informative = not " ".join(tokens).isupper()  # no lower-case letter: a headline or a table row
        for position, token in enumerate(tokens):
            entry = spellings.get(token)
            if entry is None:
                initial = token[:1]
                entry = spellings[token] = (token.lower(), (2 if initial.isupper() else 1) if initial.isalpha() else 0)
            words.append(entry[0])
            marks.append(entry[1] if informative and position else 0)
    lower_counts = Counter(word for word, mark in zip(words, marks) if mark == 1)
    capital_counts = Counter(word for word, mark in zip(words, marks) if mark == 2)
    classes = [
        1 + (lower_counts[word] > (mark == 1)) + 2 * (capital_counts[word] > (mark == 2))
        for word, mark in zip(words, marks)
    ]
    by_sentence, start = [], 0
    for tokens in document:
        by_sentence.append(classes[start : start + len(tokens)])
        start += len(tokens)
    return by_sentence


def document_ranges(count: int, document_ids: Sequence[int] | None = None) -> list[range]:
    """The sentence ranges of the documents among ``count`` sentences: runs of equal ``document_ids`` entries
    (one per sentence; None: all one document)."""
    if document_ids is None:
        return [range(count)]
    if len(document_ids) != count:
        raise ValueError(f"document_ids: expected one per sentence ({count}), got {len(document_ids)}")
    starts = [i for i in range(count) if i == 0 or document_ids[i] != document_ids[i - 1]]
    return [range(start, end) for start, end in zip(starts, starts[1:] + [count])]


def documents_casing(sentences: Sequence[Sequence[str]], document_ids: Sequence[int] | None = None) -> list[list[int]]:
    """``document_casing`` of every sentence, documents as ``document_ranges`` gives them."""
    return [
        classes
        for document in document_ranges(len(sentences), document_ids)
        for classes in document_casing(sentences[document.start : document.stop])
    ]
