"""Data layer: CoNLL files and datasets -> sentences -> vocabularies -> padded batches."""

from ner.data.batching import Batch, Batcher
from ner.data.conll import Corpus, Sentence, read_conll, write_conll, write_predictions
from ner.data.schemes import (
    SCHEMES,
    SchemeError,
    convert_tags,
    detect_scheme,
    spans_to_tags,
    tags_to_spans,
    validate_tags,
)
from ner.data.sources import check_unseen_tags, load_corpus, load_splits
from ner.data.vocab import Vocabulary, build_vocabularies, load_vocabularies, save_vocabularies

__all__ = [
    "SCHEMES",
    "Batch",
    "Batcher",
    "Corpus",
    "SchemeError",
    "Sentence",
    "Vocabulary",
    "build_vocabularies",
    "check_unseen_tags",
    "convert_tags",
    "detect_scheme",
    "load_corpus",
    "load_splits",
    "load_vocabularies",
    "read_conll",
    "save_vocabularies",
    "spans_to_tags",
    "tags_to_spans",
    "validate_tags",
    "write_conll",
    "write_predictions",
]
