"""The ``ner`` logger: progress and results of long work on standard error, with the time."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

log = logging.getLogger("ner")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test's capture, a redirected stream)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


_handler = _StderrHandler()


def setup_logging(prefix: str = "") -> None:
    """Send the ``ner`` logger's INFO messages to standard error, each line starting with the time and
    ``prefix`` (e.g. ``seed 2: `` in a process training one seed of several; the latest call's prefix holds)."""
    _handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s", "%H:%M:%S"))
    if _handler not in log.handlers:
        log.addHandler(_handler)
        log.setLevel(logging.INFO)
