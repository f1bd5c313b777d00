"""Frozen biLM activations computed once per corpus and kept on disk, read back with plain file reads.

With a frozen biLM every epoch would recompute the same activations; ``ElmoCache`` stores all ``L + 1`` layers
of every sentence (with ``<S>``/``</S>``, so the scalar mix and its layer norm see exactly what the biLM
returns) in one ``.npy`` file of shape ``(L + 1, rows, 2P)``, sentences back to back. A batch is then a gather
from the page cache, by file reads and writes rather than a memory map, whose pages would count in the process's
resident memory once touched (the two caches of a CoNLL-2003 run are 445 MB):

    cache = ElmoCache.for_sentences(bilm, [s.tokens for s in corpus.sentences], "runs/x/elmo_cache")
    layers, mask = cache.layers_for(batch.indices)        # (L + 1, batch, time + 2, 2P), (batch, time + 2)
    embeddings, token_mask = elmo.from_layers(layers, mask)  # (batch, time, 2P)

Files are named by a SHA-256 of the sentences, the biLM options and weights and the dtype, so a cache is reused
exactly when it would hold the same numbers, and a changed corpus or model gets a new file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ner.elmo.bilm import BiLM
from ner.elmo.chars import batch_to_char_ids
from ner.errors import NerError
from ner.fileio import atomic_path, write_json_atomic

CACHE_FORMAT = 1
_DTYPES = {torch.float16: np.float16, torch.float32: np.float32}


class ElmoCache:
    """Read side of a cache written by ``build``: ``layers_for(indices)`` as the biLM would return them."""

    def __init__(self, path: str | Path) -> None:
        """Open the cache ``path`` (the common stem of ``path.npy`` and ``path.json``)."""
        self.path = Path(path)
        meta_path = _sibling(self.path, ".json")
        if not meta_path.is_file():
            raise NerError(f"{meta_path}: ELMo cache not found (build it with ElmoCache.build)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT:
            raise NerError(f"{meta_path}: cache format {meta.get('format')!r}, expected {CACHE_FORMAT}; delete it")
        self.key: str = meta["key"]
        self.lengths = np.asarray(meta["lengths"], dtype=np.int64)  # tokens per sentence, without boundaries
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths + 2)])  # first row of each sentence
        data_path = _sibling(self.path, ".npy")
        mapped = np.load(data_path, mmap_mode="r")  # (L + 1, rows, 2P); only its header is read
        self.num_layers, self.rows, self.dim = mapped.shape
        self.dtype, self._start = mapped.dtype, mapped.offset  # where the values begin in the file
        assert self.rows == self.offsets[-1] and mapped.flags.c_contiguous, "cache data and index disagree"
        del mapped
        self._file = data_path.open("rb", buffering=0)

    def __len__(self) -> int:
        return len(self.lengths)

    def layers_for(self, indices: Sequence[int], max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The biLM output for sentences ``indices`` (positions in the list the cache was built from).

        Returns float32 ``layers (L + 1, batch, time + 2, 2P)`` and the bool ``mask (batch, time + 2)``, where
        ``time`` is the longest of these sentences, or ``max_len`` if that is larger (to match a padded batch).
        """
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices] + 2  # with <S> and </S>
        time = max(int(lengths.max(initial=2)), (max_len or 0) + 2)
        out = np.zeros((self.num_layers, len(indices), time, self.dim), dtype=self.dtype)
        row_bytes = self.dim * self.dtype.itemsize
        for row, (index, length) in enumerate(zip(indices, lengths)):
            for layer in range(self.num_layers):  # each layer's rows of the sentence are contiguous in the file
                self._file.seek(self._start + (layer * self.rows + int(self.offsets[index])) * row_bytes)
                target = memoryview(out[layer, row, :length]).cast("B")
                if self._file.readinto(target) != len(target):
                    raise NerError(f"{_sibling(self.path, '.npy')}: ELMo cache truncated; delete it")
        mask = torch.arange(time) < torch.from_numpy(lengths)[:, None]  # (batch, time + 2)
        return torch.from_numpy(out).float(), mask

    @classmethod
    def build(
        cls,
        bilm: BiLM,
        sentences: Sequence[Sequence[str]],
        path: str | Path,
        dtype: torch.dtype = torch.float16,
        batch_size: int = 64,
        key: str = "",
        progress: bool = False,
    ) -> ElmoCache:
        """Run ``bilm`` (no gradients, eval mode) over ``sentences`` and write ``path.npy`` + ``path.json``.

        Sentences are processed in length order (little padding) and stored in input order. Both files are
        written under temporary names and renamed, the index last, so a cache on disk is always complete.
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths + 2)])
        layers = bilm.options.num_layers + 1
        rows, numpy_dtype = int(offsets[-1]), _DTYPES[dtype]
        shape = (layers, rows, bilm.output_dim)
        order = np.argsort(lengths, kind="stable")
        was_training = bilm.training
        bilm.eval()
        bar = tqdm(total=int(lengths.sum()), unit="tok", desc="ELMo cache", disable=not progress)
        with atomic_path(_sibling(path, ".npy")) as tmp_data:  # renamed into place once every row is written
            mapped = np.lib.format.open_memmap(tmp_data, mode="w+", dtype=numpy_dtype, shape=shape)  # the header
            first_byte, row_bytes = mapped.offset, bilm.output_dim * np.dtype(numpy_dtype).itemsize  # values: below
            del mapped
            with torch.no_grad(), bar, tmp_data.open("r+b") as data:
                parameter = next(bilm.parameters())
                for start in range(0, len(order), batch_size):
                    batch = order[start : start + batch_size]
                    char_ids = batch_to_char_ids([list(sentences[i]) for i in batch]).to(parameter.device)
                    outputs, _ = bilm(char_ids)
                    stacked = torch.stack(outputs).float().cpu().numpy()  # (L + 1, batch, time + 2, 2P)
                    for row, index in enumerate(batch):
                        values = stacked[:, row, : lengths[index] + 2].astype(numpy_dtype)  # (L + 1, length + 2, 2P)
                        for layer in range(layers):
                            data.seek(first_byte + (layer * rows + int(offsets[index])) * row_bytes)
                            data.write(values[layer].tobytes())
                    bar.update(int(lengths[batch].sum()))
        bilm.train(was_training)
        write_json_atomic(
            _sibling(path, ".json"),
            {"format": CACHE_FORMAT, "key": key, "dtype": str(dtype), "lengths": lengths.tolist()},
        )
        return cls(path)

    @classmethod
    def for_sentences(
        cls,
        bilm: BiLM,
        sentences: Sequence[Sequence[str]],
        cache_dir: str | Path,
        dtype: torch.dtype = torch.float16,
        batch_size: int = 64,
        progress: bool = False,
    ) -> ElmoCache:
        """Open the cache of exactly these sentences, biLM and dtype in ``cache_dir``, building it if absent."""
        key = cache_key(bilm, sentences, dtype)
        path = Path(cache_dir) / f"elmo-{key[:24]}"
        if _sibling(path, ".json").is_file():
            cache = cls(path)
            if cache.key == key:
                return cache
        return cls.build(bilm, sentences, path, dtype=dtype, batch_size=batch_size, key=key, progress=progress)


def cache_key(bilm: BiLM, sentences: Sequence[Sequence[str]], dtype: torch.dtype) -> str:
    """SHA-256 over the cache format, dtype, biLM options and weights, and the tokens of every sentence."""
    digest = hashlib.sha256()
    digest.update(f"{CACHE_FORMAT}|{dtype}|".encode())
    digest.update(json.dumps(bilm.options.to_allennlp(), sort_keys=True).encode())
    for name, tensor in bilm.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for tokens in sentences:
        digest.update("\x1f".join(tokens).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def _sibling(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix`` (``Path.with_suffix`` would cut a stem that contains a dot)."""
    return stem.with_name(stem.name + suffix)
