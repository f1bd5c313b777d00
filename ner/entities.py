"""Entities of token lists and raw text, as the taggers return them (``ner.model.Tagger``,
``ner.runtime.OnnxTagger``) and as ``ner tag`` and ``ner serve`` write them.

A span is ``(type, first token, end token exclusive, probability)``; an entity of raw text is a dict
``{"start", "end", "type", "text", "score"}`` with character offsets into the text, so that
``text[start:end] == entity["text"]``. Sentences and tokens come from ``ner.data.text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Protocol

from ner.data.text import Token, split_sentences

Span = tuple[str, int, int, float]
"""An entity in a sentence: (type, first token, end token exclusive, probability)."""


class SpanPredictor(Protocol):
    """What tagging text needs from a model (``ner.model.Tagger``, ``ner.runtime.OnnxTagger``)."""

    def predict_spans(self, sentences: list[list[str]], batch_size: int) -> list[list[Span]]:
        """Per sentence, its entities; sentences of similar length are batched, ``batch_size`` at a time."""
        ...


def checked_sentences(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    """Token lists, refusing a bare string (a common mistake: pass [["EU", "rejects"]], not ["EU rejects"])
    and tokens that are not strings (TypeError)."""
    if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
        raise TypeError("expected a list of token lists, e.g. [['EU', 'rejects', 'German', 'call']]")
    checked = [list(s) for s in sentences]
    if not set(map(type, chain.from_iterable(checked))) <= {str}:  # checked in C; str subclasses take the loop
        for number, odd in ((n, t) for n, tokens in enumerate(checked) for t in tokens if not isinstance(t, str)):
            raise TypeError(f"sentence {number}: expected tokens as strings, got {type(odd).__name__} {odd!r}")
    return checked


def tag_sentences(
    tagger: SpanPredictor, sentences: list[list[Token]], batch_size: int, document_ids: list[int] | None = None
) -> list[list[Span]]:
    """Entity spans of each sentence (empty sentences have none and are not sent to the tagger); with
    ``document_ids`` (one per sentence) the tagger takes them as ``predict_spans(..., document_ids=...)``."""
    spans: list[list[Span]] = [[] for _ in sentences]
    nonempty = [index for index, tokens in enumerate(sentences) if tokens]
    if nonempty:
        documents = {} if document_ids is None else {"document_ids": [document_ids[i] for i in nonempty]}
        predicted = tagger.predict_spans(
            [[token.text for token in sentences[i]] for i in nonempty], batch_size, **documents
        )
        for index, sentence_spans in zip(nonempty, predicted):
            spans[index] = sentence_spans
    return spans


def kept(spans: list[Span], min_score: float) -> list[Span]:
    """The spans scored at least ``min_score``."""
    return [span for span in spans if span[3] >= min_score]


def entity_dicts(text: str, sentences: list[list[Token]], spans: list[list[Span]], min_score: float) -> list[dict]:
    """Entities as dicts with character offsets into ``text``."""
    entities = []
    for tokens, sentence_spans in zip(sentences, spans):
        for kind, first, end, score in kept(sentence_spans, min_score):
            start, stop = tokens[first].start, tokens[end - 1].end
            entities.append(
                {"start": start, "end": stop, "type": kind, "text": text[start:stop], "score": round(float(score), 4)}
            )
    return entities


def tag_text(tagger: SpanPredictor, text: str, batch_size: int = 64, min_score: float = 0.0) -> list[dict]:
    """Entities in ``text`` (any number of lines): ``{"start", "end", "type", "text", "score"}`` dicts with
    character offsets into ``text``, so that ``text[start:end] == entity["text"]``."""
    sentences = split_sentences(text)
    return entity_dicts(text, sentences, tag_sentences(tagger, sentences, batch_size), min_score)


def tag_texts(
    tagger: SpanPredictor, texts: list[str], batch_size: int = 64, min_score: float = 0.0
) -> list[list[dict]]:
    """``tag_text`` of each text, in one call to the tagger (its batches mix the texts' sentences), each text
    its own document; the tagger's ``predict_spans`` takes ``document_ids`` (as ``ner.model.Tagger``'s does)."""
    split = [split_sentences(text) for text in texts]
    sentences = [sentence for text_sentences in split for sentence in text_sentences]
    documents = [number for number, text_sentences in enumerate(split) for _ in text_sentences]
    spans = iter(tag_sentences(tagger, sentences, batch_size, documents))
    return [
        entity_dicts(text, text_sentences, [next(spans) for _ in text_sentences], min_score)
        for text, text_sentences in zip(texts, split)
    ]
