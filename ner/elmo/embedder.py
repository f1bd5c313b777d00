"""The ELMo embedder: biLM -> scalar mix (+ optional batch layer norm) -> strip ``<S>``/``</S>`` -> dropout.

This is AllenNLP's ``Elmo`` with one output representation (docs/elmo.md section 6), and optionally a second one
for the tagger's BiLSTM output (``output_mix``: Peters et al. 2018, section 3.3, "ELMo at the output": its own
layer weights and gamma, the same dropout). The mix is applied to the ``time + 2`` tensors, so its layer norm
counts the boundary tokens, as in the reference. A frozen embedder can
skip the biLM altogether: ``ElmoCache.layers_for`` returns the same ``(layers, mask)`` the biLM would, and
``Elmo.from_layers`` does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ner.elmo.bilm import BiLM
from ner.elmo.chars import remove_sentence_boundaries
from ner.errors import ConfigError
from ner.nn.dropout import Dropout
from ner.nn.scalar_mix import ScalarMix


class Elmo(nn.Module):
    """``forward(char_ids (batch, time, 50)) -> (embeddings (batch, time, 2P), mask (batch, time))``.

    Args:
        bilm: the language model.
        dropout: element-wise dropout on the output.
        do_layer_norm: normalise each layer over the masked batch before mixing (see ``ScalarMix``).
        fine_tune: train the biLM too; otherwise its parameters are frozen and it runs without gradients.
        fine_tune_top: train only the biLM's top LSTM layer; ``layers`` and ``top_from_below`` recompute it
            with gradients from the frozen layer below (which may come from a cache).
        scalar_mix_parameters: fixed pre-softmax layer weights; when given, the weights and gamma are frozen.
        l2_coef: L2 coefficient on the mix weights, returned by ``penalty()`` (add it to the training loss).
        output_mix: also make a second mix of the same layers (``from_layers(..., output=True)``).
    """

    def __init__(
        self,
        bilm: BiLM,
        dropout: float = 0.5,
        do_layer_norm: bool = False,
        fine_tune: bool = False,
        fine_tune_top: bool = False,
        scalar_mix_parameters: Sequence[float] | None = None,
        l2_coef: float = 0.0,
        output_mix: bool = False,
    ) -> None:
        super().__init__()
        self.bilm = bilm
        self.fine_tune = fine_tune
        self.fine_tune_top = fine_tune_top
        bilm.requires_grad_(fine_tune)
        if fine_tune_top:
            bilm.forward_layers[-1].requires_grad_(True)
            bilm.backward_layers[-1].requires_grad_(True)
        mixes = [
            ScalarMix(
                bilm.options.num_layers + 1,
                do_layer_norm=do_layer_norm,
                initial_scalar_parameters=scalar_mix_parameters,
                trainable=scalar_mix_parameters is None,
                l2_coef=l2_coef,
            )
            for _ in range(2 if output_mix else 1)
        ]
        self.scalar_mix = mixes[0]
        self.output_scalar_mix = mixes[1] if output_mix else None
        self.dropout = Dropout(dropout)
        self.output_dim = bilm.output_dim

    def forward(self, char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_layers(*self.layers(char_ids))

    def layers(self, char_ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The biLM's ``num_layers + 1`` layers ``(batch, time + 2, 2P)`` and their ``(batch, time + 2)`` mask,
        with gradients only for the parameters being fine-tuned."""
        with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
            layers, mask = self.bilm(char_ids)
        if self.fine_tune_top and torch.is_grad_enabled():
            layers = self.top_from_below(layers, mask)
        return layers, mask

    def top_from_below(
        self, layers: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor
    ) -> list[torch.Tensor] | torch.Tensor:
        """With ``fine_tune_top``, the ``L + 1`` layers with the top one recomputed by the current top LSTM layer
        from the one below (cached layers were made by the biLM as it was before training); unchanged otherwise."""
        if not self.fine_tune_top:
            return layers
        top = self.bilm.top_layer(layers[-2], mask)  # (batch, time + 2, 2P)
        return [*layers[:-1], top]

    def from_layers(
        self, layers: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor, output: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix biLM ``layers`` (``num_layers + 1`` tensors, or one stacked tensor, ``(batch, time + 2, 2P)``)
        with their ``(batch, time + 2)`` mask; returns ``(batch, time, 2P)`` and the ``(batch, time)`` mask.
        ``output`` uses the second mix (``output_mix``)."""
        mix = self.output_scalar_mix if output else self.scalar_mix
        if mix is None:
            raise ValueError("from_layers(output=True): this Elmo was made without output_mix")
        mixed = mix(layers, mask)  # (batch, time + 2, 2P)
        embeddings, token_mask = remove_sentence_boundaries(mixed, mask)  # (batch, time, 2P), (batch, time)
        return self.dropout(embeddings), token_mask

    def penalty(self) -> torch.Tensor:
        """L2 penalty on the scalar-mix weights (``l2_coef * sum(w ** 2)``, summed over the mixes)."""
        penalty = self.scalar_mix.penalty()
        return penalty if self.output_scalar_mix is None else penalty + self.output_scalar_mix.penalty()


def load_bilm(
    pretrained_dir: str | Path | None = None,
    options_file: str | Path | None = None,
    weights_file: str | Path | None = None,
) -> BiLM:
    """A biLM from our own pretraining folder, or from published AllenNLP ``options.json`` + ``weights.hdf5``."""
    if pretrained_dir is not None and (options_file or weights_file):
        raise ConfigError("model.elmo: give either pretrained_dir or options_file + weights_file, not both")
    if pretrained_dir is not None:
        return BiLM.load(pretrained_dir)
    if options_file is None or weights_file is None:
        raise ConfigError("model.elmo: options_file and weights_file go together")
    return BiLM.from_allennlp(options_file, weights_file)
