"""Pretraining's model: the ``BiLM`` plus a shared adaptive softmax, trained as forward and backward language
models with truncated backpropagation every ``training.bptt`` tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ner.elmo.bilm import BiLM
from ner.elmo.chars import add_sentence_boundaries
from ner.elmo.pretrain_config import LMModelConfig
from ner.errors import ConfigError
from ner.nn.lstm import reverse_padded


class BiLanguageModel(nn.Module):
    """``BiLM`` plus the shared adaptive softmax; ``forward`` returns per-direction summed NLL and counts."""

    def __init__(self, config: LMModelConfig, vocab_size: int) -> None:
        super().__init__()
        cutoffs = config.softmax_cutoffs
        if cutoffs[-1] >= vocab_size - 1:
            raise ConfigError(
                f"model.softmax_cutoffs: expected values below the vocabulary size - 1 = "
                f"{vocab_size - 1}, got {cutoffs}"
            )
        self.bilm = BiLM(config.bilm_options(), dropout=config.dropout)
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(
            config.projection_dim, vocab_size, cutoffs, div_value=config.softmax_div_value
        )

    def forward(self, char_ids: torch.Tensor, targets: torch.Tensor, bptt: int) -> dict[str, torch.Tensor]:
        """``char_ids`` (batch, time, 50) of sentences sorted longest first; ``targets`` (batch, time + 2) the
        softmax ids of ``<S> w_1 .. w_n </S>``. Returns summed NLL and target counts per direction."""
        ids, mask = add_sentence_boundaries(char_ids)  # (batch, time + 2, 50), (batch, time + 2)
        lengths = mask.sum(-1)  # (batch,), non-increasing
        tokens = self.bilm.token_encoder(ids, mask)  # (batch, time + 2, P)
        result = {}
        for direction, inputs, labels in (
            ("forward", tokens, targets),
            ("backward", reverse_padded(tokens, lengths), reverse_padded(targets, lengths)),
        ):
            top = self._run_windows(direction, inputs, mask, lengths, bptt)  # (batch, time + 2, P)
            predict = mask[:, 1:]  # position t predicts t + 1
            hidden = F.dropout(top[:, :-1][predict], self.bilm.dropout, self.training)  # (targets, P)
            nll = -self.softmax(hidden, labels[:, 1:][predict]).output.sum()
            result[direction] = nll
            result[f"{direction}_count"] = predict.sum()
        return result

    def _run_windows(
        self, direction: str, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, bptt: int
    ) -> torch.Tensor:
        """Top-layer output of one stack over ``x`` (batch, time, P), detaching states every ``bptt`` steps.

        Rows are sorted by length (longest first), so the rows still running in a window are a prefix.
        """
        time = x.size(1)
        step = bptt or time
        outputs, states = [], None
        for start in range(0, time, step):
            rows = int((lengths > start).sum())
            if states is not None:
                states = [(h[:, :rows].detach(), c[:, :rows].detach()) for h, c in states]
            layers, states = self.bilm.run_stack(
                direction, x[:rows, start : start + step], mask[:rows, start : start + step], states
            )
            outputs.append(F.pad(layers[-1], (0, 0, 0, 0, 0, x.size(0) - rows)))  # (batch, window, P)
        return torch.cat(outputs, dim=1)
