"""Pretraining's data: one tokenised sentence per line (or a CoNLL file), its vocabulary, sentences as type ids,
and padded batches of similar length (at most ``training.batch_tokens`` tokens each, in a seeded order)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ner.data.conll import read_conll
from ner.elmo.chars import BOS_TOKEN, EOS_TOKEN, word_to_char_ids
from ner.errors import DataError, location

UNK_TOKEN = "<UNK>"
VOCAB_EOS = 1  # the vocabulary starts <S>, </S>, <UNK>


@dataclass
class Corpus:
    """Sentences as word-type ids, with the character ids and softmax target id of every type."""

    sentences: list[np.ndarray]  # type ids per sentence
    type_chars: torch.Tensor  # (types, 50) char ids; types 0 and 1 are <S> and </S>
    type_targets: torch.Tensor  # (types,) softmax vocabulary id (<UNK> for rare words)


def read_sentences(path: Path, format: str = "text") -> list[list[str]]:
    """One tokenised sentence per non-empty line, or the sentences of a CoNLL file (tokens in column one; tags,
    if any, are not used)."""
    if not path.is_file():
        raise DataError(f"{path}: training text not found")
    if format == "conll":
        return [sentence.tokens for sentence in read_conll(path, tag_column=None).sentences]
    sentences = []
    with path.open(encoding="utf-8") as lines:
        try:
            for line in lines:
                tokens = line.split()
                if tokens:
                    sentences.append(tokens)
        except UnicodeDecodeError as error:
            raise DataError(f"{location(path, len(sentences) + 1)}: not valid UTF-8 ({error.reason})") from None
    return sentences


def build_vocab(sentences: Sequence[Sequence[str]], min_count: int, max_vocab: int | None) -> list[str]:
    """``<S>``, ``</S>``, ``<UNK>``, then words seen at least ``min_count`` times, most frequent first."""
    counts = Counter(token for tokens in sentences for token in tokens)
    for special in (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN):
        counts.pop(special, None)
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return [BOS_TOKEN, EOS_TOKEN, UNK_TOKEN] + words[:max_vocab]


def index_corpus(sentences: Sequence[Sequence[str]], vocab: Sequence[str]) -> Corpus:
    """Map words to type ids, and types to character ids and softmax targets."""
    types = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    ids = [np.array([types.setdefault(t, len(types)) for t in tokens], dtype=np.int64) for tokens in sentences]
    word_ids = {w: i for i, w in enumerate(vocab)}
    unk = word_ids[UNK_TOKEN]
    type_chars = torch.tensor([word_to_char_ids(t) for t in types], dtype=torch.long)
    type_targets = torch.tensor([word_ids.get(t, unk) for t in types], dtype=torch.long)
    return Corpus(ids, type_chars, type_targets)


def make_batches(lengths: np.ndarray, batch_tokens: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Sentence indices grouped by length, at most ``batch_tokens`` padded tokens each (one sentence at least).

    With ``rng``, sentences of equal length are shuffled and the batch order is random.
    """
    jitter = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * (lengths[order[end]] + 2) <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def batch_tensors(corpus: Corpus, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Char ids (batch, time, 50) and targets (batch, time + 2) of sentences ``indices``, longest first."""
    sentences = sorted((corpus.sentences[i] for i in indices), key=len, reverse=True)
    lengths = torch.tensor([len(s) for s in sentences])  # (batch,)
    types = torch.zeros(len(sentences), int(lengths[0]), dtype=torch.long)  # (batch, time)
    for row, sentence in enumerate(sentences):
        types[row, : len(sentence)] = torch.from_numpy(sentence)
    real = torch.arange(types.size(1)) < lengths[:, None]  # (batch, time)
    char_ids = corpus.type_chars[types] * real[..., None]  # (batch, time, 50); zero rows = padding
    targets = torch.zeros(len(sentences), types.size(1) + 2, dtype=torch.long)  # <S> = 0 at position 0
    targets[:, 1:-1] = corpus.type_targets[types]
    targets[torch.arange(len(sentences)), lengths + 1] = VOCAB_EOS  # positions after </S> are never read
    return char_ids, targets
