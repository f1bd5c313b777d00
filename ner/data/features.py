"""Word-form features the tagger derives from each token: the normalised word key and a casing class."""

from __future__ import annotations

import re

# Casing classes (index 0 is padding). Lowercased word embeddings lose case; this feature gives it back.
CASING_CLASSES = ("<pad>", "lower", "upper", "title", "mixed", "numeric", "has_digit", "punct", "other")
_DIGITS = re.compile(r"\d")


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


def word_key(token: str, lowercase: bool) -> str:
    """The word-vocabulary key of ``token``: digits become 0 (``"1996"`` -> ``"0000"``), optionally lowercased."""
    key = _DIGITS.sub("0", token)
    return key.lower() if lowercase else key
