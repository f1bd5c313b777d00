"""The BiLSTM-CRF tagger as users and training see it: ``Tagger``.

``Tagger`` pairs the network (``ner.network.TaggerModel``, tensors in, tensors out) with its vocabularies and tag
schemes: it builds a new one from a training corpus or loads a run directory (``ner.tagger_files``), turns token
lists into batches (``ner.encoding``), and returns tags (in the scheme of the user's files) or entity spans with
their CRF probabilities.

Shape letters: B sentences, T tokens, K tags, G gate inputs per direction (``ner.network``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ner.config import Config
from ner.data.batching import Batch, Batcher, length_chunks
from ner.data.conll import Corpus
from ner.data.features import documents_casing
from ner.data.schemes import convert_tags, spans_to_tags, tags_to_spans
from ner.data.vectors import VectorTable
from ner.data.vocab import Vocabulary, WordLookup, save_vocabularies
from ner.distributed import Context, select_device
from ner.elmo import BiLM, ElmoCache, batch_mask_with_boundaries, batch_to_char_ids
from ner.encoding import EncodedSentences, TaggerBatch
from ner.entities import checked_sentences, tag_text
from ner.errors import NerError
from ner.fileio import atomic_write, write_json_atomic
from ner.input_cache import TokenInputCache, inputs_of_rows
from ner.network import TaggerModel
from ner.propagation import propagate_entities
from ner.rundir import best_seed_dir, is_multi_seed
from ner.tagger_build import initialise_word_rows, new_tagger_parts
from ner.tagger_files import META_FILE, MODEL_FORMAT, VECTORS_FILE, WEIGHTS_FILE, read_tagger_files

GROUP_TOKENS = 8192  # tokens of whole documents inference encodes at once (states, ELMo layers, ~11 kB a token)
BATCH_TOKENS = 2048  # padded tokens of an inference batch: 64 sentences of 120 tokens gathered 50 MB of gate inputs


class Tagger:
    """A trained (or new) tagger with everything needed to use it: config, vocabularies, tag schemes.

    ``data_scheme`` is the scheme of the training files (predictions are converted back to it); the model
    works in ``config.model.scheme``.
    """

    def __init__(
        self,
        config: Config,
        words: Vocabulary,
        chars: Vocabulary,
        tags: Vocabulary,
        data_scheme: str,
        device: torch.device | str = "cpu",
        bilm: BiLM | None = None,
        vectors: VectorTable | None = None,
    ) -> None:
        self.config, self.words, self.chars, self.tags = config, words, chars, tags
        self.data_scheme = data_scheme
        self.device = torch.device(device)
        self.vectors = vectors
        # Batches look words up in the vocabulary, then in the pretrained table (ids beyond the vocabulary's).
        self.word_lookup: Vocabulary | WordLookup = WordLookup(words, vectors.index) if vectors else words
        table = torch.from_numpy(vectors.vectors) if vectors else None  # (rows, dim)
        self.model = TaggerModel(config.model, len(words), len(chars), tags.items, bilm, table).to(self.device)
        self.input_cache = TokenInputCache()  # inference without ELMo
        # Training only: the chance of replacing each word id by <unk> (see count_training_words).
        self.unk_probability = torch.full((len(self.word_lookup),), config.model.word_dropout, device=self.device)

    # ------------------------------------------------------------------------------------- building, saving
    @classmethod
    def build(cls, config: Config, train: Corpus, device: torch.device | str = "cpu") -> Tagger:
        """A fresh tagger whose vocabularies come from the training corpus (tags in the model's scheme).

        With pretrained vectors, training words start from their table vectors (unless ``freeze``: then they
        use the fixed table and only the training words outside it get learned rows); the learned rows of
        words outside the table start from N(0, s^2), s the standard deviation of the table's values.
        """
        words, chars, tags, bilm, vectors = new_tagger_parts(config, train)
        tagger = cls(config, words, chars, tags, train.scheme, device, bilm, vectors)
        if vectors:
            initialise_word_rows(tagger.model.embedder.words.weight, words, vectors)
        return tagger

    def save_vocabularies(self, run_dir: Path) -> None:
        """Write the vocabularies and ``model.json`` (formats and schemes) into ``run_dir``."""
        save_vocabularies(run_dir, self.words, self.chars, self.tags)
        if self.vectors is not None:
            write_json_atomic(run_dir / VECTORS_FILE, self.vectors.reference())
        meta = {
            "format": MODEL_FORMAT,
            "data_scheme": self.data_scheme,
            "model_scheme": self.config.model.scheme,
            "elmo_options": self.model.elmo.bilm.options.to_allennlp() if self.model.elmo else None,
        }
        write_json_atomic(run_dir / META_FILE, meta)

    def save_weights(self, run_dir: Path) -> None:
        """Write the model's state dict to ``model.pt`` (atomically; loads with ``weights_only=True``)."""
        atomic_write(run_dir / WEIGHTS_FILE, lambda handle: torch.save(self.model.state_dict(), handle))

    @classmethod
    def load(cls, run_dir: str | Path, device: torch.device | str | None = None, precision: str = "float32") -> Tagger:
        """Load a run directory written by ``ner train``; needs nothing else. Safe on untrusted files: no code
        runs from them, every file is checked (a NerError naming it), memory and time are bounded by their size
        (``ner.tagger_files``). Of a multi-seed run, the best seed on dev. ``precision``: of inference (bf16)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise NerError(f"{run_dir}: no such run directory (expected the output.dir of `ner train`)")
        if is_multi_seed(run_dir):
            run_dir = best_seed_dir(run_dir)
        saved = read_tagger_files(run_dir)
        config = saved.config
        device = select_device(config.training.device, Context()) if device is None else device
        tagger = cls(
            config,
            saved.words,
            saved.chars,
            saved.tags,
            saved.data_scheme,
            device,
            BiLM(saved.bilm_options) if saved.bilm_options else None,
            saved.vectors,
        )
        tagger.model.load_state_dict(saved.state)
        tagger.model.eval()
        tagger.model.set_inference_precision(precision)
        return tagger

    # ------------------------------------------------------------------------------------------ batches
    def encode(
        self,
        token_seqs: Sequence[Sequence[str]],
        tag_seqs: Sequence[Sequence[str]] | None = None,
        elmo_cache_dir: Path | None = None,
        document_ids: Sequence[int] | None = None,
    ) -> EncodedSentences:
        """Ids of sentences (tags, if given, in the model's scheme).

        With ``elmo_cache_dir`` and a frozen biLM, the biLM layers of these sentences are computed once and
        kept there (on disk), so batches read them instead of running the biLM. ``document_ids`` (one
        per sentence; None: all one document) delimit the documents of the document casing feature and of
        entity propagation.
        """
        widest = max((w for w, _ in self.config.model.char_cnn.filters), default=1)
        has_document_casing = bool(self.config.model.embeddings.document_casing_dim)
        features = documents_casing(token_seqs, document_ids) if has_document_casing else None
        tags = self.tags if tag_seqs is not None else None
        batcher = Batcher(
            token_seqs,
            self.word_lookup,
            self.chars,
            tag_seqs,
            tags,
            token_features=features,
            min_word_length=widest,
            max_word_length=50,
        )
        elmo, cache = self.model.elmo, None
        if elmo is not None and not elmo.fine_tune and elmo_cache_dir is not None:
            dtype = getattr(torch, self.config.model.elmo.cache_dtype)
            cache = ElmoCache.for_sentences(
                elmo.bilm, batcher.tokens, elmo_cache_dir, dtype=dtype, progress=self.config.output.progress
            )
        return EncodedSentences(batcher, cache, has_document_casing, document_ids, self.config.model.document_context)

    def encode_corpus(self, corpus: Corpus, elmo_cache_dir: Path | None = None) -> EncodedSentences:
        """A labelled corpus, its tags converted to the model's scheme."""
        scheme = self.config.model.scheme
        return self.encode(
            [s.tokens for s in corpus.sentences],
            [convert_tags(s.tags, corpus.scheme, scheme) for s in corpus.sentences],
            elmo_cache_dir,
            corpus.document_ids(),
        )

    def count_training_words(self, corpus: Corpus) -> None:
        """Set the training-time <unk> chances: ``model.word_dropout`` for every word, plus
        ``model.singleton_unk`` for the words seen once in ``corpus``."""
        model = self.config.model
        counts = Counter(self.word_lookup.encode(token for sentence in corpus.sentences for token in sentence.tokens))
        singletons = [i for i, n in counts.items() if n == 1 and i != self.words.unk_id]
        self.unk_probability.fill_(model.word_dropout)
        self.unk_probability[torch.tensor(singletons, dtype=torch.long, device=self.device)] = min(
            1.0, model.word_dropout + model.singleton_unk
        )

    def emissions(self, item: TaggerBatch, unk_probability: torch.Tensor | None = None) -> torch.Tensor:
        """Emission scores (B, T, K) of a batch from ``batches`` (whole documents, for the document context);
        with ``unk_probability`` (one chance per word id) words are replaced by <unk> at random, as in training."""
        mask = item.batch.mask.to(self.device)
        return self.model.emit(self.states(item, unk_probability), _to(item.mention_groups, self.device), mask)

    def states(self, item: TaggerBatch, unk_probability: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, T, S) of a batch (``TaggerModel.states``), zero at padding; ``unk_probability`` as in
        ``emissions``."""
        batch = item.batch
        word_ids = batch.word_ids.to(self.device)  # (B, T)
        if unk_probability is not None:
            dropped = torch.rand(word_ids.shape, device=self.device) < unk_probability[word_ids]  # (B, T)
            word_ids = word_ids.masked_fill(dropped & (word_ids > 0), self.words.unk_id)
        elmo_input, elmo_output = self._elmo_features(item)
        return self.model.states(
            word_ids,
            item.casing_ids.to(self.device),
            batch.char_ids.to(self.device),
            batch.mask.to(self.device),
            elmo_input,
            _to(item.document_casing_ids, self.device),
            elmo_output,
        )

    def token_input_parts(
        self, encoded: EncodedSentences, rows: torch.Tensor, chunk: int = 2048, chunk_chars: int = 16384
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first-layer gate inputs of the distinct words at ``rows`` (n,) of ``encoded``'s word table, in chunks
        of similar length (<= ``chunk`` words, <= ``chunk_chars`` characters padded): positions in ``rows`` (m,)
        and inputs (2, m, G). Eval mode without ELMo only (``TaggerModel.token_inputs``)."""
        batcher = encoded.batcher
        lengths, order = batcher.word_lengths[rows].sort(stable=True)  # (n,) shortest word first
        for positions in (order[a:b] for a, b in length_chunks(lengths.clamp(min=1).tolist(), chunk, chunk_chars)):
            part_rows = rows[positions]
            width = max(int(batcher.word_lengths[part_rows[-1]]), 1)
            document_casing = batcher.row_features[part_rows].to(self.device) if encoded.has_document_casing else None
            yield (
                positions,
                self.model.token_inputs(
                    batcher.word_table[part_rows].to(self.device),
                    encoded.casing_table[part_rows].to(self.device),
                    batcher.char_ids(part_rows, width).to(self.device),
                    document_casing,
                ),
            )  # (2, m, G)

    def _elmo_features(self, item: TaggerBatch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Mixed ELMo features (B, T, 2P) for the BiLSTM's input and, with ``model.elmo.output_mix``, for its
        output, from the cached layers or by running the biLM; (None, None) without ELMo."""
        elmo = self.model.elmo
        if elmo is None:
            return None, None
        if item.elmo_layers is not None:
            mask = batch_mask_with_boundaries(item.batch.mask).to(self.device)  # (B, T + 2)
            layers = elmo.top_from_below(item.elmo_layers.to(self.device), mask)  # L + 1 of (B, T + 2, 2P)
        else:
            layers, mask = elmo.layers(batch_to_char_ids(item.batch.tokens).to(self.device))
        features, _ = elmo.from_layers(layers, mask)  # (B, T, 2P)
        output = elmo.from_layers(layers, mask, output=True)[0] if elmo.output_scalar_mix is not None else None
        return features, output

    def loss(self, item: TaggerBatch) -> torch.Tensor:
        """Mean negative log-likelihood of the batch's gold tags (training mode: dropout, <unk> replacement),
        plus the ELMo scalar-mix L2 penalty when configured."""
        emissions = self.emissions(item, self.unk_probability).float()  # (B, T, K): bf16 under autocast
        loss = self.model.crf.neg_log_likelihood(
            emissions, item.batch.tag_ids.to(self.device), item.batch.mask.to(self.device)
        )
        if self.model.elmo is not None and self.config.model.elmo.l2:
            loss = loss + self.model.elmo.penalty()
        return loss

    # ------------------------------------------------------------------------------------------ predicting
    @torch.no_grad()
    def predict_encoded(
        self, encoded: EncodedSentences, batch_size: int = 64, with_scores: bool = False, keep_inputs: bool = True
    ) -> list[list[str]] | tuple[list[list[str]], list[list[tuple[str, int, int, float]]]]:
        """Tags in the model's scheme for every encoded sentence (in input order), optionally scored spans;
        ``keep_inputs`` as in ``inference_emissions``.

        With ``model.propagate_entities`` the decoded entities are propagated within each document
        (``ner.propagation``); a span's score is then the CRF's probability of the final span.
        """
        tags: list[list[str]] = [[] for _ in range(len(encoded))]
        scheme = self.config.model.scheme
        scored = self.inference_emissions(encoded, batch_size, keep_inputs)  # each batch, its emissions (B, T, K)
        for batch, emissions in scored:
            paths = self.model.crf.decode(emissions, batch.mask.to(self.device)).tolist()  # (B, T)
            for index, path, tokens in zip(batch.indices, paths, batch.tokens):
                tags[index] = self.tags.decode(path[: len(tokens)])
        if self.config.model.propagate_entities:
            propagated = propagate_entities(
                encoded.batcher.tokens, [tags_to_spans(t) for t in tags], encoded.document_ids
            )
            tags = [spans_to_tags(sentence_spans, len(t), scheme) for sentence_spans, t in zip(propagated, tags)]
        if not with_scores:
            return tags
        spans: list[list[tuple[str, int, int, float]]] = [[] for _ in range(len(encoded))]
        for batch, emissions in scored:
            batch_spans = [tags_to_spans(tags[index]) for index in batch.indices]
            probabilities = self.model.crf.span_probabilities(
                emissions, batch.mask.to(self.device), batch_spans, self.tags.items, scheme
            )
            for index, sentence_spans, probs in zip(batch.indices, batch_spans, probabilities):
                spans[index] = [(kind, start, end, p) for (kind, start, end), p in zip(sentence_spans, probs)]
        return tags, spans

    @torch.no_grad()
    def inference_emissions(
        self, encoded: EncodedSentences, batch_size: int = 64, keep_inputs: bool = True
    ) -> list[tuple[Batch, torch.Tensor]]:
        """Each batch of ``encoded`` (grouped by length) with its emission scores (B, T, K), in eval mode.

        Sentences go in groups of whole documents (``GROUP_TOKENS``), so that the encoder states, the ELMo layers
        and the per-word inputs held at once are a group's, not the corpus's. Within a group the document
        context is gathered across its batches, so they need not hold whole documents (as training's do) and
        pad little. Without ELMo everything before the recurrence depends on the spelling alone: it is computed
        once per word of a group, and with ``keep_inputs`` kept in ``input_cache`` for later groups and calls
        (tagging); without, dropped after the group (scoring a corpus once).
        """
        self.model.eval()
        return [
            scored
            for group in encoded.document_groups(GROUP_TOKENS)
            for scored in self._group_emissions(encoded, batch_size, group, keep_inputs)
        ]

    def _group_emissions(
        self, encoded: EncodedSentences, batch_size: int, sentences: list[int], keep_inputs: bool
    ) -> list[tuple[Batch, torch.Tensor]]:
        """``inference_emissions`` of one group of whole documents."""
        items = list(encoded.batches(batch_size, whole_documents=False, sentences=sentences, max_tokens=BATCH_TOKENS))
        if self.model.elmo is None:
            padding = torch.zeros(1, dtype=torch.long)
            group_rows = torch.unique(torch.cat([padding, *(item.batch.rows.reshape(-1) for item in items)]))  # (n+1,)
            table, columns = inputs_of_rows(
                group_rows,
                encoded.batcher.keys,
                partial(self.token_input_parts, encoded),
                self.model,
                self.input_cache if keep_inputs else None,
            )
        states = []
        for item in items:
            if self.model.elmo is not None:
                states.append(self.states(item))  # (B, T, S)
            else:
                rows = columns[item.batch.rows].to(self.device)  # (B, T)
                states.append(self.model.states_from_inputs(table, rows, item.batch.mask.to(self.device)))
        batches = [item.batch for item in items]
        contexts = encoded.other_mentions(batches, states) if self.model.document_context else [None] * len(items)
        return [
            (batch, self.model.emit_with_context(hidden, context))
            for batch, hidden, context in zip(batches, states, contexts)
        ]

    def predict(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, document_ids: Sequence[int] | None = None
    ) -> list[list[str]]:
        """Tags for tokenised sentences, in the scheme of the training files. For a model with the document
        casing feature, ``document_ids`` (one per sentence) delimit documents; by default a call is one document.

        >>> tagger.predict([["EU", "rejects", "German", "call"]])  # doctest: +SKIP
        [['I-ORG', 'O', 'I-MISC', 'O']]
        """
        sentences = checked_sentences(sentences)
        result: list[list[str]] = [[] for _ in sentences]
        nonempty, encoded = self._encode_nonempty(sentences, document_ids)
        if nonempty:
            for i, tags in zip(nonempty, self.predict_encoded(encoded, batch_size)):
                result[i] = convert_tags(tags, self.config.model.scheme, self.data_scheme)
        return result

    def predict_spans(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, document_ids: Sequence[int] | None = None
    ) -> list[list[tuple[str, int, int, float]]]:
        """Entities of tokenised sentences as ``(type, start_token, end_token_exclusive, probability)``;
        ``document_ids`` as in ``predict``."""
        sentences = checked_sentences(sentences)
        result: list[list[tuple[str, int, int, float]]] = [[] for _ in sentences]
        nonempty, encoded = self._encode_nonempty(sentences, document_ids)
        if nonempty:
            _, spans = self.predict_encoded(encoded, batch_size, True)
            for i, sentence_spans in zip(nonempty, spans):
                result[i] = sentence_spans
        return result

    def _encode_nonempty(
        self, sentences: list[list[str]], document_ids: Sequence[int] | None
    ) -> tuple[list[int], EncodedSentences | None]:
        """The positions of the non-empty sentences and their encoding (None if there are none)."""
        if document_ids is not None and len(document_ids) != len(sentences):
            raise ValueError(f"document_ids: expected one per sentence ({len(sentences)}), got {len(document_ids)}")
        nonempty = [i for i, tokens in enumerate(sentences) if tokens]
        if not nonempty:
            return nonempty, None
        ids = None if document_ids is None else [document_ids[i] for i in nonempty]
        return nonempty, self.encode([sentences[i] for i in nonempty], document_ids=ids)

    def tag(self, text: str) -> list[dict[str, Any]]:
        """Entities in raw text: ``[{"start", "end", "type", "text", "score"}, ...]`` with character offsets."""
        return tag_text(self, text)


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``tensor`` on ``device``; None stays None."""
    return None if tensor is None else tensor.to(device)
