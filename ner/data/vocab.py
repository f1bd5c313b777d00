"""Vocabularies (string <-> id) for words, characters and tags, saved as JSON in the model directory."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from pathlib import Path

from ner.data.conll import Sentence
from ner.data.schemes import scheme_tags, tag_type
from ner.errors import DataError, location
from ner.fileio import write_text_atomic

PAD = "<pad>"
UNK = "<unk>"
VOCABULARY_FILES = {"words": "words.json", "chars": "chars.json", "tags": "tags.json"}


class Vocabulary:
    """A fixed list of strings and their ids.

    With ``pad``/``unk`` set (word and character vocabularies) id 0 is padding and id 1 stands for every
    unknown string. Without them (the tag vocabulary) ids are the list positions and an unknown string is a
    KeyError. ``lowercase`` lowercases strings before lookup.
    """

    def __init__(self, items: Iterable[str], *, pad: bool = True, unk: bool = True, lowercase: bool = False) -> None:
        specials = [PAD] * pad + [UNK] * unk
        self.items: list[str] = specials + [item for item in items if item not in specials]
        self.index = {item: position for position, item in enumerate(self.items)}
        if len(self.index) != len(self.items):
            raise ValueError("vocabulary items must be unique")
        self.pad, self.unk, self.lowercase = pad, unk, lowercase
        self.unk_id = 1 if unk and pad else 0 if unk else None

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return (item.lower() if self.lowercase else item) in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} items, pad={self.pad}, unk={self.unk}, lowercase={self.lowercase})"

    def id(self, item: str) -> int:
        """The id of ``item`` (the unknown id if absent and the vocabulary has one)."""
        if self.lowercase:
            item = item.lower()
        if self.unk_id is None:
            return self.index[item]
        return self.index.get(item, self.unk_id)

    def encode(self, items: Iterable[str]) -> list[int]:
        """Ids of ``items``."""
        if self.lowercase:
            items = (item.lower() for item in items)
        if self.unk_id is None:
            return [self.index[item] for item in items]
        get, unk_id = self.index.get, self.unk_id
        return [get(item, unk_id) for item in items]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Strings of ``ids``."""
        return [self.items[i] for i in ids]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description; :meth:`from_dict` inverts it."""
        return {"items": self.items, "pad": self.pad, "unk": self.unk, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        return cls(data["items"], pad=data["pad"], unk=data["unk"], lowercase=data["lowercase"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON (atomically)."""
        write_text_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`; a DataError if the file is missing or not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{location(path)}: no such file: expected a vocabulary JSON file") from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            line = getattr(error, "lineno", None)
            raise DataError(f"{location(path, line)}: not a vocabulary JSON file: {error}") from None
        except OSError as error:
            raise DataError(f"{location(path)}: cannot read a vocabulary JSON file: {error.strerror}") from None
        keys = {"items", "pad", "unk", "lowercase"}
        if not isinstance(data, dict) or set(data) != keys:
            raise DataError(f"{location(path)}: expected a JSON object with keys {', '.join(sorted(keys))}")
        if not all(isinstance(data[key], bool) for key in ("pad", "unk", "lowercase")):
            raise DataError(f"{location(path)}: pad, unk and lowercase: expected true or false")
        items = data["items"]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise DataError(f"{location(path)}: items: expected a list of strings")
        specials = [PAD] * data["pad"] + [UNK] * data["unk"]
        if items[: len(specials)] != specials:
            raise DataError(f"{location(path)}: items: expected to start with {', '.join(specials)}")
        if len(set(items)) != len(items):
            seen: set[str] = set()
            twice = next(item for item in items if item in seen or seen.add(item))
            raise DataError(f"{location(path)}: items: {twice!r} occurs more than once")
        return cls.from_dict(data)


class WordLookup:
    """Word ids for batches: a trained vocabulary's ids, then ``len(vocabulary) + row`` for the words of a
    pretrained table (``extra``: word -> row) that the vocabulary lacks, so every word of the table has an id."""

    def __init__(self, vocabulary: Vocabulary, extra: dict[str, int]) -> None:
        offset = len(vocabulary)
        self.index = {word: offset + row for word, row in extra.items()}
        self.index.update(vocabulary.index)
        self.size = offset + (max(extra.values()) + 1 if extra else 0)
        self.unk_id, self.lowercase = vocabulary.unk_id, vocabulary.lowercase

    def __len__(self) -> int:
        return self.size

    def encode(self, items: Iterable[str]) -> list[int]:
        """Ids of ``items``; words in neither the vocabulary nor the table get the unknown id."""
        if self.lowercase:
            items = (item.lower() for item in items)
        get, unk_id = self.index.get, self.unk_id
        return [get(item, unk_id) for item in items]


def build_vocabularies(
    sentences: Sequence[Sentence],
    min_count: int = 1,
    lowercase: bool = False,
    scheme: str | None = None,
    keep: Container[str] = (),
) -> tuple[Vocabulary, Vocabulary, Vocabulary]:
    """Word, character and tag vocabularies of ``sentences``.

    Words occurring fewer than ``min_count`` times (after optional lowercasing) are left out, so they map to
    the unknown id, unless they are in ``keep`` (e.g. the words of a pretrained table). Characters come from the
    original (not lowercased) tokens. Items are ordered by falling
    frequency, ties alphabetically, so the ids are deterministic. Tags are ``O`` first, then sorted by type
    and prefix (B, I, E, S); with ``scheme`` (the scheme of the sentences' tags) the tag vocabulary holds every
    tag of ``scheme`` for each entity type seen, not only the tags seen (``S-MISC`` may be rare in training).
    """
    word_counts: Counter[str] = Counter()
    tag_set: set[str] = set()
    for sentence in sentences:
        word_counts.update(sentence.tokens)
        tag_set.update(sentence.tags)
    char_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    if lowercase:
        lowered: Counter[str] = Counter()
        for word, count in word_counts.items():
            lowered[word.lower()] += count
        word_counts = lowered
    words = Vocabulary(_by_frequency(word_counts, min_count, keep), lowercase=lowercase)
    chars = Vocabulary(_by_frequency(char_counts, 1))
    if scheme is not None:
        tag_set = set(scheme_tags({tag_type(tag) for tag in tag_set} - {None}, scheme))
    tags = Vocabulary(sorted(tag_set, key=_tag_order), pad=False, unk=False)
    return words, chars, tags


def save_vocabularies(
    directory: str | os.PathLike[str], words: Vocabulary, chars: Vocabulary, tags: Vocabulary
) -> None:
    """Save the three vocabularies as ``words.json``, ``chars.json``, ``tags.json`` in ``directory``."""
    for name, vocabulary in zip(VOCABULARY_FILES.values(), (words, chars, tags)):
        vocabulary.save(Path(directory) / name)


def load_vocabularies(directory: str | os.PathLike[str]) -> tuple[Vocabulary, Vocabulary, Vocabulary]:
    """Load the word, character and tag vocabularies saved by :func:`save_vocabularies`."""
    words, chars, tags = (Vocabulary.load(Path(directory) / name) for name in VOCABULARY_FILES.values())
    return words, chars, tags


def _by_frequency(counts: Counter[str], min_count: int, keep: Container[str] = ()) -> list[str]:
    return [
        item
        for item, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
        if count >= min_count or item in keep
    ]


def _tag_order(tag: str) -> tuple[int, str, int]:
    """``O`` first, then by type, then by prefix in B, I, E, S order."""
    return (0, "", 0) if tag == "O" else (1, tag[2:], "BIES".index(tag[0]))
