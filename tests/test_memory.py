"""ner.memory: freed heap memory that glibc keeps resident goes back to the system."""

from __future__ import annotations

import ctypes

import pytest

from ner.memory import release_free_memory

BLOCK = 64 * 1024  # below glibc's mmap threshold: these come from the heap
BLOCKS = 1600  # 100 MiB freed, as many kept


def resident_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_freed_heap_pages_stay_resident_until_released() -> None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("not glibc: release_free_memory does nothing there")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(2 * BLOCKS)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # resident now
    full = resident_mib()
    for block in blocks[::2]:  # holes between live blocks, as a phase's temporaries leave them
        libc.free(block)
    freed = resident_mib()
    release_free_memory()
    released = resident_mib()
    for block in blocks[1::2]:
        libc.free(block)
    assert full - freed < 20  # glibc kept the freed blocks resident
    assert freed - released > 80  # and gave them back now
