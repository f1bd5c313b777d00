"""Hand freed heap memory back to the operating system: between the phases of a run (glibc's ``malloc_trim``),
and at once for large blocks (a fixed ``mmap`` threshold).

glibc keeps the memory that a phase's temporaries freed inside its heap, where other allocations (Python
objects, the next phase's tensors) pin it: after scoring a corpus that is ~100 MB of resident memory nobody uses.
``malloc_trim(0)`` returns those free pages; it takes milliseconds, so it runs between phases, never per step.

glibc also serves blocks of 128 kB or more with their own mappings, unmapped when freed, but it raises that
threshold to the size of every such block freed (up to 32 MB): after the first epoch's large tensors, tensors of
a few MB came from the heap too, and their holes kept ~100 MB resident through the run (BENCHMARKS.md, "Memory").
``limit_heap_growth`` fixes the threshold at 128 kB (what ``MALLOC_MMAP_THRESHOLD_=131072`` does); the command-line
tool calls it for its process, the library leaves the process's allocator alone. A threshold already set in the
environment wins. Elsewhere than glibc (macOS, musl) both do nothing.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial value, kept fixed
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc), else nothing."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def limit_heap_growth() -> None:
    """From now on, blocks of ``MMAP_THRESHOLD`` bytes or more get their own mappings (glibc), unless the
    environment sets the threshold; else nothing."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


@cache
def _libc_function(name: str) -> ctypes._CFuncPtr | None:
    """A function of the C library from the symbols already loaded in the process, None if it has none."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc
        return None
