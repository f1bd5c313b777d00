"""Linear-chain CRF decoding in numpy: Viterbi and span probabilities, the twins of ``ner.nn.crf.CRF.decode`` and
``CRF.span_probabilities`` for exported models (``ner export``), which run without the CRF module.

The same numbers as the torch CRF: effective scores (disallowed entries set to ``IMPOSSIBLE``), Viterbi in the wider
of the emissions' and the parameters' dtype with the same operations in the same order (so equal emissions give
equal paths), sums over paths in float64 as shifted log-space matmuls (floored at 1e-300). Span probabilities are
P(span is an entity of its type): the segment probability of its tags, minus, for an IOB2 span that ends before its
sentence does, that of the segment followed by ``I-X`` (see ``ner.nn.crf``'s docstring).

Shapes: B sentences, T time (longest sentence), K tags, N segments. ``lengths`` (B,) >= 1 stands for the torch
mask: sentence b occupies steps ``0 .. lengths[b] - 1``, the rest is padding (any values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ner.data.schemes import Segment, span_segments

IMPOSSIBLE = -1e4  # ner.nn.crf.IMPOSSIBLE: the score of a disallowed start, transition or end
_SUM_FLOOR = 1e-300  # ner.nn.crf._SUM_FLOOR
SpanTuple = tuple[str, int, int]


@dataclass(frozen=True)
class CrfScores:
    """Effective CRF scores: start (K,), transitions (K, K) [from, to], end (K,), disallowed entries IMPOSSIBLE."""

    start: np.ndarray
    transitions: np.ndarray
    end: np.ndarray

    @classmethod
    def from_parameters(
        cls,
        start: np.ndarray,
        transitions: np.ndarray,
        end: np.ndarray,
        start_allowed: np.ndarray,
        transitions_allowed: np.ndarray,
        end_allowed: np.ndarray,
    ) -> CrfScores:
        """The parameters with disallowed entries (False in the ``*_allowed`` masks) replaced by IMPOSSIBLE."""

        def masked(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
            return np.where(allowed, values, values.dtype.type(IMPOSSIBLE)).astype(values.dtype)

        return cls(masked(start, start_allowed), masked(transitions, transitions_allowed), masked(end, end_allowed))

    @property
    def num_tags(self) -> int:
        return len(self.start)


def viterbi(emissions: np.ndarray, lengths: np.ndarray, scores: CrfScores) -> np.ndarray:
    """Best tag path of each sentence: emissions (B, T, K), lengths (B,) -> (B, T) int64, 0 at padding."""
    dtype = np.promote_types(emissions.dtype, scores.start.dtype)
    start, transitions, end = (a.astype(dtype) for a in (scores.start, scores.transitions, scores.end))
    emissions = emissions.astype(dtype, copy=False)
    batch, time, num_tags = emissions.shape
    rows = np.arange(batch)
    score = start + emissions[:, 0]  # (B, K)
    steps = np.empty((batch, time, num_tags), dtype)  # best score of a path ending in each tag, per step
    steps[:, 0] = score
    history = np.empty((max(time - 1, 0), batch, num_tags), np.int64)  # best previous tag, per next tag
    for t in range(1, time):
        candidates = score[:, :, None] + transitions  # (B, K_prev, K_next)
        history[t - 1] = candidates.argmax(axis=1)  # (B, K): the first of equal maxima, as torch's max
        score = candidates.max(axis=1) + emissions[:, t]  # (B, K)
        steps[:, t] = score
    lengths = np.asarray(lengths, dtype=np.int64)
    tag = (steps[rows, lengths - 1] + end).argmax(axis=1)  # (B,) best last tag
    path = np.zeros((batch, time), np.int64)
    for t in range(time - 1, -1, -1):
        on = t < lengths  # (B,)
        if t < time - 1:  # past a sentence's end its last tag is carried back unchanged
            tag = np.where(t + 1 < lengths, history[t][rows, tag], tag)
        path[:, t] = np.where(on, tag, 0)
    return path


def _log_matmul_exp(log_vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """log(exp(log_vectors) @ matrix) for log_vectors (B, K) and a non-negative matrix (K, K), in float64."""
    shift = log_vectors.max(axis=1, keepdims=True)  # (B, 1)
    return np.log(np.maximum(np.exp(log_vectors - shift) @ matrix, _SUM_FLOOR)) + shift


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log-sum-exp over the last axis."""
    shift = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - shift).sum(axis=-1)) + shift[..., 0]


def forward_backward(
    emissions: np.ndarray, lengths: np.ndarray, scores: CrfScores
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log_alpha (B, T, K), log_beta (B, T, K) (both 0 at padding) and log Z (B,), in float64, as
    ``ner.nn.crf.CRF.forward_backward``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    batch, time, _ = emissions.shape
    on = np.arange(time)[None, :] < lengths[:, None]  # (B, T)
    emissions = np.where(on[:, :, None], emissions.astype(np.float64), 0.0)  # (B, T, K)
    start, transitions, end = (a.astype(np.float64) for a in (scores.start, scores.transitions, scores.end))
    exp_transitions = np.exp(transitions)  # (K, K): disallowed entries are exactly 0
    log_alpha = np.empty_like(emissions)
    log_alpha[:, 0] = start + emissions[:, 0]
    for t in range(1, time):
        log_alpha[:, t] = _log_matmul_exp(log_alpha[:, t - 1], exp_transitions) + emissions[:, t]
    log_z = _logsumexp(log_alpha[np.arange(batch), lengths - 1] + end)  # (B,)
    end_scores = np.broadcast_to(end, (batch, len(end)))
    log_beta = np.empty_like(emissions)
    log_beta[:, time - 1] = end_scores
    for t in range(time - 2, -1, -1):
        following = _log_matmul_exp(emissions[:, t + 1] + log_beta[:, t + 1], exp_transitions.T)  # (B, K)
        log_beta[:, t] = np.where(on[:, t + 1, None], following, end_scores)  # a sentence's last step: end
    padding = ~on[:, :, None]
    return np.where(padding, 0.0, log_alpha), np.where(padding, 0.0, log_beta), log_z


def span_probabilities(
    emissions: np.ndarray,
    lengths: np.ndarray,
    spans: Sequence[Sequence[SpanTuple]],
    tag_names: Sequence[str],
    scheme: str,
    scores: CrfScores,
) -> list[list[float]]:
    """P(each span is an entity of its type): emissions (B, T, K), lengths (B,), spans[b] sentence b's
    ``(type, start, end_exclusive)`` spans; ``tag_names[i]`` names tag id i; scheme ``IOB2`` or ``BIOES``.
    Returns floats shaped as ``spans``."""
    if len(tag_names) != scores.num_tags:
        raise ValueError(f"tag_names must name all {scores.num_tags} tags, got {len(tag_names)}")
    rows, has_follower = span_segments(spans, [int(length) for length in lengths], tag_names, scheme)
    if not rows:
        return [[] for _ in spans]
    log_probs = np.minimum(_segment_log_probs(emissions, lengths, scores, rows), 0.0)  # (N,)
    span_log_probs = log_probs[: len(has_follower)]  # (n,)
    follower_log_probs = np.full_like(span_log_probs, -np.inf)  # -inf: no I-X term
    follower_log_probs[np.array(has_follower, dtype=bool)] = log_probs[len(has_follower) :]
    # P(segment) - P(segment, I-X) = P(segment) * (1 - exp(log P(segment, I-X) - log P(segment)))
    ratio = np.minimum(follower_log_probs - span_log_probs, 0.0)
    probabilities = (np.exp(span_log_probs) * -np.expm1(ratio)).tolist()
    result, offset = [], 0
    for sentence_spans in spans:
        result.append(probabilities[offset : offset + len(sentence_spans)])
        offset += len(sentence_spans)
    return result


def _segment_log_probs(
    emissions: np.ndarray, lengths: np.ndarray, scores: CrfScores, rows: list[Segment]
) -> np.ndarray:
    """log P(y[start : start + len(ids)] == ids) (N,) for each (sentence, start, ids) row: log_alpha at the first
    step + transitions and emissions inside + log_beta at the last step - log Z."""
    log_alpha, log_beta, log_z = forward_backward(emissions, lengths, scores)
    emissions = emissions.astype(np.float64)
    transitions = scores.transitions.astype(np.float64)
    width = max(len(ids) for _, _, ids in rows)
    sentence = np.array([row[0] for row in rows])  # (N,)
    start = np.array([row[1] for row in rows])  # (N,)
    size = np.array([len(row[2]) for row in rows])  # (N,)
    tags = np.array([ids + [0] * (width - len(ids)) for _, _, ids in rows])  # (N, S): 0 past each segment's end
    inside = np.arange(width) < size[:, None]  # (N, S)
    times = np.minimum(start[:, None] + np.arange(width), emissions.shape[1] - 1)  # (N, S)
    step_scores = emissions[sentence[:, None], times[:, 1:], tags[:, 1:]] + transitions[tags[:, :-1], tags[:, 1:]]
    inner = np.where(inside[:, 1:], step_scores, 0.0).sum(axis=1)  # (N,) moving into each later step
    last_tags = tags[np.arange(len(rows)), size - 1]  # (N,)
    return (
        log_alpha[sentence, start, tags[:, 0]]
        + inner
        + log_beta[sentence, start + size - 1, last_tags]
        - log_z[sentence]
    )
