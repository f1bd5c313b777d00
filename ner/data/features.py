"""Word-form features the tagger derives from each token: its casing class."""

from __future__ import annotations

import functools

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

