"""User-facing errors: the CLI prints them as one line and exits with status 2, never a traceback."""

from __future__ import annotations


class NerError(Exception):
    """A problem with the user's input, files or config, explained in one line.

    The message names the file and line (or the config key), what was expected and what came in.
    Library code raises it; only ``ner.cli`` turns it into an exit status.
    """


class ConfigError(NerError):
    """An invalid config file, key or value."""


class DataError(NerError):
    """An unreadable or malformed data file."""


def location(path: object, line: int | None = None) -> str:
    """Format ``path:line`` (or just ``path``) for the start of an error message."""
    return f"{path}:{line}" if line is not None else f"{path}"
