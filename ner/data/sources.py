"""Where a corpus comes from: CoNLL files or a Hugging Face ``datasets`` dataset, as the ``data`` config says.

For ``source: hf`` the dataset is a hub name (``datasets.load_dataset``) or a folder written by
``save_to_disk`` (``datasets.load_from_disk``); ``data.train``/``dev``/``test`` name its splits (default
``train``/``validation``/``test``). Tokens come from the ``hf_tokens_field`` column, tags from the
``hf_tags_field`` column: a sequence of ``ClassLabel`` (tag names from the feature) or of strings. Rows that
are empty or a lone ``-DOCSTART-`` token are document markers, not sentences. A sentence's ``line`` is its
row number in the split, and error messages read ``dataset[split]:row``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ner.data.conll import DOCSTART, Corpus, Sentence, check_corpus_scheme, read_conll
from ner.data.schemes import convert_tags, is_well_formed, tag_type
from ner.errors import ConfigError, DataError, location

if TYPE_CHECKING:
    from ner.config import DataConfig

Split = Literal["train", "dev", "test"]
HF_DEFAULT_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def load_corpus(data: DataConfig, split: Split, *, cache_dir: str | None = None) -> Corpus:
    """The ``split`` corpus named by the ``data`` config, read, scheme-detected and validated.

    ``cache_dir`` is where ``datasets.load_dataset`` caches a hub dataset (default: its own cache).
    """
    if split not in HF_DEFAULT_SPLITS:
        raise ValueError(f"split must be train, dev or test, got {split!r}")
    if data.source == "hf":
        return _load_hf(data, split, cache_dir)
    path = getattr(data, split)
    if path is None:
        raise ConfigError(f"data.{split}: not set: expected the path of a CoNLL file")
    return read_conll(path, data.token_column, data.tag_column, data.scheme)


def load_splits(data: DataConfig, *, cache_dir: str | None = None) -> dict[str, Corpus]:
    """The training corpus and whichever of dev/test the config names, checked against training's tags.

    For source ``conll`` an unset dev/test path is left out; for ``hf`` the three splits always load.
    """
    corpora = {"train": load_corpus(data, "train", cache_dir=cache_dir)}
    training_tags = {tag for sentence in corpora["train"].sentences for tag in sentence.tags}
    for split in ("dev", "test"):
        if data.source == "hf" or getattr(data, split) is not None:
            corpus = load_corpus(data, split, cache_dir=cache_dir)
            corpora[split] = check_unseen_tags(corpus, training_tags, data.unseen_tags)
    return corpora


def train_with_dev(corpora: dict[str, Corpus]) -> dict[str, Corpus]:
    """``training.train_with_dev``: the corpora with dev's sentences after the training corpus's (their tags in
    its scheme, the first of them starting a document) and no dev corpus left to score."""
    train, dev = corpora["train"], corpora["dev"]
    dev_sentences = dev.sentences
    if dev.scheme != train.scheme and train.scheme is not None and dev.scheme is not None:
        dev_sentences = [
            dataclasses.replace(sentence, tags=convert_tags(sentence.tags, dev.scheme, train.scheme))
            for sentence in dev_sentences
        ]
    before_train = train.gaps[: len(train.sentences)]  # gaps[i]: the lines before sentence i
    before_dev = [(DOCSTART, *(dev.gaps[0] if dev.gaps else ())), *dev.gaps[1:]]
    gaps = [*before_train, *[()] * (len(train.sentences) - len(before_train)), *before_dev]
    joined = dataclasses.replace(
        train, sentences=[*train.sentences, *dev_sentences], path=f"{train.path} + {dev.path}", gaps=gaps
    )
    return {**{split: corpus for split, corpus in corpora.items() if split != "dev"}, "train": joined}


def check_unseen_tags(corpus: Corpus, known_tags: Iterable[str], unseen_tags: str = "error") -> Corpus:
    """Check that every entity type in ``corpus`` occurs among ``known_tags`` (the training tags).

    Types are compared, not whole tags, since every tag of a known type can be expressed after scheme
    conversion. ``unseen_tags`` is the ``data.unseen_tags`` option:

    - ``"error"``: raise :class:`DataError` naming the ``file:line`` of the first unseen tag and the tag;
    - ``"O"``: return a copy in which every tag of an unseen type is ``O``, so those entities count as not
      entities (removing whole entities keeps the sequences valid in every scheme).
    """
    if unseen_tags not in ("error", "O"):
        raise ValueError(f"unseen_tags must be 'error' or 'O', got {unseen_tags!r}")
    known_types = {tag_type(tag) for tag in known_tags} | {None}  # O is never unseen
    sentences = []
    for sentence in corpus.sentences:
        unseen = [i for i, tag in enumerate(sentence.tags) if tag_type(tag) not in known_types]
        if unseen and unseen_tags == "error":
            index = unseen[0]
            tag = sentence.tags[index]
            expected = ", ".join(sorted(kind for kind in known_types if kind is not None)) or "none"
            raise DataError(
                f"{corpus.token_location(sentence, index)}: tag {tag!r} has entity type "
                f"{tag_type(tag)!r}, unseen in training: expected one of the training types ({expected}); "
                "set data.unseen_tags: O to map unseen types to O"
            )
        if unseen:
            tags = list(sentence.tags)
            for index in unseen:
                tags[index] = "O"
            sentence = dataclasses.replace(sentence, tags=tags)
        sentences.append(sentence)
    return dataclasses.replace(corpus, sentences=sentences)


def _load_hf(data: DataConfig, split: Split, cache_dir: str | None) -> Corpus:
    """Read one split of a ``datasets`` dataset into a Corpus with token and tag columns."""
    import datasets  # slow to import; only this source needs it

    name = data.hf_dataset
    if not name:
        raise ConfigError("data.hf_dataset: not set: expected a hub dataset name or a save_to_disk folder")
    split_name = getattr(data, split) or HF_DEFAULT_SPLITS[split]
    if Path(name).is_dir():
        try:
            loaded = datasets.load_from_disk(name)
        except (FileNotFoundError, ValueError) as error:
            raise DataError(f"{location(name)}: not a datasets save_to_disk folder: {_first_line(error)}") from None
        if not isinstance(loaded, datasets.DatasetDict):
            raise DataError(f"{location(name)}: holds one Dataset: expected a DatasetDict with named splits")
        if split_name not in loaded:
            raise DataError(
                f"{location(name)}: no split {split_name!r} (data.{split}): expected one of {', '.join(loaded)}"
            )
        dataset = loaded[split_name]
    else:
        try:
            dataset = datasets.load_dataset(name, split=split_name, cache_dir=cache_dir)
        except Exception as error:  # the hub raises many kinds: missing, offline, bad split, bad script
            raise DataError(
                f"data.hf_dataset: cannot load {name!r} split {split_name!r} (data.{split}): {_first_line(error)}"
            ) from None
    path = f"{name}[{split_name}]"
    tag_names = _tag_names(dataset, data, path)
    columns = dataset.select_columns([data.hf_tokens_field, data.hf_tags_field])[:]  # whole columns as lists
    sentences = []
    for row, (tokens, tag_values) in enumerate(zip(columns[data.hf_tokens_field], columns[data.hf_tags_field])):
        if not tokens or tokens == [DOCSTART]:
            continue
        if len(tag_values) != len(tokens):
            raise DataError(
                f"{location(path, row)}: {len(tokens)} tokens but {len(tag_values)} tags: expected one tag per token"
            )
        tags = tag_values if tag_names is None else _label_names(tag_values, tag_names, path, row)
        for tag in tags:
            if not is_well_formed(tag):
                raise DataError(
                    f"{location(path, row)}: ill-formed tag {tag!r}: expected 'O' or B-, I-, E-, S- followed by a type"
                )
        sentences.append(Sentence(tokens, tags, [(token, tag) for token, tag in zip(tokens, tags)], row))
    if not sentences:
        raise DataError(f"{location(path)}: no sentences: expected rows with tokens")
    corpus = Corpus(sentences, path, None, token_column=0, tag_column=1, token_lines=False)
    corpus.scheme = check_corpus_scheme(corpus, data.scheme)
    return corpus


def _tag_names(dataset: object, data: DataConfig, path: str) -> list[str] | None:
    """Tag names from a sequence-of-ClassLabel tags feature, None for string tags; DataError for anything else."""
    import datasets

    features = dataset.features
    for key, field_name in (("hf_tokens_field", data.hf_tokens_field), ("hf_tags_field", data.hf_tags_field)):
        if field_name not in features:
            raise DataError(
                f"{location(path)}: no column {field_name!r} (data.{key}): expected one of {', '.join(features)}"
            )
    feature = getattr(features[data.hf_tags_field], "feature", None)
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if isinstance(feature, datasets.Value) and feature.dtype == "string":
        return None
    raise DataError(
        f"{location(path)}: column {data.hf_tags_field!r} (data.hf_tags_field) is {features[data.hf_tags_field]}: "
        "expected a sequence of ClassLabel or of strings"
    )


def _label_names(label_ids: list[int], names: list[str], path: str, row: int) -> list[str]:
    """ClassLabel ids -> tag names; DataError for an id outside the label list (such as -1, "no label")."""
    for label_id in label_ids:
        if not 0 <= label_id < len(names):
            raise DataError(
                f"{location(path, row)}: tag id {label_id} has no ClassLabel name: expected 0 to {len(names) - 1}"
            )
    return [names[label_id] for label_id in label_ids]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
