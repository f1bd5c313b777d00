"""What one request to ``ner serve`` may hold and how requests are batched (light: no web framework here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from ner.errors import NerError


@dataclass(frozen=True)
class Limits:
    """Request limits and batching; each field is a ``ner serve`` option (``max_texts``: ``--max-texts``)."""

    max_body_bytes: int = field(default=1 << 20, metadata={"help": "a larger request body gets 413"})
    max_texts: int = field(default=64, metadata={"help": "texts a request may hold (more: 413)"})
    max_text_chars: int = field(default=20_000, metadata={"help": "characters a text may hold (more: 413)"})
    batch_texts: int = field(
        default=32, metadata={"help": "texts tagged together at most (a request with more is tagged alone)"}
    )
    batch_wait_ms: float = field(
        default=5.0, metadata={"help": "how long a batch waits for more requests after its first"}
    )
    max_queue: int = field(default=256, metadata={"help": "requests waiting for a batch (more: 503)"})
    batch_size: int = field(default=64, metadata={"help": "sentences per forward pass"})

    def __post_init__(self) -> None:
        for each in fields(self):
            value, option = getattr(self, each.name), "--" + each.name.replace("_", "-")
            if each.type == "float" and not (math.isfinite(value) and value >= 0):
                raise NerError(f"{option}: expected a number >= 0, got {value}")
            if each.type == "int" and value < 1:
                raise NerError(f"{option}: expected an integer >= 1, got {value}")
