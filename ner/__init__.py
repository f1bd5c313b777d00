"""ner: BiLSTM-CRF named-entity recognition on ELMo-style contextual embeddings."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tagger", "__version__"]


def __getattr__(name: str) -> Any:
    # `from ner import Tagger` without importing torch for every `ner --help`.
    if name == "Tagger":
        from ner.model import Tagger

        return Tagger
    raise AttributeError(f"module 'ner' has no attribute {name!r}")
