"""ELMo in this repo: character ids, the biLM, published-weight import/export, the embedder and its cache,
and language-model pretraining. ``docs/elmo.md`` describes the behaviour followed."""

from ner.elmo.bilm import BiLM, BiLMOptions
from ner.elmo.cache import ElmoCache
from ner.elmo.chars import batch_mask_with_boundaries, batch_to_char_ids
from ner.elmo.embedder import Elmo, load_bilm
from ner.nn.scalar_mix import ScalarMix

__all__ = [
    "BiLM",
    "BiLMOptions",
    "Elmo",
    "ElmoCache",
    "ScalarMix",
    "batch_mask_with_boundaries",
    "batch_to_char_ids",
    "load_bilm",
]
