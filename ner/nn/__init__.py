"""Neural network building blocks written in this repository."""

from ner.nn.lstm import GRU, LSTM

__all__ = ["GRU", "LSTM"]
