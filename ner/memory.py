"""Hand freed heap memory back to the operating system: between the phases of a run (glibc's ``malloc_trim``),
and while scoring a corpus at once for blocks of 128 kB or more (glibc's ``mmap`` threshold).

glibc keeps the memory that a phase's temporaries freed inside its heap, where other allocations (Python
objects, the next phase's tensors) pin it: after scoring a corpus that is ~100 MB of resident memory nobody uses.
``malloc_trim(0)`` returns those free pages; it takes milliseconds, so it runs between phases, never per step.

glibc also serves blocks of 128 kB or more with their own mappings, unmapped when freed, but it raises that
threshold to the size of every such block freed (up to 32 MB): once large tensors have come and gone, tensors of
a few MB come from the heap too, and the holes they leave kept ~100 MB resident at the peak of a CoNLL-2003
training run, the scoring of dev (BENCHMARKS.md, "Memory"). ``large_blocks_returned`` fixes the threshold at
128 kB while scoring, then at 32 MB (and the trim threshold at 64 MB, as glibc's own rule would). Not for the
training steps: mapping and faulting in every tensor of 128 kB or more afresh made epochs 50-65 % slower. A
threshold set in the environment (``MALLOC_MMAP_THRESHOLD_``) wins. Elsewhere than glibc (macOS, musl) these do
nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

SMALL_MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial value
LARGE_MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc's dynamic threshold rises to (64-bit)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc), else nothing."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


@contextmanager
def large_blocks_returned() -> Iterator[None]:
    """Inside, blocks of ``SMALL_MMAP_THRESHOLD`` bytes or more get their own mappings and go back to the system
    when freed; after, only blocks of ``LARGE_MMAP_THRESHOLD`` or more (glibc, unless the environment sets it)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, SMALL_MMAP_THRESHOLD)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, LARGE_MMAP_THRESHOLD)
        # Setting a threshold stops glibc adjusting the trim threshold too; its own rule is twice the mmap one.
        # Left small, the heap's top would be handed back and faulted in again at every training step.
        mallopt(_M_TRIM_THRESHOLD, 2 * LARGE_MMAP_THRESHOLD)


@cache
def _libc_function(name: str) -> ctypes._CFuncPtr | None:
    """A function of the C library from the symbols already loaded in the process, None if it has none."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc
        return None
