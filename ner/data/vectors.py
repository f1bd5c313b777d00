"""Pretrained word vectors from a GloVe or word2vec text file: ``word v1 v2 ... vD`` per line.

A word2vec header line (``count dim``) is skipped. Every line must hold the word and exactly ``dim`` numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ner.errors import DataError, location


def read_vectors(path: str | Path, dim: int, lowercase: bool) -> dict[str, torch.Tensor]:
    """Map each word (lowercased if asked; the first vector of a word wins) to its (dim,) vector."""
    vectors: dict[str, torch.Tensor] = {}
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{location(path)}: no such file: expected a GloVe/word2vec text file") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                fields = line.rstrip("\n").rstrip(" ").split(" ")
                if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    continue  # word2vec header: "count dim"
                if len(fields) != dim + 1:
                    raise DataError(f"{location(path, number)}: expected a word and {dim} numbers "
                                    f"(model.embeddings.dim), got {len(fields) - 1} values")
                word = fields[0].lower() if lowercase else fields[0]
                if word not in vectors:
                    try:
                        vectors[word] = torch.tensor([float(x) for x in fields[1:]])
                    except ValueError:
                        raise DataError(f"{location(path, number)}: expected {dim} numbers after the word") from None
        except UnicodeDecodeError as error:
            raise DataError(f"{location(path, number)}: not valid UTF-8 ({error.reason})") from None
    if not vectors:
        raise DataError(f"{location(path)}: no vectors found: expected lines of 'word v1 ... v{dim}'")
    return vectors
