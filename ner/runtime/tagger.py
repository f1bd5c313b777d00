"""``OnnxTagger``: a tagger exported by ``ner export``, run by onnxruntime and decoded with numpy.

It offers ``predict_spans`` like ``ner.model.Tagger`` (so ``ner.tagging.tag_files`` takes either): the graph gives
the emission scores of each batch (``ner.runtime.encoding`` builds its inputs); with the document context it gives
the BiLSTM states instead, numpy averages each token's other mentions across all the batches of the call, and the
second graph turns states and context into emissions; Viterbi, entity propagation and the span probabilities
follow (``ner.runtime.crf``). A call is one document unless ``document_ids`` say otherwise.

The export directory (see ``ner.export.onnx`` for how it is written) holds ``export.json`` (what the files are and
how words are looked up), the graphs, ``crf.json``, the vocabularies and, for a model with pretrained vectors,
``vectors.index.json`` (table word -> row). Loading checks them and reports a missing or corrupt file in one line.
onnxruntime is the ``onnx`` extra, imported only here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ner.data.schemes import spans_to_tags, tags_to_spans
from ner.data.vocab import Vocabulary, WordLookup
from ner.entities import Span, checked_sentences, tag_text
from ner.errors import NerError
from ner.propagation import propagate_entities
from ner.runtime.crf import CrfScores, span_probabilities, viterbi
from ner.runtime.encoding import EncodedBatch, Encoder, mean_of_other_mentions

EXPORT_FORMAT = 1  # bump when the export layout changes; OnnxTagger.load refuses other formats
META_FILE = "export.json"
MODEL_GRAPH = "model.onnx"  # distinct-word ids -> emissions (B, T, K), or states (B, T, 2H) with document context
HEAD_GRAPH = "emissions.onnx"  # document context only: states, context (B, T, 2H) -> emissions (B, T, K)
CRF_FILE = "crf.json"
TABLE_INDEX_FILE = "vectors.index.json"
VOCABULARY_FILES = ("words.json", "chars.json", "tags.json")


def import_onnxruntime() -> Any:
    """The onnxruntime module, or a one-line NerError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise NerError('the ONNX backend needs onnxruntime: pip install -e ".[onnx]"') from None
    return onnxruntime


class OnnxTagger:
    """An exported tagger: ``OnnxTagger.load(OUT_DIR)``, then ``predict_spans`` / ``tag`` as with ``Tagger``.

    ``threads``: onnxruntime's intra-op threads (None: its default, one per physical core).
    """

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        encoder: Encoder,
        tags: Vocabulary,
        scores: CrfScores,
        threads: int | None = None,
    ) -> None:
        self.directory, self.meta, self.encoder, self.tags, self.scores = directory, meta, encoder, tags, scores
        self.scheme: str = meta["model_scheme"]
        self.propagate: bool = meta["propagate_entities"]
        self.threads = threads
        self._sessions: tuple[int, Any, Any] | None = None  # (process id, model session, head session or None)

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None) -> OnnxTagger:
        """Read and check an export directory; opens the graphs (a corrupt one is a one-line NerError)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise NerError(f"{directory}: no such export directory (expected the OUT_DIR of `ner export`)")
        if (directory / "model.pt").is_file() and not (directory / META_FILE).is_file():
            raise NerError(
                f"{directory}: a run directory of `ner train`, not an export: run `ner export "
                f"{directory} OUT_DIR` first (or tag without --backend onnx)"
            )
        meta = _read_json(directory / META_FILE, directory)
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise NerError(
                f"{directory / META_FILE}: export format {found!r} is not supported by this ner "
                f"(expected {EXPORT_FORMAT}); export the model again with this version"
            )
        try:
            words, chars, tags = (Vocabulary.load(directory / name) for name in VOCABULARY_FILES)
            lookup = words
            if meta["word_lookup"]["table_index"]:
                index = _read_json(directory / meta["word_lookup"]["table_index"], directory)
                lookup = WordLookup(words, index)
            encoder = Encoder(
                lookup,
                chars,
                tuple(meta["inputs"]),
                int(meta["chars"]["max_word_length"]),
                int(meta["chars"]["min_width"]),
                bool(meta["document_context"]),
            )
            scores = _read_crf(directory / CRF_FILE, tags, directory)
            tagger = cls(directory, meta, encoder, tags, scores, threads)
        except (KeyError, TypeError, ValueError) as error:
            raise NerError(
                f"{directory / META_FILE}: missing or bad entry {error} (expected a file written by `ner export`)"
            ) from None
        tagger._open()
        return tagger

    # ----------------------------------------------------------------------------------------- predicting
    def predict_spans(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, document_ids: Sequence[int] | None = None
    ) -> list[list[Span]]:
        """Entities of tokenised sentences as ``(type, start_token, end_token_exclusive, probability)``, as
        ``ner.model.Tagger.predict_spans``; ``document_ids`` (one per sentence) delimit documents."""
        sentences = checked_sentences(sentences)
        if document_ids is not None and len(document_ids) != len(sentences):
            raise ValueError(f"document_ids: expected one per sentence ({len(sentences)}), got {len(document_ids)}")
        result: list[list[Span]] = [[] for _ in sentences]
        nonempty = [i for i, tokens in enumerate(sentences) if tokens]
        if not nonempty:
            return result
        tokens = [sentences[i] for i in nonempty]
        ids = None if document_ids is None else [document_ids[i] for i in nonempty]
        batches = self._scored(tokens, ids, batch_size)
        tags: list[list[str]] = [[] for _ in tokens]
        for batch, emissions in batches:
            paths = viterbi(emissions, batch.lengths, self.scores)  # (B, T)
            for index, length, path in zip(batch.indices, batch.lengths, paths):
                tags[index] = self.tags.decode(path[:length].tolist())
        if self.propagate:
            propagated = propagate_entities(tokens, [tags_to_spans(t) for t in tags], ids)
            tags = [spans_to_tags(spans, len(t), self.scheme) for spans, t in zip(propagated, tags)]
        for batch, emissions in batches:
            batch_spans = [tags_to_spans(tags[index]) for index in batch.indices]
            probabilities = span_probabilities(
                emissions, batch.lengths, batch_spans, self.tags.items, self.scheme, self.scores
            )
            for index, spans, probs in zip(batch.indices, batch_spans, probabilities):
                result[nonempty[index]] = [(kind, start, end, p) for (kind, start, end), p in zip(spans, probs)]
        return result

    def emissions(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, document_ids: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Emission scores (T_i, K) of each (non-empty) sentence, in input order."""
        result: list[np.ndarray] = [np.empty(0)] * len(sentences)
        for batch, emissions in self._scored(checked_sentences(sentences), document_ids, batch_size):
            for index, length, scores in zip(batch.indices, batch.lengths, emissions):
                result[index] = scores[:length]
        return result

    def tag(self, text: str) -> list[dict[str, Any]]:
        """Entities in raw text: ``[{"start", "end", "type", "text", "score"}, ...]`` with character offsets."""
        return tag_text(self, text)

    # ------------------------------------------------------------------------------------------ internals
    def _scored(
        self, sentences: list[list[str]], document_ids: Sequence[int] | None, batch_size: int
    ) -> list[tuple[EncodedBatch, np.ndarray]]:
        """Each batch with its emission scores (B, T, K) float32."""
        _, model, head = self._open()
        batches = list(self.encoder.batches(sentences, batch_size, document_ids))
        outputs = [model.run(None, batch.feeds)[0] for batch in batches]  # emissions, or states (B, T, 2H)
        if head is None:
            return list(zip(batches, outputs))
        groups = np.concatenate([batch.mention_groups.reshape(-1) for batch in batches])  # (N,)
        context = mean_of_other_mentions(np.concatenate([s.reshape(-1, s.shape[-1]) for s in outputs]), groups)
        parts = np.split(context, np.cumsum([s.shape[0] * s.shape[1] for s in outputs])[:-1])
        return [
            (batch, head.run(None, {"states": states, "context": part.reshape(states.shape)})[0])
            for batch, states, part in zip(batches, outputs, parts)
        ]

    def _open(self) -> tuple[int, Any, Any]:
        """This process's onnxruntime sessions (a forked worker opens its own)."""
        if self._sessions is None or self._sessions[0] != os.getpid():
            graphs = self.meta["graphs"]
            model = self._session(graphs["model"], [*self.encoder.inputs])
            head = self._session(graphs["emissions"], ["states", "context"]) if self.encoder.document_context else None
            self._sessions = (os.getpid(), model, head)
        return self._sessions

    def _session(self, name: str, inputs: list[str]) -> Any:
        """An onnxruntime session of the graph ``name``, checked to take ``inputs``."""
        onnxruntime = import_onnxruntime()
        path = self.directory / name
        if not path.is_file():
            raise NerError(f"{self.directory}: missing {name} (expected a directory written by `ner export`)")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        if self.threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = self.threads
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  (onnxruntime's exception types derive from Exception)
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise NerError(f"{path}: not a valid ONNX graph: {message}") from None
        found = [node.name for node in session.get_inputs()]
        if sorted(found) != sorted(inputs):
            raise NerError(
                f"{path}: the graph takes inputs {', '.join(found)}, but {META_FILE} expects "
                f"{', '.join(inputs)}: export the model again"
            )
        return session

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for worker processes) without the sessions, which each process opens for itself."""
        return {**self.__dict__, "_sessions": None}


def _read_json(path: Path, directory: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NerError(f"{directory}: missing {path.name} (expected a directory written by `ner export`)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NerError(f"{path}: not valid JSON: {error}") from None


def _read_crf(path: Path, tags: Vocabulary, directory: Path) -> CrfScores:
    """The CRF's effective scores from ``crf.json``, checked against the tag vocabulary."""
    data = _read_json(path, directory)
    size = len(tags)
    try:
        if data["tags"] != tags.items:
            raise NerError(f"{path}: its tags differ from {VOCABULARY_FILES[2]}: export the model again")
        dtype = np.dtype(data["dtype"])
        arrays = {name: np.array(data[name], dtype=dtype) for name in ("start", "transitions", "end")}
        allowed = {name: np.array(data[f"{name}_allowed"], dtype=bool) for name in ("start", "transitions", "end")}
    except (KeyError, TypeError, ValueError) as error:
        raise NerError(f"{path}: missing or bad entry {error} (expected a file written by `ner export`)") from None
    for name, shape in (("start", (size,)), ("transitions", (size, size)), ("end", (size,))):
        for key, array in ((name, arrays[name]), (f"{name}_allowed", allowed[name])):
            if array.shape != shape:
                raise NerError(f"{path}: {key} has shape {array.shape}, expected {shape} for {size} tags")
    return CrfScores.from_parameters(
        arrays["start"], arrays["transitions"], arrays["end"], allowed["start"], allowed["transitions"], allowed["end"]
    )
