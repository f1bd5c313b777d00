"""The ELMo bidirectional language model (biLM): character CNN -> L layers of LSTM per direction.

Follows ``docs/elmo.md`` sections 2-5 and 7 (AllenNLP's ``_ElmoBiLm``):

1. ``<S>`` and ``</S>`` are added around every sentence, so every activation has ``time + 2`` positions.
2. A character CNN (filters, relu highways, projection to ``P``) gives a context-free vector per token.
3. Forward and backward stacks of ``L`` LSTM layers with a cell of width ``D``, projection to ``P`` and
   clipping (our ``ner.nn.lstm.LSTM``). The stacks are separate: forward layer l reads forward layer l - 1
   only. The backward stack reads each sentence reversed within its own length. From the second layer on, a
   layer's input is added to its output (residual, after clipping).
4. Output: ``L + 1`` tensors ``(batch, time + 2, 2P)``; layer 0 is the token vector duplicated ``[x; x]`` and
   masked, layer k the ``[forward; backward]`` outputs of LSTM layer k, zero at padding.

The module is **stateless**: every call starts both directions from zero states. AllenNLP's ``Elmo`` carries
the LSTM states from one call to the next (``stateful=True``), so it agrees with this module only on its first
call or after ``reset_states()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ner.elmo.chars import MAX_WORD_LENGTH, NUM_CHAR_IDS, add_sentence_boundaries
from ner.errors import ConfigError, NerError, location
from ner.fileio import atomic_write, write_json_atomic
from ner.nn.char_cnn import CharCNN
from ner.nn.dropout import dropout
from ner.nn.lstm import LSTM, reverse_padded

OPTIONS_FILE = "options.json"
WEIGHTS_FILE = "bilm.pt"

LSTMState = tuple[torch.Tensor, torch.Tensor]


@dataclass
class BiLMOptions:
    """Architecture of a biLM; read from and written to AllenNLP's ``options.json`` layout."""

    filters: list[tuple[int, int]] = field(default_factory=lambda: [(1, 32), (2, 32), (3, 64), (4, 128)])
    char_dim: int = 16
    highway_layers: int = 1
    activation: str = "relu"  # of the CNN filters; highways always use relu
    projection_dim: int = 128  # P: token vector and LSTM output width
    lstm_dim: int = 512  # D: LSTM cell width
    num_layers: int = 2
    cell_clip: float | None = 3.0  # None (or 0) disables clipping
    proj_clip: float | None = 3.0

    @classmethod
    def from_allennlp(cls, raw: dict[str, Any], origin: str) -> BiLMOptions:
        """Read the ``lstm`` and ``char_cnn`` sections of an AllenNLP/bilm-tf options mapping."""
        try:
            lstm, cnn = raw["lstm"], raw["char_cnn"]
            if not lstm.get("use_skip_connections", False):
                raise ConfigError(
                    f"{origin}: lstm.use_skip_connections: expected true (ELMo biLMs have "
                    f"residual connections), got {lstm.get('use_skip_connections')!r}"
                )
            max_chars = cnn.get("max_characters_per_token", MAX_WORD_LENGTH)
            if max_chars != MAX_WORD_LENGTH:
                raise ConfigError(
                    f"{origin}: char_cnn.max_characters_per_token: expected {MAX_WORD_LENGTH}, got {max_chars!r}"
                )
            return cls(
                filters=[(int(width), int(num)) for width, num in cnn["filters"]],
                char_dim=int(cnn["embedding"]["dim"]),
                highway_layers=int(cnn["n_highway"]),
                activation=str(cnn["activation"]),
                projection_dim=int(lstm["projection_dim"]),
                lstm_dim=int(lstm["dim"]),
                num_layers=int(lstm["n_layers"]),
                cell_clip=lstm.get("cell_clip") or None,
                proj_clip=lstm.get("proj_clip") or None,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ConfigError(f"{origin}: not an ELMo options file: missing or malformed {error}") from None

    def to_allennlp(self) -> dict[str, Any]:
        """The AllenNLP/bilm-tf inference options mapping (``n_characters`` 262, as inference needs)."""
        return {
            "lstm": {
                "use_skip_connections": True,
                "projection_dim": self.projection_dim,
                "cell_clip": self.cell_clip,
                "proj_clip": self.proj_clip,
                "dim": self.lstm_dim,
                "n_layers": self.num_layers,
            },
            "char_cnn": {
                "activation": self.activation,
                "filters": [list(f) for f in self.filters],
                "n_highway": self.highway_layers,
                "embedding": {"dim": self.char_dim},
                "n_characters": NUM_CHAR_IDS,
                "max_characters_per_token": MAX_WORD_LENGTH,
            },
        }


def read_options(path: str | Path) -> BiLMOptions:
    """Load an AllenNLP-layout ``options.json``."""
    path = Path(path)
    if not path.is_file():
        raise NerError(f"{path}: ELMo options file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{location(path, error.lineno)}: invalid JSON: {error.msg}") from None
    return BiLMOptions.from_allennlp(raw, str(path))


class BiLM(nn.Module):
    """ELMo biLM: ``forward(char_ids (batch, time, 50)) -> (layers, mask)``.

    ``layers`` is a list of ``num_layers + 1`` tensors ``(batch, time + 2, 2 * projection_dim)`` and ``mask``
    the ``(batch, time + 2)`` bool mask, both including ``<S>``/``</S>`` (see the module docstring).

    Args:
        options: the architecture.
        dropout: dropout on each LSTM layer's input, in training mode only (bilm-tf's training dropout, set
            by ``ner.elmo.pretrain``; 0 by default, so inference and fine-tuning inside a tagger have none).
    """

    def __init__(self, options: BiLMOptions, dropout: float = 0.0) -> None:
        super().__init__()
        self.options = options
        self.dropout = dropout
        dim, cell = options.projection_dim, options.lstm_dim
        self.token_encoder = CharCNN(
            NUM_CHAR_IDS, options.char_dim, options.filters, options.activation, options.highway_layers, dim
        )

        def stack() -> nn.ModuleList:
            # forget_bias: TF's constant forget-gate bias of 1, here only at initialisation (imported weights
            # carry it in bias_hh, see ner.elmo.weights).
            return nn.ModuleList(
                LSTM(
                    dim, cell, proj_size=dim, cell_clip=options.cell_clip, proj_clip=options.proj_clip, forget_bias=1.0
                )
                for _ in range(options.num_layers)
            )

        self.forward_layers = stack()
        self.backward_layers = stack()
        self.output_dim = 2 * dim

    def forward(self, char_ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        char_ids, mask = add_sentence_boundaries(char_ids)  # (batch, time + 2, 50), (batch, time + 2)
        tokens = self.token_encoder(char_ids, mask)  # (batch, time + 2, P), zero at padding
        lengths = mask.sum(-1)  # (batch,)
        forward_out, _ = self.run_stack("forward", tokens, mask)
        backward_out, _ = self.run_stack("backward", reverse_padded(tokens, lengths), mask)
        layers = [torch.cat([tokens, tokens], dim=-1)]  # (batch, time + 2, 2P)
        for fwd, bwd in zip(forward_out, backward_out):
            layers.append(torch.cat([fwd, reverse_padded(bwd, lengths)], dim=-1))  # (batch, time + 2, 2P)
        return layers, mask

    def top_layer(self, below: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Layer ``L`` again from layer ``L - 1``: ``below`` (batch, time + 2, 2P) ``[forward; backward]`` and its
        (batch, time + 2) mask -> (batch, time + 2, 2P), zero at padding, as ``forward`` computes it."""
        dim, residual = self.options.projection_dim, self.options.num_layers > 1
        lengths = mask.sum(-1)  # (batch,)
        outputs = []
        for stack, x in ((self.forward_layers, below[..., :dim]), (self.backward_layers, below[..., dim:])):
            if stack is self.backward_layers:
                x = reverse_padded(x, lengths)  # (batch, time + 2, P), each sentence reversed
            x = dropout(x, self.dropout, self.training)
            out, _ = stack[-1](x, mask=mask)  # (batch, time + 2, P)
            outputs.append(out + x if residual else out)
        return torch.cat([outputs[0], reverse_padded(outputs[1], lengths)], dim=-1)  # (batch, time + 2, 2P)

    def run_stack(
        self, direction: str, x: torch.Tensor, mask: torch.Tensor, states: list[LSTMState] | None = None
    ) -> tuple[list[torch.Tensor], list[LSTMState]]:
        """Run the ``"forward"`` or ``"backward"`` stack left to right over ``x`` (batch, time, P).

        The backward stack expects its input already reversed within each sentence. ``states`` are per-layer
        initial ``(h, c)`` (zeros when None). Returns every layer's output ``(batch, time, P)`` (zero at
        padding) and the final states.
        """
        layers = self.forward_layers if direction == "forward" else self.backward_layers
        outputs: list[torch.Tensor] = []
        final_states: list[LSTMState] = []
        for index, lstm in enumerate(layers):
            x = dropout(x, self.dropout, self.training)
            out, state = lstm(x, mask=mask, state=None if states is None else states[index])
            if index > 0:
                out = out + x  # residual from the second layer on, after clipping
            outputs.append(out)
            final_states.append(state)
            x = out
        return outputs, final_states

    # -- saving and loading ------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``options.json`` (AllenNLP layout) and ``bilm.pt`` (a plain state dict) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / WEIGHTS_FILE, lambda handle: torch.save(self.state_dict(), handle))
        write_json_atomic(directory / OPTIONS_FILE, self.options.to_allennlp())

    @classmethod
    def load(cls, directory: str | Path) -> BiLM:
        """Load a biLM written by ``save`` (e.g. the output folder of ``ner pretrain-lm``)."""
        directory = Path(directory)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise NerError(f"{weights}: biLM weights not found (expected the output folder of `ner pretrain-lm`)")
        bilm = cls(read_options(directory / OPTIONS_FILE))
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            bilm.load_state_dict(state)
        except RuntimeError as error:
            reason = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
            raise NerError(f"{weights}: weights do not fit {directory / OPTIONS_FILE}: {reason}") from None
        return bilm

    @classmethod
    def from_allennlp(cls, options_file: str | Path, weights_file: str | Path) -> BiLM:
        """Load published AllenNLP/bilm-tf files (``*_options.json`` + ``*_weights.hdf5``)."""
        from ner.elmo.weights import read_allennlp_weights

        bilm = cls(read_options(options_file))
        bilm.load_state_dict(read_allennlp_weights(weights_file, bilm))
        return bilm

    def to_allennlp(self, directory: str | Path) -> None:
        """Write ``options.json`` and ``weights.hdf5`` in the AllenNLP/bilm-tf layout into ``directory``."""
        from ner.elmo.weights import write_allennlp_weights

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_allennlp_weights(self, directory / "weights.hdf5")
        write_json_atomic(directory / OPTIONS_FILE, self.options.to_allennlp())
