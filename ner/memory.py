"""Hand freed heap memory back to the operating system between the phases of a run (glibc's ``malloc_trim``).

glibc keeps the memory that a phase's temporaries freed inside its heap, where other allocations (Python
objects, the next phase's tensors) pin it: after scoring a corpus that is ~100 MB of resident memory nobody uses.
``malloc_trim(0)`` returns those free pages; it takes milliseconds, so it runs between phases, never per step.
Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
from functools import cache


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc), else nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    """glibc's ``malloc_trim`` from the symbols already loaded in the process, None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # a C library without it
        return None
