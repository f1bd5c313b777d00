"""What a new tagger starts from (``Tagger.build``): vocabularies from the training corpus (tags in the model's
scheme), the pretrained vectors and the ELMo biLM its config names, and the first values of its learned word rows.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from ner.config import Config
from ner.data.conll import Corpus
from ner.data.schemes import convert_tags
from ner.data.vectors import VectorTable, load_vectors
from ner.data.vocab import Vocabulary, build_vocabularies
from ner.elmo import BiLM, load_bilm


class Parts(NamedTuple):
    """A new tagger's vocabularies, biLM and pretrained vectors (None where the config names none)."""

    words: Vocabulary
    chars: Vocabulary
    tags: Vocabulary
    bilm: BiLM | None
    vectors: VectorTable | None


def new_tagger_parts(config: Config, train: Corpus) -> Parts:
    """The vocabularies of ``train`` (words of the vectors' table kept; with ``freeze`` only the training words
    outside it get learned rows), the pretrained vectors and the biLM that ``config.model`` names."""
    model_scheme = config.model.scheme
    sentences = [dataclasses.replace(s, tags=convert_tags(s.tags, train.scheme, model_scheme)) for s in train.sentences]
    emb = config.model.embeddings
    vectors = load_vectors(emb.pretrained, emb.dim, emb.lowercase) if emb.pretrained else None
    keep = vectors.index if vectors else ()
    words, chars, tags = build_vocabularies(sentences, emb.min_count, emb.lowercase, model_scheme, keep)
    if vectors and emb.freeze:
        words = Vocabulary([w for w in words.items[2:] if w not in vectors.index], lowercase=emb.lowercase)
    bilm = None
    if config.model.elmo.enabled:
        elmo = config.model.elmo
        bilm = load_bilm(elmo.pretrained_dir, elmo.options_file, elmo.weights_file)
    return Parts(words, chars, tags, bilm, vectors)


@torch.no_grad()
def initialise_word_rows(weight: torch.Tensor, words: Vocabulary, vectors: VectorTable) -> None:
    """Learned word rows ``weight`` (num_words, dim): the table's vector where it has the word, else N(0, s^2) on
    the table's scale (``weight`` starts as N(0, 1))."""
    weight.mul_(float(vectors.vectors.std()))
    found = [(i, vectors.index[w]) for i, w in enumerate(words.items) if i > 1 and w in vectors.index]
    if found:
        ids, rows = zip(*found)
        weight[torch.tensor(ids)] = torch.from_numpy(vectors.vectors[list(rows)]).to(weight.device)
    weight[0] = 0.0  # padding
