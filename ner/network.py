"""The tagger's network, tensors in and tensors out: embedder -> our BiLSTM (-> self-attention) -> linear
emissions (with the document context) -> constrained CRF.

``Embedder`` makes each token's features, ``TaggerModel`` holds the whole ``nn.Module``; ``ner.model.Tagger`` feeds
it batches of ids (``ner.encoding``) and turns its outputs into tags and spans.

Shape letters: B sentences, T tokens, W characters per token, D embedder features, H LSTM hidden size,
K tags, G gate inputs per direction (4H; 3H for GRU and coupled cells).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ner.config import ModelConfig
from ner.data.features import CASING_CLASSES, DOCUMENT_CASING_CLASSES
from ner.elmo import BiLM, Elmo
from ner.errors import NerError
from ner.nn.attention import StateAttention
from ner.nn.char_cnn import CharCNN
from ner.nn.crf import CRF, allowed_transitions
from ner.nn.dropout import Dropout
from ner.nn.lstm import GRU, LSTM
from ner.nn.mentions import mean_of_other_mentions

INFERENCE_PRECISIONS = ("float32", "bf16")


class Embedder(nn.Module):
    """Per-token features: word embedding ⊕ casing embedding ⊕ (optional) document casing embedding ⊕ character
    CNN ⊕ (optional) ELMo features.

    Words are looked up in a lowercased vocabulary (by default); the casing class restores what lowercasing
    removed; the document casing class says how the word is written elsewhere in its document; the character
    CNN sees the original spelling.
    """

    def __init__(
        self, config: ModelConfig, num_words: int, num_chars: int, elmo_dim: int = 0, table: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        emb, cnn = config.embeddings, config.char_cnn
        self.words = nn.Embedding(num_words, emb.dim, padding_idx=0)
        # A pretrained table (rows, dim), fixed: word id num_words + r is its row r (ner.data.vocab.WordLookup).
        # Not saved with the weights: the run directory records which table it is (vectors.json).
        self.register_buffer("table", table, persistent=False)
        self.casing = nn.Embedding(len(CASING_CLASSES), emb.casing_dim, padding_idx=0) if emb.casing_dim else None
        self.document_casing = (
            nn.Embedding(len(DOCUMENT_CASING_CLASSES), emb.document_casing_dim, padding_idx=0)
            if emb.document_casing_dim
            else None
        )
        self.chars = (
            CharCNN(
                num_chars, cnn.dim, [tuple(f) for f in cnn.filters], highway_layers=cnn.highway, boundary_windows=True
            )
            if cnn.dim
            else None
        )
        self.output_dim = (
            emb.dim + emb.casing_dim + emb.document_casing_dim + (self.chars.output_dim if self.chars else 0) + elmo_dim
        )

    def forward(
        self,
        word_ids: torch.Tensor,
        casing_ids: torch.Tensor,
        char_ids: torch.Tensor,
        elmo: torch.Tensor | None = None,
        document_casing_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
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

    def __init__(
        self,
        config: ModelConfig,
        num_words: int,
        num_chars: int,
        tag_names: Sequence[str],
        bilm: BiLM | None = None,
        table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        elmo = config.elmo
        self.elmo = (
            Elmo(
                bilm,
                dropout=elmo.dropout,
                do_layer_norm=elmo.layer_norm,
                fine_tune=elmo.fine_tune,
                fine_tune_top=elmo.fine_tune_top,
                l2_coef=elmo.l2,
                output_mix=elmo.output_mix,
            )
            if bilm is not None
            else None
        )
        self.embedder = Embedder(config, num_words, num_chars, self.elmo.output_dim if self.elmo else 0, table)
        self.dropout = Dropout(config.dropout)
        lstm = config.lstm
        recurrent = GRU if lstm.variant == "gru" else LSTM
        options: dict[str, Any] = {} if lstm.variant == "gru" else {"variant": lstm.variant}
        self.encoder = recurrent(
            self.embedder.output_dim,
            lstm.hidden_size,
            num_layers=lstm.num_layers,
            bidirectional=True,
            dropout=config.dropout if lstm.num_layers > 1 else 0.0,
            layer_norm=lstm.layer_norm,
            residual=lstm.residual,
            **options,
        )
        attention = config.attention
        self.attention = (
            StateAttention(2 * lstm.hidden_size, attention.heads, attention.dropout) if attention.heads else None
        )
        self.document_context = config.document_context
        state_dim = 2 * lstm.hidden_size + (self.elmo.output_dim if self.elmo and elmo.output_mix else 0)
        self.emissions = nn.Linear(state_dim * (2 if config.document_context else 1), len(tag_names))
        self.crf = CRF(len(tag_names), allowed_transitions(tag_names, config.scheme))

    def states(
        self,
        word_ids: torch.Tensor,
        casing_ids: torch.Tensor,
        char_ids: torch.Tensor,
        mask: torch.Tensor,
        elmo: torch.Tensor | None = None,
        document_casing_ids: torch.Tensor | None = None,
        elmo_output: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder states (B, T, S) of the batch's tokens, zero at padding: the BiLSTM's (S = 2H), joined by
        ``elmo_output`` (B, T, E), the output mix's features, when given (S = 2H + E)."""
        x = self.dropout(self.embedder(word_ids, casing_ids, char_ids, elmo, document_casing_ids))  # (B, T, D)
        hidden, _ = self.encoder(x, mask)  # (B, T, 2H)
        hidden = self.attention(hidden, mask) if self.attention is not None else hidden
        return hidden if elmo_output is None else torch.cat([hidden, elmo_output], dim=-1)  # (B, T, S)

    def set_inference_precision(self, precision: str) -> None:
        """``float32`` (the default) or ``bf16``: the BiLSTM's products at inference (its input projection and
        recurrence) in bfloat16 with float32 sums, where the CPU has such products natively (AVX512-BF16:
        ``ner.nn.lstm_kernel.native_bf16``), float32 elsewhere. Raises NerError for another value."""
        if precision not in INFERENCE_PRECISIONS:
            raise NerError(f"precision: expected one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
        self.encoder.bf16_products = precision == "bf16"

    def token_inputs(
        self,
        word_ids: torch.Tensor,
        casing_ids: torch.Tensor,
        char_ids: torch.Tensor,
        document_casing_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The BiLSTM's first-layer gate inputs of V tokens taken one by one: word_ids, casing_ids,
        document_casing_ids (V,), char_ids (V, W) -> (2, V, G). In eval mode without ELMo they depend on the
        token's spelling (and document casing class) alone, so inference computes them once per distinct
        spelling (``states_from_inputs`` continues from them)."""
        document_casing = None if document_casing_ids is None else document_casing_ids[:, None]  # (V, 1)
        features = self.embedder(
            word_ids[:, None], casing_ids[:, None], char_ids[:, None], document_casing_ids=document_casing
        )  # (V, 1, D)
        return self.encoder.input_projection(features[:, 0])  # (2, V, G)

    def states_from_inputs(self, table: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, T, 2H), zero at padding, of tokens given as rows (B, T) of a ``token_inputs``
        table (2, V, G)."""
        hidden, _ = self.encoder(rows, mask, inputs_table=table)  # (B, T, 2H)
        return self.attention(hidden, mask) if self.attention is not None else hidden

    def emit(self, hidden: torch.Tensor, mention_groups: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """Emission scores (B, T, K) from encoder states (B, T, S) (see ``states``), zero at padding. With
        ``model.document_context`` each state is joined by the mean state of the other mentions of its word in
        its document: ``mention_groups`` (B, T) gives equal ids to those tokens (0 on padding); the batch must
        hold whole documents. Computed on the real tokens of ``mask`` (B, T) alone: a batch of whole documents
        is mostly padding when one of its sentences is long."""
        if self.document_context and mention_groups is None:
            raise ValueError("mention_groups: required by a model with document context")
        batch, time, _ = hidden.shape
        tokens = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        flat = hidden.reshape(batch * time, -1).index_select(0, tokens)  # (N, S)
        context = None
        if self.document_context:
            context = mean_of_other_mentions(flat, mention_groups.reshape(-1).index_select(0, tokens))  # (N, S)
        scores = self.emit_with_context(flat, context)  # (N, K)
        return scores.new_zeros(batch * time, scores.shape[1]).index_copy(0, tokens, scores).view(batch, time, -1)

    def emit_with_context(self, hidden: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Emission scores (B, T, K) from encoder states (B, T, S) and, with document context, the mean states
        of each token's other mentions (B, T, S), however they were gathered."""
        if context is not None:
            hidden = torch.cat([hidden, context], dim=-1)  # (B, T, 2S)
        return self.emissions(self.dropout(hidden))  # (B, T, K)
