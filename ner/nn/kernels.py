"""Our C++ kernels, built and loaded: the LSTM recurrence (``lstm_kernel.cpp``, ``ner.nn.lstm_kernel``) and the CRF's
inference loops (``crf_kernel.cpp``, ``ner.nn.crf_kernel``), registered as ``torch.ops.ner_lstm.*`` and
``torch.ops.ner_crf.*``.

They are compiled once, together, with torch.utils.cpp_extension (g++ and ninja; about a minute on 2 busy cores)
into a cache folder, ``$NER_CACHE_DIR`` or ``~/.cache/ner``, one per torch version, Python version and CPU; later
processes load the cached library directly (its stamp says which sources and flags it was built from).
``make setup`` builds it ahead (``main``). Wherever it cannot be built (no C++ compiler or ninja) or
``NER_LSTM_KERNEL=0`` is set, every caller takes its PyTorch path, with the same numbers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

_HERE = Path(__file__).parent
SOURCES = [_HERE / "lstm_kernel.cpp", _HERE / "crf_kernel.cpp"]
HEADERS = [_HERE / "lstm_bf16.h"]  # included by lstm_kernel.cpp
_CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]  # fast-math: vectorised exp (glibc's libmvec)
_LDFLAGS = ["-fopenmp", "-lmvec"]  # libgomp: the one torch has loaded already (same soname)
_log = logging.getLogger(__name__)
_loaded: bool | None = None  # None until the first use tries to load (or build) the kernels


def build_directory() -> Path:
    """Where the compiled kernels are cached: one folder per torch version, Python version and CPU (they are
    compiled for the CPU they run on, -march=native)."""
    root = Path(os.environ.get("NER_CACHE_DIR") or Path.home() / ".cache" / "ner")
    version = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    return root / "kernels" / f"{version}-{_cpu_signature()}".replace("+", "_")


def _cpu_signature() -> str:
    """A short hash of the CPU's model and feature flags (Linux), or of the platform elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        text = "".join(line for line in lines if line.startswith(("model name", "flags")))
    except OSError:
        text = platform.platform()
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def build(verbose: bool = False) -> None:
    """Compile the kernels if their cached build is missing or stale, and load them (raises if either fails)."""
    directory = build_directory()
    library, stamp = directory / "ner_kernels.so", directory / "source.sha256"
    if library.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == _source_hash():
        torch.ops.load_library(str(library))  # built from this very source: no need to ask ninja (~0.5 s)
        return
    from torch.utils import cpp_extension  # imported here: it pulls in setuptools

    directory.mkdir(parents=True, exist_ok=True)
    if not library.exists():
        _log.info("compiling the C++ kernels into %s (once, about a minute)", directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. cpp_extension's note on the compiler's ABI
        cpp_extension.load(
            name="ner_kernels",
            sources=[str(path) for path in SOURCES],
            extra_cflags=list(_CFLAGS),
            extra_ldflags=list(_LDFLAGS),
            build_directory=str(directory),
            is_python_module=False,
            verbose=verbose,
        )  # copies: load() appends to the lists it is given
    partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    partial.write_text(_source_hash(), encoding="utf-8")
    partial.replace(stamp)


def _source_hash() -> str:
    """What a build is made of: the sources and the flags."""
    code = b"".join(path.read_bytes() for path in [*SOURCES, *HEADERS])
    return hashlib.sha256(code + " ".join(_CFLAGS + _LDFLAGS).encode()).hexdigest()


def available() -> bool:
    """Whether the kernels are loaded, loading or building them on the first call; False wherever that fails."""
    global _loaded
    if _loaded is None:
        _loaded = False
        if os.environ.get("NER_LSTM_KERNEL", "1") != "0":
            try:
                build()
                _loaded = True
            except Exception:  # no compiler, no ninja, a failed build: the PyTorch paths
                pass
    return _loaded


def main() -> None:
    """Build the kernels ahead of use (``make setup``): prints where and how long, or why not (exit 0 either way)."""
    start = time.perf_counter()
    try:
        build()
    except Exception as error:  # reported: the PyTorch path will be used
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"C++ kernels not built ({first_line}); the PyTorch paths will be used")
        return
    print(f"C++ kernels ready in {build_directory()} ({time.perf_counter() - start:.1f} s)")
