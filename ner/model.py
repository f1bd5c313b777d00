"""The BiLSTM-CRF tagger: embedder -> our BiLSTM -> linear emissions -> constrained CRF.

``TaggerModel`` is the ``nn.Module`` (tensors in, tensors out). ``Tagger`` pairs it with its vocabularies and
tag schemes: it builds or loads a run directory, turns token lists into batches, and returns tags (in the
scheme of the user's files) or entity spans with their CRF probabilities.

Shape letters: B sentences, T tokens, W characters per token, D embedder features, H LSTM hidden size,
K tags, G gate inputs per direction (4H; 3H for GRU and coupled cells).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ner.config import Config, ModelConfig, config_from_dict, read_yaml
from ner.data.batching import Batch, Batcher
from ner.data.conll import Corpus, Sentence, write_text_atomic
from ner.data.features import CASING_CLASSES, DOCUMENT_CASING_CLASSES, casing_class, document_ranges, documents_casing
from ner.data.schemes import convert_tags, spans_to_tags, tags_to_spans
from ner.data.vectors import VectorTable, check_file, check_reference, load_vectors
from ner.data.vocab import (
    VOCABULARY_FILES,
    Vocabulary,
    WordLookup,
    build_vocabularies,
    load_vocabularies,
    save_vocabularies,
)
from ner.elmo import BiLM, BiLMOptions, Elmo, ElmoCache, batch_to_char_ids, load_bilm
from ner.errors import ConfigError, NerError
from ner.fileio import atomic_write
from ner.input_cache import TokenInputCache
from ner.nn.attention import StateAttention
from ner.nn.char_cnn import CharCNN
from ner.nn.crf import CRF, allowed_transitions
from ner.nn.lstm import GRU, LSTM
from ner.nn.mentions import mean_of_other_mentions, others_from_sums
from ner.propagation import propagate_entities
from ner.rundir import best_seed_dir, is_multi_seed
from ner.runfiles import (
    check_fits,
    check_plausible,
    check_same,
    load_weights,
    meta_device,
    read_json_object,
    read_meta,
    require_files,
)

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
META_FILE = "model.json"
VECTORS_FILE = "vectors.json"  # which pretrained table the run uses (ner/data/vectors.py), when it uses one
MODEL_FORMAT = 1  # bump when the saved layout changes; Tagger.load refuses other formats
CONSTRAINT_BUFFERS = ("crf.start_allowed", "crf.transitions_allowed", "crf.end_allowed")  # from tags.json


class Embedder(nn.Module):
    """Per-token features: word embedding ⊕ casing embedding ⊕ (optional) document casing embedding ⊕ character
    CNN ⊕ (optional) ELMo features.

    Words are looked up in a lowercased vocabulary (by default); the casing class restores what lowercasing
    removed; the document casing class says how the word is written elsewhere in its document; the character
    CNN sees the original spelling.
    """

    def __init__(self, config: ModelConfig, num_words: int, num_chars: int, elmo_dim: int = 0,
                 table: torch.Tensor | None = None) -> None:
        super().__init__()
        emb, cnn = config.embeddings, config.char_cnn
        self.words = nn.Embedding(num_words, emb.dim, padding_idx=0)
        # A pretrained table (rows, dim), fixed: word id num_words + r is its row r (ner.data.vocab.WordLookup).
        # Not saved with the weights: the run directory records which table it is (vectors.json).
        self.register_buffer("table", table, persistent=False)
        self.casing = nn.Embedding(len(CASING_CLASSES), emb.casing_dim, padding_idx=0) if emb.casing_dim else None
        self.document_casing = nn.Embedding(len(DOCUMENT_CASING_CLASSES), emb.document_casing_dim, padding_idx=0) \
            if emb.document_casing_dim else None
        self.chars = CharCNN(num_chars, cnn.dim, [tuple(f) for f in cnn.filters], highway_layers=cnn.highway,
                             boundary_windows=True) if cnn.dim else None
        self.output_dim = emb.dim + emb.casing_dim + emb.document_casing_dim + \
            (self.chars.output_dim if self.chars else 0) + elmo_dim

    def forward(self, word_ids: torch.Tensor, casing_ids: torch.Tensor, char_ids: torch.Tensor,
                elmo: torch.Tensor | None = None, document_casing_ids: torch.Tensor | None = None) -> torch.Tensor:
        """word_ids, casing_ids, document_casing_ids (B, T), char_ids (B, T, W), elmo (B, T, E) -> (B, T, D)."""
        features = [self.word_vectors(word_ids)]  # (B, T, word_dim)
        if self.casing is not None:
            features.append(self.casing(casing_ids))  # (B, T, casing_dim)
        if self.document_casing is not None:
            if document_casing_ids is None:
                raise ValueError("document_casing_ids: required by a model with a document casing feature")
            features.append(self.document_casing(document_casing_ids))  # (B, T, document_casing_dim)
        if self.chars is not None:
            features.append(self.chars(char_ids))  # (B, T, char_features), once per distinct spelling
        if elmo is not None:
            features.append(elmo)  # (B, T, E)
        return torch.cat(features, dim=-1)  # (B, T, D)

    def word_vectors(self, word_ids: torch.Tensor) -> torch.Tensor:
        """word_ids (B, T) -> (B, T, word_dim): learned rows below ``num_words``, the fixed table above."""
        learned = self.words.num_embeddings
        own = word_ids < learned  # (B, T)
        vectors = self.words(word_ids.masked_fill(~own, 0))  # (B, T, word_dim)
        if self.table is None or bool(own.all()):
            return vectors
        fixed = self.table[(word_ids - learned).clamp(min=0)]  # (B, T, word_dim)
        return torch.where(own[..., None], vectors, fixed)


class TaggerModel(nn.Module):
    """Encoder states from embedder + BiLSTM (+ self-attention over the sentence, ``model.attention``)
    (``states``), emission scores from them by a linear layer (``emit``), and a CRF constrained to well-formed
    sequences.

    With ``bilm`` the embedder also gets ELMo features: the biLM's layers, scalar-mixed (``self.elmo``).
    """

    def __init__(self, config: ModelConfig, num_words: int, num_chars: int, tag_names: Sequence[str],
                 bilm: BiLM | None = None, table: torch.Tensor | None = None) -> None:
        super().__init__()
        elmo = config.elmo
        self.elmo = Elmo(bilm, dropout=elmo.dropout, do_layer_norm=elmo.layer_norm, fine_tune=elmo.fine_tune,
                         l2_coef=elmo.l2) if bilm is not None else None
        self.embedder = Embedder(config, num_words, num_chars, self.elmo.output_dim if self.elmo else 0, table)
        self.dropout = nn.Dropout(config.dropout)
        lstm = config.lstm
        recurrent = GRU if lstm.variant == "gru" else LSTM
        options: dict[str, Any] = {} if lstm.variant == "gru" else {"variant": lstm.variant}
        self.encoder = recurrent(self.embedder.output_dim, lstm.hidden_size, num_layers=lstm.num_layers,
                                 bidirectional=True, dropout=config.dropout if lstm.num_layers > 1 else 0.0,
                                 layer_norm=lstm.layer_norm, residual=lstm.residual, **options)
        attention = config.attention
        self.attention = StateAttention(2 * lstm.hidden_size, attention.heads, attention.dropout) \
            if attention.heads else None
        self.document_context = config.document_context
        self.emissions = nn.Linear(2 * lstm.hidden_size * (2 if config.document_context else 1), len(tag_names))
        self.crf = CRF(len(tag_names), allowed_transitions(tag_names, config.scheme))

    def states(self, word_ids: torch.Tensor, casing_ids: torch.Tensor, char_ids: torch.Tensor,
               mask: torch.Tensor, elmo: torch.Tensor | None = None,
               document_casing_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, T, 2H) of the batch's tokens, zero at padding."""
        x = self.dropout(self.embedder(word_ids, casing_ids, char_ids, elmo, document_casing_ids))  # (B, T, D)
        hidden, _ = self.encoder(x, mask)  # (B, T, 2H)
        return self.attention(hidden, mask) if self.attention is not None else hidden

    def token_inputs(self, word_ids: torch.Tensor, casing_ids: torch.Tensor, char_ids: torch.Tensor,
                     document_casing_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The BiLSTM's first-layer gate inputs of V tokens taken one by one: word_ids, casing_ids,
        document_casing_ids (V,), char_ids (V, W) -> (2, V, G). In eval mode without ELMo they depend on the
        token's spelling (and document casing class) alone, so inference computes them once per distinct
        spelling (``states_from_inputs`` continues from them)."""
        document_casing = None if document_casing_ids is None else document_casing_ids[:, None]  # (V, 1)
        features = self.embedder(word_ids[:, None], casing_ids[:, None], char_ids[:, None],
                                 document_casing_ids=document_casing)  # (V, 1, D)
        return self.encoder.input_projection(features[:, 0])  # (2, V, G)

    def states_from_inputs(self, table: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, T, 2H), zero at padding, of tokens given as rows (B, T) of a ``token_inputs``
        table (2, V, G)."""
        hidden, _ = self.encoder(rows, mask, inputs_table=table)  # (B, T, 2H)
        return self.attention(hidden, mask) if self.attention is not None else hidden

    def emit(self, hidden: torch.Tensor, mention_groups: torch.Tensor | None) -> torch.Tensor:
        """Emission scores (B, T, K) from encoder states (B, T, 2H). With ``model.document_context`` each state
        is joined by the mean state of the other mentions of its word in its document: ``mention_groups``
        (B, T) gives equal ids to those tokens (0 on padding); the batch must hold whole documents."""
        context = None
        if self.document_context:
            if mention_groups is None:
                raise ValueError("mention_groups: required by a model with document context")
            context = mean_of_other_mentions(hidden, mention_groups)  # (B, T, 2H)
        return self.emit_with_context(hidden, context)

    def emit_with_context(self, hidden: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Emission scores (B, T, K) from encoder states (B, T, 2H) and, with document context, the mean states
        of each token's other mentions (B, T, 2H), however they were gathered."""
        if context is not None:
            hidden = torch.cat([hidden, context], dim=-1)  # (B, T, 4H)
        return self.emissions(self.dropout(hidden))  # (B, T, K)


class EncodedSentences:
    """Sentences turned into ids once (words, characters, casing, tags); served as padded batches.

    ``elmo_cache`` (frozen ELMo only) holds the biLM layers of these sentences, in the same order. With
    ``has_document_casing`` the batcher's row features are the tokens' document casing classes;
    ``document_ids`` delimit the documents (see ``Tagger.encode``). With ``document_context`` batches hold
    whole documents and carry each token's mention group: its lowercased spelling within its document.
    """

    def __init__(self, batcher: Batcher, elmo_cache: ElmoCache | None = None,
                 has_document_casing: bool = False, document_ids: Sequence[int] | None = None,
                 document_context: bool = False) -> None:
        self.batcher = batcher
        self.document_ids = document_ids  # one per sentence; None: all one document
        self.has_document_casing = has_document_casing
        self.casing_table = torch.tensor([0] + [casing_class(word) for word in batcher.distinct])  # (rows,)
        self.elmo_cache = elmo_cache
        self.documents = document_ranges(len(batcher), document_ids) if document_context else None
        self.sentence_documents: torch.Tensor | None = None  # (sentences,) document number
        self.lowercase_table: torch.Tensor | None = None  # (rows,) id of each row's lowercased spelling, 0: padding
        if self.documents is not None:
            self.sentence_documents = torch.repeat_interleave(
                torch.arange(len(self.documents)), torch.tensor([len(d) for d in self.documents]))
            lowercase: dict[str, int] = {}
            self.lowercase_table = torch.tensor(
                [0] + [lowercase.setdefault(word.lower(), len(lowercase) + 1) for word in batcher.distinct])

    def __len__(self) -> int:
        return len(self.batcher)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                whole_documents: bool = True) -> Iterator[TaggerBatch]:
        """Batches grouped by length; ``shuffle`` orders them by ``seed`` alone. With document context and
        ``whole_documents`` (training) they hold whole documents and carry their tokens' mention groups;
        without, they are grouped by length alone and ``other_mentions`` gathers the context across them."""
        documents = self.documents if whole_documents else None
        for batch in self.batcher.batches(batch_size, shuffle=shuffle, seed=seed, documents=documents):
            casing = self.casing_table[batch.rows]  # (B, T), 0 on padding
            document_casing = self.batcher.row_features[batch.rows] if self.has_document_casing else None  # (B, T)
            layers = None
            if self.elmo_cache is not None:
                layers, _ = self.elmo_cache.layers_for(batch.indices)  # (L + 1, B, T + 2, 2P)
            groups = _groups(self._mention_keys(batch)) if documents is not None else None  # (B, T)
            yield TaggerBatch(batch, casing, layers, document_casing, groups)

    def other_mentions(self, batches: Sequence[Batch], states: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """For batches of these sentences (together holding every sentence of a document they touch) and their
        encoder states (B, T, C): the mean state of each token's other mentions in its document (B, T, C), one
        batch at a time (the group sums over every batch come first; no temporary is corpus-sized)."""
        keys = torch.cat([self._mention_keys(batch).reshape(-1) for batch in batches])  # (N,)
        groups = _groups(keys.to(states[0].device))  # (N,)
        shared = torch.bincount(groups) > 1  # (G,) the groups of two mentions or more
        shared[0] = False
        groups = (shared.cumsum(0) * shared)[groups]  # (N,) only those keep an id: a lone token's context is 0
        sizes = torch.bincount(groups)  # (S,) S shared groups, and 0 (padding and lone tokens)
        sums = states[0].new_zeros(len(sizes), states[0].shape[-1])  # (S, C)
        parts = groups.split([hidden.shape[0] * hidden.shape[1] for hidden in states])  # each (B * T,)
        for ids, hidden in zip(parts, states):
            sums.index_add_(0, ids, hidden.reshape(-1, hidden.shape[-1]))  # in token order, as one call would
        for ids, hidden in zip(parts, states):
            yield others_from_sums(hidden.reshape(-1, hidden.shape[-1]), ids, sums, sizes).view_as(hidden)

    def _mention_keys(self, batch: Batch) -> torch.Tensor:
        """(B, T) one number per (document, lowercased spelling), the same in every batch; 0 on padding."""
        if self.lowercase_table is None or self.sentence_documents is None:
            raise ValueError("mention keys: the sentences were encoded for a model without document context")
        words = self.lowercase_table[batch.rows]  # (B, T), 0 on padding
        documents = self.sentence_documents[batch.indices]  # (B,)
        return (documents[:, None] * len(self.lowercase_table) + words) * batch.mask  # (B, T)


def _groups(keys: torch.Tensor) -> torch.Tensor:
    """Ids from 1 shared by equal nonzero ``keys`` (any shape); 0 where the key is 0."""
    _, inverse = torch.unique(keys, return_inverse=True)
    return (inverse + 1) * (keys > 0)


@dataclass
class TaggerBatch:
    """A padded batch plus what only the tagger derives: casing classes and cached ELMo layers."""

    batch: Batch
    casing_ids: torch.Tensor  # (B, T) long
    elmo_layers: torch.Tensor | None  # (L + 1, B, T + 2, 2P) from the cache, or None
    document_casing_ids: torch.Tensor | None = None  # (B, T) long, when the model has the feature
    mention_groups: torch.Tensor | None = None  # (B, T) long, with model.document_context

    @property
    def size(self) -> int:
        return self.batch.mask.size(0)


class Tagger:
    """A trained (or new) tagger with everything needed to use it: config, vocabularies, tag schemes.

    ``data_scheme`` is the scheme of the training files (predictions are converted back to it); the model
    works in ``config.model.scheme``.
    """

    def __init__(self, config: Config, words: Vocabulary, chars: Vocabulary, tags: Vocabulary,
                 data_scheme: str, device: torch.device | str = "cpu", bilm: BiLM | None = None,
                 vectors: VectorTable | None = None) -> None:
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
        model_scheme = config.model.scheme
        sentences = [_with_tags(s, convert_tags(s.tags, train.scheme, model_scheme)) for s in train.sentences]
        emb = config.model.embeddings
        vectors = load_vectors(emb.pretrained, emb.dim, emb.lowercase) if emb.pretrained else None
        keep = vectors.index if vectors else ()
        words, chars, tags = build_vocabularies(sentences, emb.min_count, emb.lowercase, model_scheme, keep)
        if vectors and emb.freeze:
            words = Vocabulary([w for w in words.items[2:] if w not in vectors.index], lowercase=emb.lowercase)
        bilm = None
        if config.model.elmo.enabled:
            elmo = config.model.elmo
            bilm = load_bilm(elmo.pretrained_dir, elmo.options_file, elmo.weights_file)
        tagger = cls(config, words, chars, tags, train.scheme, device, bilm, vectors)
        if vectors:
            tagger._initialise_word_rows(vectors)
        return tagger

    @torch.no_grad()
    def _initialise_word_rows(self, vectors: VectorTable) -> None:
        """Learned word rows: the table's vector where it has the word, else N(0, s^2) on the table's scale."""
        weight = self.model.embedder.words.weight  # (num_words, dim)
        weight.mul_(float(vectors.vectors.std()))
        found = [(i, vectors.index[w]) for i, w in enumerate(self.words.items) if i > 1 and w in vectors.index]
        if found:
            ids, rows = zip(*found)
            weight[torch.tensor(ids)] = torch.from_numpy(vectors.vectors[list(rows)]).to(weight.device)
        weight[0] = 0.0  # padding

    def save_vocabularies(self, run_dir: Path) -> None:
        """Write the vocabularies and ``model.json`` (formats and schemes) into ``run_dir``."""
        save_vocabularies(run_dir, self.words, self.chars, self.tags)
        if self.vectors is not None:
            write_text_atomic(run_dir / VECTORS_FILE, json.dumps(self.vectors.reference(), indent=2) + "\n")
        meta = {"format": MODEL_FORMAT, "data_scheme": self.data_scheme, "model_scheme": self.config.model.scheme,
                "elmo_options": self.model.elmo.bilm.options.to_allennlp() if self.model.elmo else None}
        write_text_atomic(run_dir / META_FILE, json.dumps(meta, indent=2) + "\n")

    def save_weights(self, run_dir: Path) -> None:
        """Write the model's state dict to ``model.pt`` (atomically; loads with ``weights_only=True``)."""
        atomic_write(run_dir / WEIGHTS_FILE, lambda handle: torch.save(self.model.state_dict(), handle))

    @classmethod
    def load(cls, run_dir: str | Path, device: torch.device | str | None = None) -> Tagger:
        """Load a run directory written by ``ner train``; needs nothing else. Safe on untrusted files: no code
        runs from them, every file is checked (a NerError naming it), and memory and time are bounded by their
        size (``ner.runfiles``). Of a multi-seed run (``RUN/seed-N/``), the seed that was best on dev."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise NerError(f"{run_dir}: no such run directory (expected the output.dir of `ner train`)")
        if is_multi_seed(run_dir):
            run_dir = best_seed_dir(run_dir)
        require_files(run_dir, (CONFIG_FILE, META_FILE, WEIGHTS_FILE, *VOCABULARY_FILES.values()))
        try:
            config = config_from_dict(read_yaml(run_dir / CONFIG_FILE), run_dir, str(run_dir / CONFIG_FILE))
        except ConfigError as error:
            raise NerError(f"{error} (the run was written by an incompatible version of ner)") from None
        meta = read_meta(run_dir / META_FILE, MODEL_FORMAT, config.model.scheme)
        words, chars, tags = load_vocabularies(run_dir)
        # The biLM's weights are in model.pt: only its architecture is needed to rebuild it.
        options = BiLMOptions.from_allennlp(meta["elmo_options"], str(run_dir / META_FILE)) \
            if meta["elmo_options"] else None
        # Untrusted files: the weights first (no larger than their file), then the model the other files
        # describe, shape by shape, and only then is anything built (runfiles.py).
        weights = run_dir / WEIGHTS_FILE
        state = load_weights(weights)
        check_plausible(weights, state, len(tags), _layers(config.model, options))
        try:
            constraints = allowed_transitions(tags.items, config.model.scheme)
        except ValueError as error:
            raise NerError(f"{run_dir / VOCABULARY_FILES['tags']}: {error}") from None
        check_fits(weights, state, _state_shapes(run_dir, config.model, words, chars, tags, options))
        check_same(weights, state, dict(zip(CONSTRAINT_BUFFERS, constraints)), "tags.json")
        device = resolve_device(config.training.device) if device is None else device
        tagger = cls(config, words, chars, tags, meta["data_scheme"], device, BiLM(options) if options else None,
                     _saved_vectors(run_dir, config))
        tagger.model.load_state_dict(state)
        tagger.model.eval()
        return tagger

    # ------------------------------------------------------------------------------------------ batches
    def encode(self, token_seqs: Sequence[Sequence[str]], tag_seqs: Sequence[Sequence[str]] | None = None,
               elmo_cache_dir: Path | None = None, document_ids: Sequence[int] | None = None) -> EncodedSentences:
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
        batcher = Batcher(token_seqs, self.word_lookup, self.chars, tag_seqs, tags,
                          token_features=features, min_word_length=widest, max_word_length=50)
        elmo, cache = self.model.elmo, None
        if elmo is not None and not elmo.fine_tune and elmo_cache_dir is not None:
            dtype = getattr(torch, self.config.model.elmo.cache_dtype)
            cache = ElmoCache.for_sentences(elmo.bilm, batcher.tokens, elmo_cache_dir, dtype=dtype,
                                            progress=self.config.output.progress)
        return EncodedSentences(batcher, cache, has_document_casing, document_ids,
                                self.config.model.document_context)

    def encode_corpus(self, corpus: Corpus, elmo_cache_dir: Path | None = None) -> EncodedSentences:
        """A labelled corpus, its tags converted to the model's scheme."""
        scheme = self.config.model.scheme
        return self.encode([s.tokens for s in corpus.sentences],
                           [convert_tags(s.tags, corpus.scheme, scheme) for s in corpus.sentences], elmo_cache_dir,
                           corpus.document_ids())

    def count_training_words(self, corpus: Corpus) -> None:
        """Set the training-time <unk> chances: ``model.word_dropout`` for every word, plus
        ``model.singleton_unk`` for the words seen once in ``corpus``."""
        model = self.config.model
        counts = Counter(self.word_lookup.encode(token for sentence in corpus.sentences for token in sentence.tokens))
        singletons = [i for i, n in counts.items() if n == 1 and i != self.words.unk_id]
        self.unk_probability.fill_(model.word_dropout)
        self.unk_probability[torch.tensor(singletons, dtype=torch.long, device=self.device)] = \
            min(1.0, model.word_dropout + model.singleton_unk)

    def emissions(self, item: TaggerBatch, unk_probability: torch.Tensor | None = None) -> torch.Tensor:
        """Emission scores (B, T, K) of a batch from ``batches`` (whole documents, for the document context);
        with ``unk_probability`` (one chance per word id) words are replaced by <unk> at random, as in training."""
        return self.model.emit(self.states(item, unk_probability), _to(item.mention_groups, self.device))

    def states(self, item: TaggerBatch, unk_probability: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, T, 2H) of a batch, zero at padding; ``unk_probability`` as in ``emissions``."""
        batch = item.batch
        word_ids = batch.word_ids.to(self.device)  # (B, T)
        if unk_probability is not None:
            dropped = torch.rand(word_ids.shape, device=self.device) < unk_probability[word_ids]  # (B, T)
            word_ids = word_ids.masked_fill(dropped & (word_ids > 0), self.words.unk_id)
        return self.model.states(word_ids, item.casing_ids.to(self.device), batch.char_ids.to(self.device),
                                 batch.mask.to(self.device), self._elmo_features(item),
                                 _to(item.document_casing_ids, self.device))

    def token_inputs(self, encoded: EncodedSentences, rows: torch.Tensor) -> torch.Tensor:
        """First-layer gate inputs (2, n, G) of the distinct words at ``rows`` (n,) of ``encoded``'s word table
        (see ``token_input_parts``)."""
        table = None
        for positions, part in self.token_input_parts(encoded, rows):
            if table is None:
                table = part.new_empty(part.shape[0], len(rows), part.shape[2])  # (2, n, G)
            table[:, positions.to(self.device)] = part
        return table

    def token_input_parts(self, encoded: EncodedSentences, rows: torch.Tensor, chunk: int = 2048
                          ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first-layer gate inputs of the distinct words at ``rows`` (n,) of ``encoded``'s word table, in chunks
        of words of similar length: positions in ``rows`` (m,) and their inputs (2, m, G), so a caller can store
        them where it keeps them. Eval mode without ELMo only (see ``TaggerModel.token_inputs``)."""
        batcher = encoded.batcher
        order = batcher.word_lengths[rows].argsort()  # (n,) positions in rows, shortest word first
        for positions in order.split(chunk):
            part_rows = rows[positions]
            width = max(int(batcher.word_lengths[part_rows[-1]]), 1)
            document_casing = batcher.row_features[part_rows].to(self.device) if encoded.has_document_casing else None
            yield positions, self.model.token_inputs(batcher.word_table[part_rows].to(self.device),
                                                     encoded.casing_table[part_rows].to(self.device),
                                                     batcher.char_table[part_rows, :width].to(self.device),
                                                     document_casing)  # (2, m, G)

    def _elmo_features(self, item: TaggerBatch) -> torch.Tensor | None:
        """Mixed ELMo features (B, T, 2P) from the cached layers, or by running the biLM; None without ELMo."""
        elmo = self.model.elmo
        if elmo is None:
            return None
        if item.elmo_layers is not None:
            layers = item.elmo_layers.to(self.device)  # (L + 1, B, T + 2, 2P)
            mask = batch_mask_with_boundaries(item.batch.mask).to(self.device)  # (B, T + 2)
            features, _ = elmo.from_layers(layers, mask)
        else:
            features, _ = elmo(batch_to_char_ids(item.batch.tokens).to(self.device))
        return features  # (B, T, 2P)

    def loss(self, item: TaggerBatch) -> torch.Tensor:
        """Mean negative log-likelihood of the batch's gold tags (training mode: dropout, <unk> replacement),
        plus the ELMo scalar-mix L2 penalty when configured."""
        emissions = self.emissions(item, self.unk_probability)
        loss = self.model.crf.neg_log_likelihood(emissions, item.batch.tag_ids.to(self.device),
                                                 item.batch.mask.to(self.device))
        if self.model.elmo is not None and self.config.model.elmo.l2:
            loss = loss + self.model.elmo.penalty()
        return loss

    # ------------------------------------------------------------------------------------------ predicting
    @torch.no_grad()
    def predict_encoded(self, encoded: EncodedSentences, batch_size: int = 64, with_scores: bool = False
                        ) -> list[list[str]] | tuple[list[list[str]], list[list[tuple[str, int, int, float]]]]:
        """Tags in the model's scheme for every encoded sentence (in input order), optionally scored spans.

        With ``model.propagate_entities`` the decoded entities are propagated within each document
        (``ner.propagation``); a span's score is then the CRF's probability of the final span.
        """
        tags: list[list[str]] = [[] for _ in range(len(encoded))]
        scheme = self.config.model.scheme
        scored = self.inference_emissions(encoded, batch_size)  # each batch with its emissions (B, T, K)
        for batch, emissions in scored:
            paths = self.model.crf.decode(emissions, batch.mask.to(self.device)).tolist()  # (B, T)
            for index, path, tokens in zip(batch.indices, paths, batch.tokens):
                tags[index] = self.tags.decode(path[:len(tokens)])
        if self.config.model.propagate_entities:
            propagated = propagate_entities(encoded.batcher.tokens, [tags_to_spans(t) for t in tags],
                                            encoded.document_ids)
            tags = [spans_to_tags(sentence_spans, len(t), scheme) for sentence_spans, t in zip(propagated, tags)]
        if not with_scores:
            return tags
        spans: list[list[tuple[str, int, int, float]]] = [[] for _ in range(len(encoded))]
        for batch, emissions in scored:
            batch_spans = [tags_to_spans(tags[index]) for index in batch.indices]
            probabilities = self.model.crf.span_probabilities(emissions, batch.mask.to(self.device), batch_spans,
                                                              self.tags.items, scheme)
            for index, sentence_spans, probs in zip(batch.indices, batch_spans, probabilities):
                spans[index] = [(kind, start, end, p) for (kind, start, end), p in zip(sentence_spans, probs)]
        return tags, spans

    @torch.no_grad()
    def inference_emissions(self, encoded: EncodedSentences, batch_size: int = 64
                            ) -> list[tuple[Batch, torch.Tensor]]:
        """Each batch of ``encoded`` (grouped by length) with its emission scores (B, T, K), in eval mode.

        Without ELMo everything before the recurrence depends on the spelling alone: it is computed once per
        word (``input_cache``). The document context is gathered across all the batches, so they need not
        hold whole documents (as training's do) and pad little.
        """
        self.model.eval()
        table, columns = self.input_cache.lookup(self, encoded) if self.model.elmo is None else (None, None)
        items = list(encoded.batches(batch_size, whole_documents=False))
        states = []
        for item in items:
            if table is None:
                states.append(self.states(item))  # (B, T, 2H)
            else:
                rows = columns[item.batch.rows.to(self.device)]  # (B, T)
                states.append(self.model.states_from_inputs(table, rows, item.batch.mask.to(self.device)))
        batches = [item.batch for item in items]
        contexts = (encoded.other_mentions(batches, states) if self.model.document_context
                    else [None] * len(items))
        return [(batch, self.model.emit_with_context(hidden, context))
                for batch, hidden, context in zip(batches, states, contexts)]

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 64,
                document_ids: Sequence[int] | None = None) -> list[list[str]]:
        """Tags for tokenised sentences, in the scheme of the training files. For a model with the document
        casing feature, ``document_ids`` (one per sentence) delimit documents; by default a call is one document.

        >>> tagger.predict([["EU", "rejects", "German", "call"]])  # doctest: +SKIP
        [['I-ORG', 'O', 'I-MISC', 'O']]
        """
        sentences = _checked(sentences)
        result: list[list[str]] = [[] for _ in sentences]
        nonempty, encoded = self._encode_nonempty(sentences, document_ids)
        if nonempty:
            for i, tags in zip(nonempty, self.predict_encoded(encoded, batch_size)):
                result[i] = convert_tags(tags, self.config.model.scheme, self.data_scheme)
        return result

    def predict_spans(self, sentences: Sequence[Sequence[str]], batch_size: int = 64,
                      document_ids: Sequence[int] | None = None) -> list[list[tuple[str, int, int, float]]]:
        """Entities of tokenised sentences as ``(type, start_token, end_token_exclusive, probability)``;
        ``document_ids`` as in ``predict``."""
        sentences = _checked(sentences)
        result: list[list[tuple[str, int, int, float]]] = [[] for _ in sentences]
        nonempty, encoded = self._encode_nonempty(sentences, document_ids)
        if nonempty:
            _, spans = self.predict_encoded(encoded, batch_size, True)
            for i, sentence_spans in zip(nonempty, spans):
                result[i] = sentence_spans
        return result

    def _encode_nonempty(self, sentences: list[list[str]], document_ids: Sequence[int] | None
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
        from ner.tagging import tag_text

        return tag_text(self, text)


def _saved_vectors(run_dir: Path, config: Config) -> VectorTable | None:
    """The pretrained table a run was trained with, checked against the reference in ``vectors.json``."""
    emb = config.model.embeddings
    if not emb.pretrained:
        return None
    path = run_dir / VECTORS_FILE
    if not path.exists():
        raise NerError(f"{path}: missing (the run's config names pretrained vectors; expected a run directory "
                       f"written by `ner train`)")
    reference = read_json_object(path)
    check_file(emb.pretrained, reference, path)  # before reading it: a wrong or huge file goes unparsed
    try:
        vectors = load_vectors(emb.pretrained, emb.dim, emb.lowercase)
    except NerError as error:
        raise NerError(f"{path}: the model needs its word vectors {emb.pretrained}: {error}") from None
    check_reference(vectors, reference, path)
    return vectors


def _layers(config: ModelConfig, options: BiLMOptions | None) -> int:
    """How many layers (each with at least one tensor) the config and the biLM options describe."""
    cnn = config.char_cnn
    layers = config.lstm.num_layers + (len(cnn.filters) + cnn.highway if cnn.dim else 0)
    return layers + (options.num_layers + len(options.filters) + options.highway_layers if options else 0)


def _state_shapes(run_dir: Path, config: ModelConfig, words: Vocabulary, chars: Vocabulary, tags: Vocabulary,
                  options: BiLMOptions | None) -> dict[str, torch.Size]:
    """Names and shapes of the state dict of the model that ``config``, the vocabularies and the biLM options
    describe, built on the meta device: nothing is allocated, however large it claims to be."""
    try:
        with meta_device():
            model = TaggerModel(config, len(words), len(chars), tags.items, BiLM(options) if options else None)
    except (RuntimeError, ValueError, TypeError, OverflowError) as error:
        raise NerError(f"{run_dir}: config.yaml and model.json describe no model that can be built: "
                       f"{str(error).splitlines()[0]}") from None
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``tensor`` on ``device``; None stays None."""
    return None if tensor is None else tensor.to(device)


def batch_mask_with_boundaries(mask: torch.Tensor) -> torch.Tensor:
    """A (B, T) token mask -> the (B, T + 2) mask of the same sentences with <S> and </S> added."""
    lengths = mask.sum(dim=1, keepdim=True) + 2  # (B, 1)
    return torch.arange(mask.size(1) + 2, device=mask.device) < lengths  # (B, T + 2)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NerError("training.device: cuda requested but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def _checked(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    """Token lists, refusing a bare string (a common mistake: pass [["EU", "rejects"]], not ["EU rejects"])."""
    if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
        raise TypeError("expected a list of token lists, e.g. [['EU', 'rejects', 'German', 'call']]")
    checked = [list(s) for s in sentences]
    for number, tokens in enumerate(checked):
        if not all(isinstance(token, str) for token in tokens):
            odd = next(token for token in tokens if not isinstance(token, str))
            raise TypeError(f"sentence {number}: expected tokens as strings, got {type(odd).__name__} {odd!r}")
    return checked


def _with_tags(sentence: Sentence, tags: list[str]) -> Sentence:
    return dataclasses.replace(sentence, tags=tags)
