"""Our LSTM and GRU layers: torch's parameters and numbers, plus LSTM variants, masks and a fast recurrence.

``LSTM`` and ``GRU`` are drop-in for torch's LSTM and GRU modules (same parameter names and shapes,
``(output, (h_n, c_n))`` / ``(output, h_n)``) but take a ``(batch, time)`` bool mask (or lengths): the backward
direction reads each sentence reversed within its own length, outputs are exactly zero at padding and final
states are taken at each sentence's last token.

Cells (gate order as torch): ``lstm`` (i, f, g, o), ``peephole`` (Gers & Schmidhuber 2000: i and f see
c_{t-1}, o sees c_t through diagonal weights), ``coupled`` (gates f, g, o with i = 1 - f), ``gru`` (r, z, n;
Cho et al. 2014 as torch writes it). Options: layer normalisation of each gate's pre-activation, cell clipping,
a projection of the hidden state with clipping (LSTMP, as ELMo uses), a forget-gate bias added at init,
dropout and residual connections between layers.

How it runs. Sentences are sorted longest first and packed time-major (``ner.nn.packing``), so finished
sentences drop out of the batch and padding is never computed. Per layer the input projection of every step is
one matmul per direction (``ner.nn.products``). The plain LSTM cell (with or without clipping and projection)
on CPU runs its step loops in C++ (``ner.nn.lstm_kernel``), forward and backward; everything else, and the
same cell where the kernel cannot be built, runs the PyTorch recurrence (``ner.nn.recurrence``): each step
advances both directions together with one product and about ten elementwise ops, and training runs a
hand-written backward through time (``ner.nn.recurrence_backward``). Both give the same numbers. Inference saves
nothing for backward; layer normalisation runs the PyTorch steps under autograd instead. No host syncs inside the
loops: the lengths are read once per call.

Shape letters: B batch, T time, D directions (1 or 2), N packed rows (the sum of the lengths), H hidden size,
R recurrent size (``proj_size`` or H), K gates (4, or 3 for ``coupled`` and ``gru``), I layer input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ner.nn import lstm_kernel
from ner.nn.dropout import dropout
from ner.nn.lstm_checks import check_initial_state, check_inputs, check_options, sequence_lengths
from ner.nn.lstm_kernel import KernelRecurrence, bf16_input_projection, kernel_steps
from ner.nn.lstm_weights import LayerWeights, layer_weights
from ner.nn.packing import Plan, gather_rows, make_plan, reverse_padded
from ner.nn.products import matmul_nt
from ner.nn.recurrence import FORGET_GATE, Spec, StepWeights, candidate_scale, run_steps
from ner.nn.recurrence_backward import Recurrence

__all__ = ["GRU", "LSTM", "reverse_padded"]


# Inference keeps a layer's prepared (stacked, scaled) weights while its parameters are unchanged, if it has at
# most this many parameters (the tagger's BiLSTM, not ELMo's 4096-wide cells, whose copy would be large).
_CACHED_WEIGHTS_MAX = 1 << 22


class _RNNBase(nn.Module):
    """Shared body of ``LSTM`` and ``GRU``: parameters in torch's layout, masks, layers and directions."""

    def __init__(
        self,
        variant: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        proj_size: int = 0,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
        layer_norm: bool = False,
        residual: bool = False,
        forget_bias: float = 0.0,
    ) -> None:
        super().__init__()
        check_options(
            variant, input_size, hidden_size, num_layers, dropout, proj_size, cell_clip, proj_clip, forget_bias
        )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.residual = bidirectional, proj_size, residual
        self.variant, self.cell_clip, self.proj_clip = variant, cell_clip, proj_clip
        self.layer_norm, self.forget_bias = layer_norm, forget_bias
        self.spec = Spec(variant, hidden_size, proj_size, cell_clip, proj_clip, layer_norm)
        self._inference_weights: dict[int, tuple[tuple, LayerWeights]] = {}  # see _layer_weights
        # Inference on CPU: the plain LSTM cell's recurrent products and the input projection (input_projection)
        # in bfloat16 with float32 sums, where the C++ kernel has them natively (lstm_kernel); training, other
        # cells and devices ignore it.
        self.bf16_products = False
        gate_size = self.spec.gates * hidden_size
        recurrent = proj_size or hidden_size
        self._layer_parameters: list[list[str]] = []  # names of each layer's parameters
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else recurrent * self.directions
            self._layer_parameters.append([])
            for suffix in self._suffixes:
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, recurrent)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                if variant == "peephole":
                    shapes["weight_peephole"] = (3 * hidden_size,)  # c -> i, f, o
                if layer_norm:
                    shapes |= {"norm_weight": (gate_size,), "norm_bias": (gate_size,)}
                for kind, shape in shapes.items():
                    self.register_parameter(f"{kind}_l{layer}{suffix}", nn.Parameter(torch.empty(shape)))
                    self._layer_parameters[layer].append(f"{kind}_l{layer}{suffix}")
        self.reset_parameters()

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.directions]

    def reset_parameters(self) -> None:
        """torch's init (uniform in +-1/sqrt(hidden_size)); layer norm starts as identity; forget bias added."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        hidden = self.hidden_size
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.startswith("norm_"):
                    parameter.fill_(1.0 if name.startswith("norm_weight") else 0.0)
                else:
                    parameter.uniform_(-bound, bound)
                if name.startswith("bias_ih") and self.forget_bias:
                    forget = FORGET_GATE[self.spec.variant]
                    parameter[forget * hidden : (forget + 1) * hidden] += self.forget_bias

    def extra_repr(self) -> str:
        options = [
            f"{self.input_size}, {self.hidden_size}",
            f"num_layers={self.num_layers}",
            f"bidirectional={self.bidirectional}",
        ]
        spec = self.spec
        for name, value, default in (
            ("variant", spec.variant, "lstm"),
            ("proj_size", self.proj_size, 0),
            ("cell_clip", spec.cell_clip, None),
            ("proj_clip", spec.proj_clip, None),
            ("layer_norm", spec.layer_norm, False),
            ("residual", self.residual, False),
            ("dropout", self.dropout, 0.0),
            ("bias", self.bias, True),
            ("batch_first", self.batch_first, True),
        ):
            if value != default and not (name == "variant" and isinstance(self, GRU)):
                options.append(f"{name}={value!r}")
        return ", ".join(options)

    def _layer_weights(self, layer: int) -> LayerWeights:
        """Layer ``layer``'s parameters stacked over directions, in the form the recurrence reads.

        Without layer norm the candidate's rows come doubled (see ``StepWeights``). At inference the result
        is cached until a parameter changes (in place or replaced), unless the layer is large.
        """
        parameters = [getattr(self, name) for name in self._layer_parameters[layer]]
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in parameters)
        cached = self._inference_weights.get(layer)
        if not torch.is_grad_enabled() and cached is not None and cached[0] == key:
            return cached[1]
        weights = layer_weights(self.spec, self.hidden_size, lambda kind: self._stacked(kind, layer))
        if not torch.is_grad_enabled() and sum(p.numel() for p in parameters) <= _CACHED_WEIGHTS_MAX:
            self._inference_weights[layer] = (key, weights)
        return weights

    def _stacked(self, kind: str, layer: int) -> Tensor | None:
        """The parameter ``{kind}_l{layer}`` of every direction, stacked (D, ...), or None if absent."""
        names = [f"{kind}_l{layer}{suffix}" for suffix in self._suffixes]
        if not hasattr(self, names[0]):
            return None
        parts = [getattr(self, name) for name in names]
        return parts[0][None] if len(parts) == 1 else torch.stack(parts)

    def input_projection(self, x: Tensor) -> Tensor:
        """The first layer's input part of every gate, ``W_ih x + b`` per direction, for V inputs: x (V,
        input_size) -> (D, V, K * H), the ``inputs_table`` of ``forward`` (internal form: without layer norm
        the candidate's part comes doubled, see ``StepWeights``).

        Each input's row depends on that input alone, so a caller can compute it once per distinct input and
        reuse it: the tagger does, per token spelling, at inference.
        """
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected shape (rows, {self.input_size}), got {tuple(x.shape)}")
        weights = self._layer_weights(0)
        if self.bf16_products and (low := bf16_input_projection(x, weights.w_ih, weights.bias)) is not None:
            return low
        return matmul_nt(x.expand(self.directions, -1, -1), weights.w_ih, weights.bias, packed_rows=True)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        state: Tensor | tuple[Tensor, Tensor] | None = None,
        *,
        lengths: Tensor | Sequence[int] | None = None,
        inputs_table: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """Run every layer over ``x`` (B, T, input_size) (or (T, B, input_size) without batch_first). With
        ``inputs_table`` (D, V, K * H) from ``input_projection``, x is instead (B, T) long: each token's row
        in the table, from which the first layer reads its gate inputs.

        ``mask`` (B, T) bool marks real tokens, left-aligned (or give ``lengths`` (B,) instead; neither means
        full length). ``state`` is torch's initial state: ``(h0, c0)`` for LSTM, ``h0`` for GRU, with h0
        (layers * directions, B, proj_size or hidden_size) and c0 (layers * directions, B, hidden_size).

        Returns ``output`` (B, T, directions * (proj_size or hidden_size)), zero at padding, and the final
        states at each sentence's last token in torch's layout: ``(h_n, c_n)`` for LSTM, ``h_n`` for GRU.
        """
        gate_width = self.spec.gates * self.hidden_size
        check_inputs(x, inputs_table, self.input_size, self.batch_first, self.directions, gate_width)
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, time = x.shape[:2]
        recurrent = self.proj_size or self.hidden_size
        h0_all, c0_all = check_initial_state(
            state, self.spec.variant == "gru", batch, self.num_layers * self.directions, recurrent, self.hidden_size
        )
        plan = make_plan(sequence_lengths(mask, lengths, batch, time), time, self.directions, x.device)
        tensors = [x, *self.parameters(), *(t for t in (h0_all, c0_all, inputs_table) if t is not None)]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        with torch.set_grad_enabled(training):  # inference saves nothing for backward
            output, h_n, c_n = self._layers(
                x, plan, h0_all, c0_all, fast=training and not self.spec.layer_norm, inputs_table=inputs_table
            )
        if not self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _layers(
        self,
        x: Tensor,
        plan: Plan,
        h0_all: Tensor | None,
        c0_all: Tensor | None,
        fast: bool,
        inputs_table: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every layer over batch-first x (B, T, I), or rows (B, T) of ``inputs_table``: output (B, T, D * R),
        h_n (L * D, B, R), c_n or None."""
        batch, time = x.shape[:2]
        directions, spec = self.directions, self.spec
        recurrent = self.proj_size or self.hidden_size
        gru = spec.variant == "gru"

        like = x if inputs_table is None else inputs_table  # dtype and device of the states
        gx: Tensor | None = None  # the current layer's packed gate inputs, when already known
        if inputs_table is not None:
            table_rows = inputs_table.shape[1]
            offsets = torch.arange(directions, device=x.device)[:, None] * table_rows  # (D, 1)
            gx = gather_rows(inputs_table.reshape(directions * table_rows, -1), x.reshape(-1)[plan.positions] + offsets)
            layer_input = None  # gx (D, N, K * H) is all the first layer needs
        else:
            # index_select, not advanced indexing: its backward is index_add, twice as fast as index_put here.
            layer_input = gather_rows(x.reshape(batch * time, -1), plan.positions)  # (D, N, input_size)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            states = slice(layer * directions, (layer + 1) * directions)
            h0 = (
                like.new_zeros(directions, batch, recurrent) if h0_all is None else h0_all[states][:, plan.order]
            )  # (D, B, R) sorted
            c0 = (
                None
                if gru
                else (
                    like.new_zeros(directions, batch, self.hidden_size)
                    if c0_all is None
                    else c0_all[states][:, plan.order]
                )
            )  # (D, B, H) sorted
            w_ih, bias, w_hh, hh_bias, peephole, w_hr, norm_weight, norm_bias = self._layer_weights(layer)
            kernel = lstm_kernel.supports(spec, like)  # the C++ loops, else the PyTorch ones
            if fast and gx is None and kernel:
                out, cells = KernelRecurrence.apply(spec, plan, layer_input, w_ih, bias, h0, c0, w_hh, w_hr)
            elif fast and gx is None:
                out, cells = Recurrence.apply(
                    spec, plan, layer_input, w_ih, bias, h0, c0, w_hh, hh_bias, peephole, w_hr
                )
            else:
                if gx is None:
                    gx = matmul_nt(layer_input, w_ih, bias, packed_rows=True)  # (D, N, K * H)
                if kernel and not torch.is_grad_enabled():
                    out, cells = kernel_steps(spec, plan, gx, h0, c0, w_hh, w_hr, self.bf16_products)
                else:
                    gate_scale = candidate_scale(spec, like) if spec.layer_norm else None
                    w = StepWeights(w_hh, hh_bias, peephole, w_hr, norm_weight, norm_bias, gate_scale)
                    out, cells, _ = run_steps(spec, plan, w, gx, h0, c0, keep=False)
                gx = None
            h_n.append(out[:, plan.last])  # (D, B, R)
            if not gru:
                c_n.append(cells[:, plan.unorder])  # (D, B, H)
            residual = self.residual and layer > 0
            if layer + 1 == self.num_layers and not residual:  # straight into the output, each direction's rows
                output = like.new_zeros(batch * time * directions, recurrent).index_put(
                    (plan.scatter,), out.reshape(-1, recurrent)
                )
                break
            if layer + 1 < self.num_layers:  # dropout before the gather, so both directions see one mask
                out = dropout(out, self.dropout, self.training)
            # Next layer's input in each direction's step order: [forward output; backward output].
            layer_output = out if plan.cross is None else gather_rows(out.reshape(-1, recurrent), plan.cross).flatten(2)
            if residual:
                layer_output = layer_output + layer_input
            layer_input = layer_output
            output = like.new_zeros(batch * time, directions * recurrent).index_put(
                (plan.positions[0],), layer_output[0]
            )
        cells = None if gru else c_n[0] if len(c_n) == 1 else torch.cat(c_n)
        return output.view(batch, time, -1), h_n[0] if len(h_n) == 1 else torch.cat(h_n), cells


class LSTM(_RNNBase):
    """Multi-layer, optionally bidirectional LSTM with the parameters of torch's LSTM module, plus variants and options.

    ``variant``: ``lstm`` (torch's cell), ``peephole`` or ``coupled``. Options beyond torch's: ``cell_clip``
    and ``proj_clip`` bound the cell and the projected state, ``layer_norm`` normalises each gate's
    pre-activation, ``residual`` adds each layer's input to its output from the second layer on (after the
    dropout, which acts on each layer's LSTM output but the last's), ``forget_bias`` is added to the forget
    gate's initial ``bias_ih``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        variant: str = "lstm",
        proj_size: int = 0,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
        layer_norm: bool = False,
        residual: bool = False,
        forget_bias: float = 0.0,
    ) -> None:
        if variant == "gru":
            raise ValueError("variant: for 'gru' use the GRU class; LSTM takes lstm, peephole or coupled")
        super().__init__(
            variant,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size=proj_size,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            layer_norm=layer_norm,
            residual=residual,
            forget_bias=forget_bias,
        )


class GRU(_RNNBase):
    """Multi-layer, optionally bidirectional GRU with the parameters of torch's GRU module; ``forward`` returns h_n
    only."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        layer_norm: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__(
            "gru",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            layer_norm=layer_norm,
            residual=residual,
        )
