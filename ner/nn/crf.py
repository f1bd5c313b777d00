"""Linear-chain CRF with tagging-scheme constraints, batched Viterbi, forward-backward and span probabilities.

Parameters (``start_transitions``, ``end_transitions``, ``transitions``) live in a wrapped
``torchcrf.CRF(num_tags, batch_first=True)``, so their names, shapes and initialisation are pytorch-crf's.
Every computation here uses the *effective* scores: the parameters with disallowed entries replaced by
``IMPOSSIBLE`` (-1e4) at use time, so constraints hold however training moves the parameters (and the
disallowed entries get no gradient). Do not call ``self.crf.forward``/``self.crf.decode`` directly: they
ignore the constraints. Without constraints the likelihood equals pytorch-crf's and ``decode`` returns
its paths.

Shapes: B = batch, T = time (longest sentence), K = number of tags, N = number of segments.
All inputs are batch-first. ``mask`` is a (B, T) bool tensor, on for a prefix of each row (left-aligned
padding) with the first step on; ``None`` means no padding. Works on any device; emissions are float32
or float64. Results come in the wider of the emissions' and the parameters' dtype, which is also the dtype
of Viterbi's scores (so paths match pytorch-crf's); sums over all paths (likelihood, log Z, forward-backward,
marginals, segments) run in float64 as log-space matmuls, exact for scores in the thousands.
The constraints are exact as long as scores stay far below 1e4 in size.

Span confidence (what ``ner tag`` reports): ``span_probabilities`` gives P(span is an entity of its type)
under the CRF. With BIOES the tags inside a span (``S-X`` or ``B-X I-X.. E-X``) determine the span
exactly, so its probability is the segment probability P(y[s:e] = those tags). With IOB2 the span is
``B-X I-X..`` *not followed by* ``I-X``: P(y[s:e] = B-X I-X..) - P(y[s:e+1] = B-X I-X.. I-X) (no second
term when the span ends the sentence). Both are exact when the CRF carries the constraints of the scheme
(ill-formed sequences then have probability exp(-1e4) = 0). The scheme rules, for the constraints and the
segments of a span, are in ``ner.data.schemes``; the input checks in ``ner.nn.crf_checks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torchcrf
from torch import nn

from ner.data.schemes import span_segments, transition_rules
from ner.nn import crf_kernel
from ner.nn.crf_checks import check_emissions, check_segments, check_tags

# Score given to disallowed start/transition/end entries: exp(-1e4) is exactly 0 in float32 and float64.
IMPOSSIBLE = -1e4
REDUCTIONS = ("mean", "sum", "token_mean", "none")
_SUM_FLOOR = 1e-300  # floor of the sums in _log_matmul_exp (float64): log(1e-300) = -690.8 below the best tag


class Constraints(NamedTuple):
    """Which starts, transitions and ends are allowed; True = allowed."""

    start: torch.Tensor  # (K,) bool
    transitions: torch.Tensor  # (K, K) bool, [from_tag, to_tag]
    end: torch.Tensor  # (K,) bool


def allowed_transitions(tag_names: Sequence[str], scheme: str) -> Constraints:
    """Constraint masks that make sequences ill-formed in ``scheme`` impossible.

    ``tag_names[i]`` is the name of tag id ``i``: ``"O"`` or ``PREFIX-TYPE`` with the scheme's prefixes
    (IOB1/IOB2: B, I; BIOES: B, I, E, S). Any other name (a ``"<pad>"`` tag, ``"E-PER"`` in IOB2, ``"B-"``)
    raises ValueError: the CRF's tag set holds entity tags only.

    IOB2: start/O/other type -> I-X forbidden (I-X only after B-X or I-X). IOB1: B-X only after B-X or I-X.
    BIOES: B-X/I-X -> only I-X/E-X; E/S/O -> only B-*/S-*/O; start in {B, S, O}; end in {E, S, O}.
    Returns ``Constraints(start (K,), transitions (K, K) [from, to], end (K,))`` bool tensors on the CPU.
    """
    start, transitions, end = transition_rules(tag_names, scheme)
    return Constraints(
        torch.tensor(start, dtype=torch.bool),
        torch.tensor(transitions, dtype=torch.bool).reshape(len(start), len(start)),  # K = 0 too
        torch.tensor(end, dtype=torch.bool),
    )


def _log_matmul_exp(log_vectors: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """log(exp(log_vectors) @ matrix) for log_vectors (B, K) and a non-negative matrix (K, K), in float64.

    Each row is shifted by its max, so exp cannot overflow and the best entry contributes exp(0) = 1; a sum
    that still underflows (every entry with a non-zero matrix weight 690+ below the row's best) is floored
    at 1e-300, keeping values and gradients finite. One small matmul instead of a (B, K, K) log-sum-exp.
    """
    shift = log_vectors.amax(dim=1, keepdim=True).detach()  # (B, 1): the result does not depend on it
    return torch.log(((log_vectors - shift).exp() @ matrix).clamp(min=_SUM_FLOOR)) + shift


class CRF(nn.Module):
    """Linear-chain CRF over pytorch-crf's parameters, with optional constraints (see the module docstring).

    Args:
        num_tags: K, the number of tags.
        constraints: ``allowed_transitions(...)`` output (or any ``(start (K,), transitions (K, K), end (K,))``
            bool triple); ``None`` allows everything. Kept as buffers ``start_allowed``,
            ``transitions_allowed``, ``end_allowed`` (saved in the state dict, moved with ``.to``).
    """

    def __init__(self, num_tags: int, constraints: Constraints | tuple[torch.Tensor, ...] | None = None) -> None:
        super().__init__()
        self.crf = torchcrf.CRF(num_tags, batch_first=True)  # raises ValueError for num_tags <= 0
        self.num_tags = num_tags
        if constraints is None:
            constraints = Constraints(
                torch.ones(num_tags, dtype=torch.bool),
                torch.ones(num_tags, num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
            )
        if len(constraints) != 3:
            raise ValueError(f"constraints must be (start, transitions, end), got {len(constraints)} items")
        for name, allowed, shape in zip(
            ("start", "transitions", "end"), constraints, ((num_tags,), (num_tags, num_tags), (num_tags,))
        ):
            if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or allowed.shape != shape:
                got = f"{allowed.dtype} {tuple(allowed.shape)}" if isinstance(allowed, torch.Tensor) else type(allowed)
                raise ValueError(f"constraints {name} must be a bool tensor of shape {shape}, got {got}")
        self.register_buffer("start_allowed", constraints[0].clone())
        self.register_buffer("transitions_allowed", constraints[1].clone())
        self.register_buffer("end_allowed", constraints[2].clone())

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def effective_scores(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(start (K,), transitions (K, K) [from, to], end (K,)) with disallowed entries set to IMPOSSIBLE."""
        start = self.crf.start_transitions.masked_fill(~self.start_allowed, IMPOSSIBLE)
        transitions = self.crf.transitions.masked_fill(~self.transitions_allowed, IMPOSSIBLE)
        end = self.crf.end_transitions.masked_fill(~self.end_allowed, IMPOSSIBLE)
        if dtype is None:
            return start, transitions, end
        return start.to(dtype), transitions.to(dtype), end.to(dtype)

    # ----------------------------------------------------------------------------------- public API

    def neg_log_likelihood(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """-log P(tags | emissions): emissions (B, T, K), tags (B, T) int64 (any value at padding), mask (B, T).

        reduction: ``"mean"`` over sentences -> (), ``"sum"`` -> (), ``"token_mean"`` (sum / unmasked
        tokens) -> (), ``"none"`` -> (B,). A gold path that breaks the constraints costs about 1e4.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        mask = check_emissions(emissions, mask, self.num_tags)
        check_tags(tags, mask, self.num_tags, "tags")
        dtype = self._result_dtype(emissions)
        emissions, (start, transitions, end) = self._prepare(emissions, mask)
        lengths = mask.sum(dim=1)  # (B,)
        tags = tags.masked_fill(~mask, 0)  # (B, T): padding may hold any value, e.g. -100
        log_z = self._log_z(self._alpha(emissions, start, transitions), end, lengths)  # (B,)
        nll = log_z - self._path_score(emissions, tags, mask, lengths, start, transitions, end)  # (B,)
        if reduction == "token_mean":
            return (nll.sum() / lengths.sum()).to(dtype)
        return (nll if reduction == "none" else getattr(nll, reduction)()).to(dtype)  # mean or sum

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Best tag path by batched Viterbi: emissions (B, T, K), mask (B, T) -> (B, T) int64, 0 at padding.

        All in tensor ops (no per-step ``.item()``): one max per step forward, one gather per step back.
        """
        mask = check_emissions(emissions, mask, self.num_tags)
        start, transitions, end = self.effective_scores(self._result_dtype(emissions))
        emissions = emissions.to(start.dtype)
        if crf_kernel.supports(emissions):  # the same loops in C++
            return crf_kernel.viterbi(emissions, mask, start, transitions, end)
        batch_size, seq_len, num_tags = emissions.shape
        first, *following = emissions.unbind(1)  # T tensors (B, K)
        # score[b, j]: best score of a path ending in tag j at step t (steps past a sentence's end are
        # computed too, and ignored: the final score is read at each sentence's last step).
        score = start + first  # (B, K)
        scores, history = [score], []
        for emission in following:
            # (B, K_prev, K_next) -> best previous tag for each next tag; the emission does not depend on it
            best, best_previous = (score.unsqueeze(2) + transitions).max(dim=1)  # (B, K), (B, K)
            score = best + emission  # (B, K)
            scores.append(score)
            history.append(best_previous)
        batch = torch.arange(batch_size, device=emissions.device)
        last_step = mask.sum(dim=1) - 1  # (B,)
        final = torch.stack(scores, dim=1)[batch, last_step] + end  # (B, K)
        tag = final.argmax(dim=1, keepdim=True)  # (B, 1): best last tag
        path = [tag]
        if seq_len > 1:
            # Past a sentence's end, point each tag to itself so the backtrace carries its last tag through.
            identity = torch.arange(num_tags, device=emissions.device)  # (K,)
            pointers = torch.where(mask[:, 1:].T.unsqueeze(2), torch.stack(history), identity)  # (T-1, B, K)
            for t in range(seq_len - 2, -1, -1):
                tag = pointers[t].gather(1, tag)  # (B, 1): best tag at step t given the tag at t + 1
                path.append(tag)
        path.reverse()
        return torch.cat(path, dim=1).masked_fill(~mask, 0)  # (B, T)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z, the log-sum-exp of the scores of all (allowed) paths: emissions (B, T, K) -> (B,)."""
        mask = check_emissions(emissions, mask, self.num_tags)
        dtype = self._result_dtype(emissions)
        emissions, (start, transitions, end) = self._prepare(emissions, mask)
        return self._log_z(self._alpha(emissions, start, transitions), end, mask.sum(dim=1)).to(dtype)

    def forward_backward(
        self, emissions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward log scores: emissions (B, T, K) -> (log_alpha (B, T, K), log_beta (B, T, K),
        log_Z (B,)).

        log_alpha[b, t, j]: log-sum-exp over paths y[0..t] with y[t] = j of start + transitions + emissions
        up to and including step t. log_beta[b, t, j]: log-sum-exp over continuations y[t+1..] given y[t] = j
        of transitions + emissions after t + end. So log_alpha + log_beta - log_Z = log P(y[t] = j).
        Both are 0 at padding positions.
        """
        mask = check_emissions(emissions, mask, self.num_tags)
        dtype = self._result_dtype(emissions)
        return tuple(scores.to(dtype) for scores in self._forward_backward(*self._prepare(emissions, mask), mask))

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """P(y[t] = j) for every step and tag: emissions (B, T, K) -> (B, T, K), 0 at padding positions."""
        mask = check_emissions(emissions, mask, self.num_tags)
        dtype = self._result_dtype(emissions)
        log_alpha, log_beta, log_z = self._forward_backward(*self._prepare(emissions, mask), mask)
        probabilities = torch.exp(log_alpha + log_beta - log_z[:, None, None])  # (B, T, K)
        return probabilities.masked_fill(~mask.unsqueeze(2), 0.0).to(dtype)

    def segment_log_probs(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor | None,
        batch_index: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
        path: torch.Tensor,
    ) -> torch.Tensor:
        """log P(y[start:end] == path[start:end]) for N segments at once.

        emissions (B, T, K), mask (B, T) or None, batch_index/start/end (N,) int64 (``end`` exclusive,
        ``0 <= start < end <= length``), path (B, T) int64 (e.g. ``decode``'s output) -> (N,).
        """
        mask = check_emissions(emissions, mask, self.num_tags)
        check_segments(mask, batch_index, start, end)
        if path.shape != mask.shape:
            raise ValueError(f"path must have shape {tuple(mask.shape)} (batch, time), got {tuple(path.shape)}")
        check_tags(path, mask, self.num_tags, "path")
        dtype = self._result_dtype(emissions)
        emissions, scores = self._prepare(emissions, mask)
        seq_len = mask.size(1)
        offsets = torch.arange(seq_len, device=mask.device)  # (T,): segments are at most T long
        times = (start.unsqueeze(1) + offsets).clamp(max=seq_len - 1)  # (N, T)
        segment_tags = path[batch_index.unsqueeze(1), times]  # (N, T), past the segment's end unused
        log_probs = self._segment_log_probs(emissions, scores, mask, batch_index, start, segment_tags, end - start)
        return log_probs.to(dtype)

    @torch.no_grad()
    def span_probabilities(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor | None,
        spans: Sequence[Sequence[tuple[str, int, int]]],
        tag_names: Sequence[str],
        scheme: str,
    ) -> list[list[float]]:
        """P(each span is an entity of its type), e.g. for the spans of ``decode``'s path.

        spans[b] lists sentence b's spans as ``(type, start, end_exclusive)`` token offsets (as
        ``tags_to_spans`` gives them); ``tag_names[i]`` names tag id i; scheme is the CRF's tag scheme,
        ``"IOB2"`` or ``"BIOES"`` (see the module docstring for the formulas). Returns floats shaped as
        ``spans``.
        """
        mask = check_emissions(emissions, mask, self.num_tags)
        if len(tag_names) != self.num_tags:
            raise ValueError(f"tag_names must name all {self.num_tags} tags, got {len(tag_names)}")
        rows, has_follower = span_segments(spans, mask.sum(dim=1).tolist(), tag_names, scheme)
        if not rows:
            return [[] for _ in spans]
        device = mask.device
        width = max(len(ids) for _, _, ids in rows)
        batch_index = torch.tensor([sentence for sentence, _, _ in rows], device=device)  # (N,)
        start = torch.tensor([span_start for _, span_start, _ in rows], device=device)  # (N,)
        segment_len = torch.tensor([len(ids) for _, _, ids in rows], device=device)  # (N,)
        segment_tags = torch.tensor([ids + [0] * (width - len(ids)) for _, _, ids in rows], device=device)  # (N, S)
        emissions, scores = self._prepare(emissions, mask)
        log_probs = self._segment_log_probs(emissions, scores, mask, batch_index, start, segment_tags, segment_len)
        log_probs = log_probs.clamp(max=0.0)  # (N,): rounding can put a probability of 1 a hair above
        span_log_probs = log_probs[: len(has_follower)]  # (n,)
        follower_log_probs = torch.full_like(span_log_probs, float("-inf"))  # (n,): -inf = no I-X term
        follower_log_probs[torch.tensor(has_follower, device=device)] = log_probs[len(has_follower) :]
        # P(segment) - P(segment, I-X) = P(segment) * (1 - exp(log P(segment, I-X) - log P(segment)))
        ratio = (follower_log_probs - span_log_probs).clamp(max=0.0)  # (n,)
        probabilities = (torch.exp(span_log_probs) * -torch.expm1(ratio)).tolist()
        result, offset = [], 0
        for sentence_spans in spans:
            result.append(probabilities[offset : offset + len(sentence_spans)])
            offset += len(sentence_spans)
        return result

    # ------------------------------------------------------------------------------------- internals

    def _result_dtype(self, emissions: torch.Tensor) -> torch.dtype:
        """The wider of the emissions' and the parameters' dtype: that of results and of Viterbi's scores."""
        return torch.promote_types(emissions.dtype, self.crf.transitions.dtype)

    def _prepare(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Emissions and effective scores in float64, the dtype of all sums over paths (results are cast back
        to ``_result_dtype``), with the emissions zeroed at padding so non-finite padding cannot leak NaN
        into gradients."""
        scores = self.effective_scores(torch.float64)
        emissions = emissions.to(torch.float64).masked_fill(~mask.unsqueeze(2), 0.0)  # (B, T, K)
        return emissions, scores

    @staticmethod
    def _alpha(emissions: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
        """Forward log scores (B, T, K), computed through padding too (read at each sentence's last step)."""
        exp_transitions = transitions.exp()  # (K, K): disallowed entries are exactly 0
        first, *following = emissions.unbind(1)  # T tensors (B, K)
        log_alpha = start + first  # (B, K)
        steps = [log_alpha]
        for emission in following:
            # sum over the previous tag of exp(alpha + transition); the emission does not depend on it
            log_alpha = _log_matmul_exp(log_alpha, exp_transitions) + emission  # (B, K)
            steps.append(log_alpha)
        return torch.stack(steps, dim=1)

    @staticmethod
    def _log_z(log_alpha: torch.Tensor, end: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """log Z (B,) from forward log scores (B, T, K) read at each sentence's last step."""
        batch = torch.arange(log_alpha.size(0), device=log_alpha.device)
        return torch.logsumexp(log_alpha[batch, lengths - 1] + end, dim=1)

    @staticmethod
    def _path_score(
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        lengths: torch.Tensor,
        start: torch.Tensor,
        transitions: torch.Tensor,
        end: torch.Tensor,
    ) -> torch.Tensor:
        """Unnormalised score (B,) of each tag path (B, T) (tags valid ids everywhere, emissions 0 at padding)."""
        emission_scores = emissions.gather(2, tags.unsqueeze(2)).squeeze(2).sum(dim=1)  # (B,)
        step_scores = transitions[tags[:, :-1], tags[:, 1:]].masked_fill(~mask[:, 1:], 0.0)  # (B, T-1)
        last_tags = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return start[tags[:, 0]] + emission_scores + step_scores.sum(dim=1) + end[last_tags]

    @staticmethod
    def _forward_backward(
        emissions: torch.Tensor, scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start, transitions, end = scores
        if crf_kernel.supports(emissions):  # the same loops in C++
            return crf_kernel.forward_backward(emissions, mask, start, transitions, end)
        log_alpha = CRF._alpha(emissions, start, transitions)  # (B, T, K)
        log_z = CRF._log_z(log_alpha, end, mask.sum(dim=1))  # (B,)
        exp_transitions_back = transitions.exp().T  # (K_next, K_this)
        end_scores = end.expand(emissions.size(0), -1)  # (B, K)
        log_beta = end_scores
        steps = [log_beta]
        # from step t = T-2 down to 0, with the emission (B, K) and mask (B, 1) of step t + 1
        for next_emission, next_on in zip(emissions.unbind(1)[:0:-1], mask.unsqueeze(2).unbind(1)[:0:-1]):
            # sum over the next tag of exp(transition + emission + beta)
            following = _log_matmul_exp(next_emission + log_beta, exp_transitions_back)  # (B, K)
            # a sentence's last step (next step off) starts from the end scores
            log_beta = torch.where(next_on, following, end_scores)  # (B, K)
            steps.append(log_beta)
        steps.reverse()
        padding = ~mask.unsqueeze(2)  # (B, T, 1)
        log_beta = torch.stack(steps, dim=1).masked_fill(padding, 0.0)  # (B, T, K)
        return log_alpha.masked_fill(padding, 0.0), log_beta, log_z

    def _segment_log_probs(
        self,
        emissions: torch.Tensor,
        scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        batch_index: torch.Tensor,
        start: torch.Tensor,
        segment_tags: torch.Tensor,
        segment_len: torch.Tensor,
    ) -> torch.Tensor:
        """log P(y[start : start + len] == segment_tags[:, :len]) (N,); segment_tags (N, S), S >= max len.

        log_alpha at the first step + transitions and emissions inside + log_beta at the last step - log Z.
        """
        log_alpha, log_beta, log_z = self._forward_backward(emissions, scores, mask)
        transitions = scores[1]
        width = segment_tags.size(1)
        inside = torch.arange(width, device=mask.device) < segment_len.unsqueeze(1)  # (N, S)
        segment_tags = segment_tags.masked_fill(~inside, 0)  # (N, S): valid ids past each segment's end
        times = (start.unsqueeze(1) + torch.arange(width, device=mask.device)).clamp(max=mask.size(1) - 1)  # (N, S)
        rows = batch_index.unsqueeze(1)  # (N, 1)
        step_scores = (
            emissions[rows, times[:, 1:], segment_tags[:, 1:]] + transitions[segment_tags[:, :-1], segment_tags[:, 1:]]
        )  # (N, S-1): score of moving into step s of the segment
        inner = step_scores.masked_fill(~inside[:, 1:], 0.0).sum(dim=1)  # (N,)
        last = segment_len - 1  # (N,)
        last_tags = segment_tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (N,)
        first = log_alpha[batch_index, start, segment_tags[:, 0]]  # (N,)
        return first + inner + log_beta[batch_index, start + last, last_tags] - log_z[batch_index]
