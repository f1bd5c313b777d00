"""ner.memory: freed heap memory that glibc keeps resident goes back to the system."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

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


FRAGMENTING = """
import ctypes, os, sys
from ner.memory import limit_heap_growth
if sys.argv[1] == "limited":
    limit_heap_growth()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def resident():
    with open("/proc/self/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024
big = libc.malloc(8 << 20)
libc.free(big)  # glibc's dynamic threshold rises to 8 MB: the blocks below come from the heap
blocks = [libc.malloc(1 << 20) for _ in range(120)]
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
full = resident()
for block in blocks[:-1]:  # the last one stays in use, at the heap's top: the heap cannot shrink below it
    libc.free(block)
print(full - resident())
"""


@pytest.mark.parametrize(("mode", "returned"), [("default", False), ("limited", True)])
def test_limited_heap_growth_returns_large_freed_blocks_at_once(mode: str, returned: bool) -> None:
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.skip("not glibc: limit_heap_growth does nothing there")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENTING, mode], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    freed_mib = float(done.stdout)
    assert (freed_mib > 100) if returned else (freed_mib < 20), freed_mib
