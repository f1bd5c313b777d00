"""Inference cache of the BiLSTM's first-layer gate inputs, one entry per token spelling.

In eval mode and without ELMo, everything before the tagger's recurrence (word, casing and character features
and the first layer's input projection, about 60 % of its multiply-adds at hidden size 200) depends on a
token's spelling alone (with the document casing feature: on its spelling and document casing class; the
cache's keys are then those pairs), and text repeats spellings. ``Tagger.inference_emissions`` computes these
inputs once per distinct word of a call (``Tagger.token_input_parts``); this cache also keeps them across calls,
so a tagging run computes them only for spellings it has not seen lately (on Reuters news with 20,000-token
windows: 20 % of tokens are new to their window, 6 % new to a 16,384-spelling cache).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence

import torch
from torch import nn

DEFAULT_CAPACITY = 16_384

InputParts = Callable[[torch.Tensor], Iterator[tuple[torch.Tensor, torch.Tensor]]]
"""Computes the gate inputs of rows (n,) of a call's table of distinct words (row 0 is padding), in chunks: each
chunk's positions in the rows (m,) and its inputs (2, m, G)."""


class TokenInputCache:
    """Gate inputs (2, columns, G) of recently tagged spellings; the least recently used go first when full.

    The entries are dropped whenever a parameter of the model changes (training, loading weights).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.columns: OrderedDict[Hashable, int] = OrderedDict()  # key -> column, least recent first
        self.table: torch.Tensor | None = None  # (2, allocated, G); column 0 is padding (zeros)
        self.weights_key: tuple | None = None

    def lookup(
        self, keys: Sequence[Hashable], parts: InputParts, model: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A table (2, C, G) and the column (rows,) of each of a call's distinct words in it (0 for padding).

        ``keys`` are the words' spellings (or (spelling, document casing class) pairs), row r + 1 of the call's
        table holding ``keys[r]``; ``parts`` computes the missing entries; ``model`` is the network whose
        parameters they depend on. A call with more distinct words than the capacity bypasses the cache.
        """
        if len(keys) > self.capacity:
            return uncached_inputs(parts, len(keys))
        self._check_weights(model)
        columns = [0] * (len(keys) + 1)
        missing: list[int] = []  # rows of the call's table to compute
        for row, word in enumerate(keys, start=1):
            column = self.columns.get(word)
            if column is None:
                missing.append(row)
            else:
                self.columns.move_to_end(word)
                columns[row] = column
        if missing:
            # Evicting from the least recent end never hits this call's words: they were just moved to the end.
            fresh = []
            for row in missing:
                column = self._free_column()
                self.columns[keys[row - 1]] = column
                columns[row] = column
                fresh.append(column)
            needed, fresh_columns = max(fresh) + 1, torch.tensor(fresh)
            for positions, inputs in parts(torch.tensor(missing)):  # (2, m, G) each
                self._store(inputs, fresh_columns[positions], needed)  # straight into the table, chunk by chunk
        return self.table, torch.tensor(columns, device=self.table.device)

    def _check_weights(self, model: nn.Module) -> None:
        """Drop every entry if the model's parameters changed since they were computed."""
        key = tuple((p.data_ptr(), p._version) for p in model.parameters())
        if key != self.weights_key:
            self.clear()
            self.weights_key = key

    def clear(self) -> None:
        """Drop every entry and free the table (training does after scoring dev: its next step changes the
        weights, and the table of a corpus's words takes ~6 kB per word at hidden size 200)."""
        self.columns.clear()
        self.table = None
        self.weights_key = None

    def _free_column(self) -> int:
        if len(self.columns) < self.capacity:
            return len(self.columns) + 1
        _, column = self.columns.popitem(last=False)
        return column

    def _store(self, inputs: torch.Tensor, columns: torch.Tensor, needed: int) -> None:
        """Write inputs (2, n, G) into ``columns`` (n,), growing the table (by doubling) to ``needed`` columns."""
        if self.table is None or self.table.shape[1] < needed:
            size = min(self.capacity + 1, max(needed, 2 * (0 if self.table is None else self.table.shape[1])))
            grown = inputs.new_zeros(inputs.shape[0], size, inputs.shape[2])
            if self.table is not None:
                grown[:, : self.table.shape[1]] = self.table
            self.table = grown
        self.table[:, columns.to(inputs.device)] = inputs


def inputs_of_rows(
    rows: torch.Tensor,
    keys: Sequence[Hashable],
    compute: InputParts,
    model: nn.Module,
    cache: TokenInputCache | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate inputs (2, C, G) of the words at ``rows`` (n + 1,) of a corpus's word table (padding row 0 first;
    ``keys[r - 1]`` is row r's key, ``compute`` gives the inputs of any rows), from ``cache`` or, without one,
    computed afresh and kept nowhere; and the column of every row of that table (len(keys) + 1,), 0 for the rows
    not asked for."""

    def parts(positions: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return compute(rows[positions])

    table, asked = (
        uncached_inputs(parts, len(rows) - 1)
        if cache is None
        else cache.lookup([keys[row - 1] for row in rows[1:].tolist()], parts, model)
    )
    columns = torch.zeros(len(keys) + 1, dtype=torch.long)  # (rows,)
    columns[rows] = asked.cpu()
    return table, columns


def uncached_inputs(parts: InputParts, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``TokenInputCache.lookup``'s result for a call's ``count`` distinct words, computed afresh and kept nowhere."""
    every_row = torch.arange(count + 1)  # padding row 0 included: its inputs are never read
    table = _assembled(parts(every_row), len(every_row))
    return table, every_row.to(table.device)


def _assembled(parts: Iterator[tuple[torch.Tensor, torch.Tensor]], size: int) -> torch.Tensor:
    """The inputs (2, size, G) of rows 0..size-1 from their chunks (positions (m,), inputs (2, m, G))."""
    table = None
    for positions, part in parts:
        if table is None:
            table = part.new_empty(part.shape[0], size, part.shape[2])  # (2, size, G)
        table[:, positions.to(part.device)] = part
    return table
