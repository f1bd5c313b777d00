"""Writing files safely: whole or not at all, with the process umask, never over an input, never out of a run
directory through a symbolic link, and one ``ner train`` at a time per run directory.

Every file ``ner`` writes goes through ``atomic_path`` (``atomic_stream``, ``atomic_write``, ``write_text_atomic``,
``write_json_atomic``): a temporary file beside the target, renamed over it when complete, so an interrupted write
never leaves a half-written file. The temporary file is created with mode 0666 less the process umask, as ``open``
would create it, so a run directory is as readable as any other file its user writes (a service running as
another user can read it when the umask allows). ``check_output`` refuses an output path before any work starts;
``refuse_links_out`` and ``run_lock`` guard the run directories that ``ner train`` and ``ner evaluate`` write into.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ner.errors import NerError

LOCK_FILE = ".lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` whose file appears at ``path`` only if the block ends without an error
    (renamed over it; removed on an error). The file is created empty first, with the umask, refusing a symbolic
    link planted under its name, so a writer that needs a file name (h5py, numpy's memory maps) opens ours."""
    target = Path(path)
    check_output(target)
    if _special(target):
        raise NerError(f"{target}: not a regular file (a device or a pipe): expected the path of a file to write")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666))  # a link: refused
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_stream(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle whose bytes appear at ``path`` only if the block ends without an error (``atomic_path``).
    A device or a pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written through instead: renaming a file over it
    would replace the device itself (as root, ``/dev/null`` for everyone)."""
    if _special(Path(path)):
        check_output(path)
        with open(path, "wb") as handle:
            yield handle
        return
    with atomic_path(path) as temporary:
        # O_NOFOLLOW: a symbolic link put in place of the temporary file is refused, not written through.
        with os.fdopen(os.open(temporary, os.O_WRONLY | _NOFOLLOW), "wb") as handle:
            yield handle


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Fill ``path`` by ``write(handle)``, whole or not at all (``atomic_stream``)."""
    with atomic_stream(path) as handle:
        write(handle)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` whole or not at all (``atomic_write``)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (and a final newline) to ``path``, whole or not at all."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line of text to ``path`` (created with the umask), refusing to follow a symbolic link there."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as error:
        if path.is_symlink():
            raise NerError(f"{path}: a symbolic link: refusing to write through it") from None
        raise error
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse an output path that cannot be written as a file, or that is one of ``inputs`` (``-``, standard
    input, is skipped): a NerError saying why, before any work starts."""
    target = Path(path)
    if target.is_dir():
        raise NerError(f"{target}: is a folder: expected the path of a file to write")
    if not target.parent.is_dir():
        what = "not a folder" if target.parent.exists() else "no such folder"
        raise NerError(f"{target}: cannot write there: {target.parent} is {what}")
    for source in inputs:
        if str(source) != "-" and _same_file(target, Path(source)):
            raise NerError(
                f"{target}: is also an input ({source}): refusing to overwrite it; choose another output path"
            )


def _special(path: Path) -> bool:
    """Whether ``path`` exists as something other than a regular file or a folder (a device, a pipe, a socket)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _same_file(first: Path, second: Path) -> bool:
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def refuse_links_out(root: Path, paths: Iterable[Path]) -> None:
    """Refuse to write ``paths`` (under ``root``, existing or not) when one of them, or a folder on the way to
    it, is a symbolic link that leads out of ``root``."""
    base = root.resolve()
    for path in paths:
        relative = path.relative_to(root)
        for depth in range(1, len(relative.parts) + 1):
            candidate = root.joinpath(*relative.parts[:depth])
            if candidate.is_symlink() and not candidate.resolve().is_relative_to(base):
                raise NerError(
                    f"{candidate}: a symbolic link out of the run directory (to "
                    f"{os.readlink(candidate)}): refusing to write through it"
                )


def remove_temporaries(folder: Path, names: Iterable[str]) -> None:
    """Remove the temporary files of ``names`` that ``atomic_stream`` left in ``folder`` when its process was
    killed (call it holding the folder's lock)."""
    for name in names:
        for path in folder.glob(f".{name}.*.tmp"):
            if path.is_file() and not path.is_symlink() and path.name[len(name) + 2 : -len(".tmp")].isdigit():
                path.unlink()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock inside the block (``RUN/.lock``, an advisory ``flock`` that ends with the process,
    so a killed run leaves none): a second writer stops at once with a NerError saying who holds it."""
    import fcntl

    path = run_dir / LOCK_FILE
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError:
        if path.is_symlink():
            raise NerError(f"{path}: a symbolic link: refusing to write through it") from None
        raise
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise NerError(
                f"{run_dir}: in use by another `ner train` ({holder}); wait for it to finish or "
                f"choose another output.dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)
