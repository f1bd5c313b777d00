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
import contextlib, ctypes, sys
from ner.memory import large_blocks_returned
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def resident():
    with open("/proc/self/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024
def returned_mib():
    libc.free(libc.malloc(8 << 20))  # glibc's dynamic threshold rises to 8 MB: 1 MB blocks come from the heap
    blocks = [libc.malloc(1 << 20) for _ in range(120)]
    for block in blocks:
        ctypes.memset(block, 1, 1 << 20)
    full = resident()
    for block in blocks[:-1]:  # the last one stays in use, at the heap's top: the heap cannot shrink below it
        libc.free(block)
    returned = full - resident()
    libc.free(blocks[-1])
    libc.malloc_trim(0)
    return returned
with large_blocks_returned() if sys.argv[1] == "scoped" else contextlib.nullcontext():
    inside = returned_mib()
print(inside, returned_mib())
"""


@pytest.mark.parametrize(("mode", "returned_inside"), [("default", False), ("scoped", True)])
def test_large_blocks_go_back_at_once_inside_the_scope_only(mode: str, returned_inside: bool) -> None:
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.skip("not glibc: large_blocks_returned does nothing there")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENTING, mode], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    inside, after = (float(value) for value in done.stdout.split())
    assert (inside > 100) if returned_inside else (inside < 20), inside
    assert after < 20, after  # the training steps' tensors stay in the heap: mapping each afresh is slow
