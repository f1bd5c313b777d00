"""ner.nn.crf against brute-force enumeration of every tag sequence, and against pytorch-crf."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from ner.nn.crf import CRF, IMPOSSIBLE, allowed_transitions

TAGS = {
    "IOB1": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "IOB2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
}
BIOES_TWO_TYPES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------- oracles


def is_well_formed(tags: list[str], scheme: str) -> bool:
    """Scheme rules written independently of the module, as a scan over the sequence."""
    open_type = None  # BIOES: type of the entity opened by B- and not yet closed by E-
    for index, tag in enumerate(tags):
        prefix, entity_type = (tag, None) if tag == "O" else tag.split("-", 1)
        previous = tags[index - 1] if index > 0 else "O"
        same_type_before = previous != "O" and previous.split("-", 1)[1] == entity_type
        if scheme == "IOB2" and prefix == "I" and not same_type_before:
            return False
        if scheme == "IOB1" and prefix == "B" and not same_type_before:
            return False
        if scheme == "BIOES":
            if open_type is None and prefix not in ("O", "B", "S"):
                return False
            if open_type is not None and (prefix not in ("I", "E") or entity_type != open_type):
                return False
            open_type = entity_type if prefix in ("B", "I") else None
    return open_type is None


def spans_of(tags: list[str], scheme: str) -> set[tuple[str, int, int]]:
    """Entity spans (type, start, end) of a well-formed IOB2 or BIOES sequence."""
    spans, start = set(), None
    for index, tag in enumerate(tags + ["O"]):
        prefix, entity_type = (tag, None) if tag == "O" else tag.split("-", 1)
        if start is not None and not (prefix in ("I", "E") and scheme == "BIOES" or prefix == "I"):
            spans.add((tags[start].split("-", 1)[1], start, index))
            start = None
        if prefix in ("B", "S"):
            start = index
        if scheme == "BIOES" and prefix in ("E", "S"):
            spans.add((entity_type, start, index + 1))
            start = None
    return spans


def make_crf(num_tags: int, scheme: str | None = None, seed: int = 0, dtype=torch.float64) -> CRF:
    """A CRF with N(0, 1) parameters (larger than pytorch-crf's init, so paths differ clearly)."""
    torch.manual_seed(seed)
    constraints = allowed_transitions(TAGS[scheme], scheme) if scheme else None
    crf = CRF(num_tags, constraints).to(dtype)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter)
    return crf


def make_batch(lengths: list[int], num_tags: int, seed: int = 0, dtype=torch.float64):
    """Emissions (B, T, K) ~ N(0, 2) and a left-aligned mask for the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    emissions = 2 * torch.randn(len(lengths), max(lengths), num_tags, generator=generator, dtype=dtype)
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


def raw_path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    """Score of one path of one sentence (T, K) from the raw parameters, step by step."""
    score = crf.crf.start_transitions[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + crf.crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return score + crf.crf.end_transitions[path[-1]]


def enumerate_paths(crf: CRF, emissions: torch.Tensor, length: int, scheme: str | None) -> dict[tuple, float]:
    """Every allowed path of one sentence with its log probability (constrained: only well-formed paths)."""
    paths = [
        path
        for path in itertools.product(range(crf.num_tags), repeat=length)
        if scheme is None or is_well_formed([TAGS[scheme][tag] for tag in path], scheme)
    ]
    scores = torch.stack([raw_path_score(crf, emissions, path) for path in paths])
    return dict(zip(paths, (scores - torch.logsumexp(scores, 0)).tolist()))


CASES = [(None, 1), (None, 2), (None, 3), (None, 5), ("IOB1", 5), ("IOB2", 5), ("BIOES", 5)]
LENGTHS = [4, 2, 1, 3]


# ------------------------------------------------------------------------------------ allowed_transitions


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_allowed_transitions_accept_exactly_the_well_formed_sequences(scheme):
    tags = BIOES_TWO_TYPES if scheme == "BIOES" else TAGS[scheme]
    start, transitions, end = allowed_transitions(tags, scheme)
    for length in (1, 2, 3):
        for path in itertools.product(range(len(tags)), repeat=length):
            allowed = bool(start[path[0]] and end[path[-1]] and all(transitions[a, b] for a, b in zip(path, path[1:])))
            assert allowed == is_well_formed([tags[i] for i in path], scheme), [tags[i] for i in path]


def test_allowed_transitions_named_cases():
    iob2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, transitions, end = allowed_transitions(iob2, "IOB2")
    assert start.tolist() == [True, True, False, True, False]
    assert end.tolist() == [True] * 5
    assert not transitions[0, 2] and not transitions[1, 4] and not transitions[2, 4]  # O, B-PER, I-PER -> I-LOC
    assert transitions[1, 2] and transitions[2, 2] and transitions[2, 3] and transitions[0, 3]
    start, transitions, end = allowed_transitions(TAGS["BIOES"], "BIOES")  # O B I E S
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]
    assert transitions.tolist() == [
        [True, True, False, False, True],
        [False, False, True, True, False],
        [False, False, True, True, False],
        [True, True, False, False, True],
        [True, True, False, False, True],
    ]


@pytest.mark.parametrize(
    ("tags", "scheme", "message"),
    [
        (["O"], "BILOU", "unknown tag scheme 'BILOU': expected one of IOB1, IOB2, BIOES"),
        (["O", "<pad>"], "IOB2", "tag '<pad>' at index 1 is not valid in scheme IOB2: expected O or B-TYPE, I-TYPE"),
        (["E-PER"], "IOB2", "tag 'E-PER' at index 0 is not valid in scheme IOB2: expected O or B-TYPE, I-TYPE"),
        (
            ["O", "B-"],
            "BIOES",
            "tag 'B-' at index 1 is not valid in scheme BIOES: expected O or B-TYPE, I-TYPE, E-TYPE, S-TYPE",
        ),
        (["O", "B-PER", "O"], "IOB2", "tag_names must be distinct, got 'O' more than once"),
    ],
)
def test_allowed_transitions_errors(tags, scheme, message):
    with pytest.raises(ValueError) as error:
        allowed_transitions(tags, scheme)
    assert str(error.value) == message


# ------------------------------------------------------------------------------------ brute-force oracles


@pytest.mark.parametrize(("scheme", "num_tags"), CASES)
def test_log_partition_nll_decode_and_marginals_match_enumeration(scheme, num_tags):
    crf = make_crf(num_tags, scheme)
    emissions, mask = make_batch(LENGTHS, num_tags)
    log_z = crf.log_partition(emissions, mask)
    decoded = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    gold, expected_nll = torch.zeros_like(decoded), []
    for b, length in enumerate(LENGTHS):
        log_probs = enumerate_paths(crf, emissions[b], length, scheme)
        scores = {path: raw_path_score(crf, emissions[b], path) for path in log_probs}
        assert log_z[b].item() == pytest.approx(torch.logsumexp(torch.stack(list(scores.values())), 0).item())
        best = max(log_probs, key=log_probs.get)
        assert decoded[b, :length].tolist() == list(best) and decoded[b, length:].eq(0).all()
        gold_path = sorted(log_probs)[(7 * b) % len(log_probs)]  # some allowed path
        gold[b, :length] = torch.tensor(gold_path)
        expected_nll.append(-log_probs[gold_path])
        expected_marginals = torch.zeros(length, num_tags, dtype=torch.float64)
        for path, log_prob in log_probs.items():
            expected_marginals[torch.arange(length), torch.tensor(path)] += math.exp(log_prob)
        torch.testing.assert_close(marginals[b, :length], expected_marginals)
        assert marginals[b, length:].eq(0).all()
    nll = crf.neg_log_likelihood(emissions, gold, mask, reduction="none")
    torch.testing.assert_close(nll, torch.tensor(expected_nll, dtype=torch.float64))
    expected = torch.tensor(expected_nll, dtype=torch.float64)
    assert crf.neg_log_likelihood(emissions, gold, mask).item() == pytest.approx(expected.mean().item())
    assert crf.neg_log_likelihood(emissions, gold, mask, "sum").item() == pytest.approx(expected.sum().item())
    token_mean = crf.neg_log_likelihood(emissions, gold, mask, "token_mean").item()
    assert token_mean == pytest.approx(expected.sum().item() / sum(LENGTHS))


@pytest.mark.parametrize(("scheme", "num_tags"), CASES)
def test_segment_log_probs_match_enumeration(scheme, num_tags):
    crf = make_crf(num_tags, scheme, seed=1)
    emissions, mask = make_batch(LENGTHS, num_tags, seed=1)
    path = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long)
    segments, expected = [], []
    for b, length in enumerate(LENGTHS):
        log_probs = enumerate_paths(crf, emissions[b], length, scheme)
        path[b, :length] = torch.tensor(sorted(log_probs)[(5 * b + 3) % len(log_probs)])
        for start in range(length):
            for end in range(start + 1, length + 1):
                wanted = tuple(path[b, start:end].tolist())
                segments.append((b, start, end))
                expected.append(sum(math.exp(p) for seq, p in log_probs.items() if seq[start:end] == wanted))
    batch_index, start, end = torch.tensor(segments).T
    log_probs = crf.segment_log_probs(emissions, mask, batch_index, start, end, path)
    assert log_probs.shape == (len(segments),)
    torch.testing.assert_close(log_probs.exp(), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
def test_span_probabilities_match_enumeration(scheme):
    tags = TAGS[scheme]
    crf = make_crf(len(tags), scheme, seed=2)
    emissions, mask = make_batch(LENGTHS, len(tags), seed=2)
    spans, expected = [], []
    for b, length in enumerate(LENGTHS):
        log_probs = enumerate_paths(crf, emissions[b], length, scheme)
        path_spans = {path: spans_of([tags[i] for i in path], scheme) for path in log_probs}
        spans.append([("PER", s, e) for s in range(length) for e in range(s + 1, length + 1)])
        expected.append(
            [sum(math.exp(p) for path, p in log_probs.items() if span in path_spans[path]) for span in spans[-1]]
        )
    probabilities = crf.span_probabilities(emissions, mask, spans, tags, scheme)
    assert [len(row) for row in probabilities] == [len(row) for row in spans]
    for row, expected_row in zip(probabilities, expected):
        assert row == pytest.approx(expected_row, abs=1e-9)
    assert sum(sum(row) for row in expected) > 1.0  # the spans carry real probability mass


def test_span_probabilities_of_decoded_spans_and_empty_input():
    tags = TAGS["IOB2"]
    crf = make_crf(len(tags), "IOB2", seed=3)
    emissions, mask = make_batch([4, 3], len(tags), seed=3)
    emissions[0, :, 1] += 3.0  # make B-PER likely at every step of sentence 0
    emissions[0, 1, 1] -= 6.0
    emissions[0, 1, 2] += 6.0  # ... except I-PER at step 1
    decoded = crf.decode(emissions, mask)
    spans = [
        sorted(spans_of([tags[i] for i in decoded[b, :n].tolist()], "IOB2"), key=lambda s: s[1])
        for b, n in enumerate([4, 3])
    ]
    assert spans[0][0] == ("PER", 0, 2)
    probabilities = crf.span_probabilities(emissions, mask, spans, tags, "IOB2")
    assert all(0.0 < p <= 1.0 for row in probabilities for p in row)
    assert crf.span_probabilities(emissions, mask, [[], []], tags, "IOB2") == [[], []]


# ------------------------------------------------------------------------------------ against pytorch-crf


def test_decode_equals_torchcrf_on_1000_random_cases():
    generator = torch.Generator().manual_seed(1234)
    for case in range(1000):
        num_tags = int(torch.randint(1, 10, (1,), generator=generator))
        batch_size = int(torch.randint(1, 6, (1,), generator=generator))
        seq_len = int(torch.randint(1, 12, (1,), generator=generator))
        torch.manual_seed(case)
        crf = CRF(num_tags)
        emissions = torch.randn(batch_size, seq_len, num_tags, generator=generator)
        lengths = torch.randint(1, seq_len + 1, (batch_size,), generator=generator)
        lengths[0] = seq_len
        mask = torch.arange(seq_len) < lengths.unsqueeze(1)
        decoded = crf.decode(emissions, mask)
        expected = crf.crf.decode(emissions, mask)
        assert [row[:n].tolist() for row, n in zip(decoded, lengths.tolist())] == expected, case
        assert decoded.masked_select(~mask).eq(0).all()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "token_mean"])
def test_nll_and_gradients_equal_torchcrf_when_unconstrained(reduction):
    torch.manual_seed(5)
    crf = CRF(7)
    emissions = torch.randn(6, 9, 7, requires_grad=True)
    mask = torch.arange(9) < torch.tensor([9, 1, 4, 9, 2, 6]).unsqueeze(1)
    tags = torch.randint(0, 7, (6, 9))
    ours = crf.neg_log_likelihood(emissions, tags, mask, reduction)
    theirs = -crf.crf(emissions, tags, mask, reduction)
    torch.testing.assert_close(ours, theirs)
    parameters = [emissions, *crf.parameters()]
    our_grads = torch.autograd.grad(ours.sum(), parameters)
    their_grads = torch.autograd.grad(theirs.sum(), parameters)
    for ours_grad, theirs_grad in zip(our_grads, their_grads):
        torch.testing.assert_close(ours_grad, theirs_grad)


# ------------------------------------------------------------------------------------------ gradients


def test_nll_gradients_match_finite_differences_with_constraints():
    crf = make_crf(5, "BIOES", seed=6)
    emissions, mask = make_batch([3, 2], 5, seed=6)
    tags = torch.tensor([[1, 3, 0], [4, 0, 0]])
    emissions.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: crf.neg_log_likelihood(e, tags, mask, "sum"), (emissions,))
    loss = crf.neg_log_likelihood(emissions.detach(), tags, mask, "sum")
    grads = torch.autograd.grad(loss, list(crf.parameters()))
    eps = 1e-6
    for parameter, grad in zip(crf.parameters(), grads):
        flat = parameter.data.view(-1)
        for index in range(flat.numel()):
            saved = flat[index].item()
            flat[index] = saved + eps
            above = crf.neg_log_likelihood(emissions.detach(), tags, mask, "sum").item()
            flat[index] = saved - eps
            below = crf.neg_log_likelihood(emissions.detach(), tags, mask, "sum").item()
            flat[index] = saved
            assert grad.view(-1)[index].item() == pytest.approx((above - below) / (2 * eps), abs=1e-6)
    assert grads[2][~crf.transitions_allowed].eq(0).all()  # disallowed entries never move


def test_marginals_are_the_gradient_of_log_partition():
    crf = make_crf(5, "IOB2", seed=7)
    emissions, mask = make_batch(LENGTHS, 5, seed=7)
    emissions.requires_grad_(True)
    (gradient,) = torch.autograd.grad(crf.log_partition(emissions, mask).sum(), emissions)
    torch.testing.assert_close(crf.marginals(emissions, mask), gradient)


def test_huge_emissions_stay_exact_and_finite():
    crf = make_crf(5, "BIOES", seed=16)
    emissions, mask = make_batch(LENGTHS, 5, seed=16)
    emissions = 200 * emissions  # scores in the thousands: exp overflows float64 without shifting
    emissions.requires_grad_(True)
    log_z = crf.log_partition(emissions, mask)
    for b, length in enumerate(LENGTHS):
        log_probs = enumerate_paths(crf, emissions[b].detach(), length, "BIOES")
        scores = torch.stack([raw_path_score(crf, emissions[b].detach(), path) for path in log_probs])
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), rel=1e-12)
    (gradient,) = torch.autograd.grad(log_z.sum(), emissions)
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(crf.marginals(emissions, mask), gradient)


def test_forward_backward_combine_to_log_partition_at_every_step():
    crf = make_crf(5, "BIOES", seed=8)
    emissions, mask = make_batch(LENGTHS, 5, seed=8)
    log_alpha, log_beta, log_z = crf.forward_backward(emissions, mask)
    assert log_alpha.shape == log_beta.shape == emissions.shape and log_z.shape == (len(LENGTHS),)
    torch.testing.assert_close(log_z, crf.log_partition(emissions, mask))
    for b, length in enumerate(LENGTHS):
        per_step = torch.logsumexp(log_alpha[b, :length] + log_beta[b, :length], dim=1)  # (length,)
        torch.testing.assert_close(per_step, log_z[b].expand(length))
        assert log_alpha[b, length:].eq(0).all() and log_beta[b, length:].eq(0).all()


# ---------------------------------------------------------------------------------- masks and batching


def test_no_mask_equals_all_on_mask():
    crf = make_crf(5, "IOB2", seed=9)
    emissions, _ = make_batch([4, 4, 4], 5, seed=9)
    full = torch.ones(3, 4, dtype=torch.bool)
    tags = crf.decode(emissions, full)
    assert crf.decode(emissions, None).equal(tags)
    torch.testing.assert_close(crf.neg_log_likelihood(emissions, tags), crf.neg_log_likelihood(emissions, tags, full))
    torch.testing.assert_close(crf.marginals(emissions), crf.marginals(emissions, full))


def test_batch_equals_each_sentence_alone():
    crf = make_crf(5, "BIOES", seed=10)
    emissions, mask = make_batch(LENGTHS, 5, seed=10)
    decoded = crf.decode(emissions, mask)
    nll = crf.neg_log_likelihood(emissions, decoded, mask, reduction="none")
    marginals = crf.marginals(emissions, mask)
    for b, length in enumerate(LENGTHS):
        alone = emissions[b : b + 1, :length]
        assert crf.decode(alone).equal(decoded[b : b + 1, :length])
        alone_nll = crf.neg_log_likelihood(alone, decoded[b : b + 1, :length], reduction="none")
        torch.testing.assert_close(alone_nll, nll[b : b + 1])
        torch.testing.assert_close(crf.marginals(alone), marginals[b : b + 1, :length])


def test_padding_content_is_ignored_and_gradients_stay_finite():
    crf = make_crf(5, "IOB2", seed=11)
    emissions, mask = make_batch(LENGTHS, 5, seed=11)
    tags = crf.decode(emissions, mask).masked_fill(~mask, -100)
    poisoned = emissions.masked_fill(~mask.unsqueeze(2), float("nan"))
    poisoned[1, 3] = float("inf")
    poisoned.requires_grad_(True)
    assert crf.decode(poisoned, mask).equal(crf.decode(emissions, mask))
    loss = crf.neg_log_likelihood(poisoned, tags, mask)
    torch.testing.assert_close(loss, crf.neg_log_likelihood(emissions, tags.clamp(min=0), mask))
    loss.backward()
    assert torch.isfinite(poisoned.grad).all() and poisoned.grad.masked_select(~mask.unsqueeze(2)).eq(0).all()
    assert all(torch.isfinite(parameter.grad).all() for parameter in crf.parameters())
    torch.testing.assert_close(crf.marginals(poisoned.detach(), mask), crf.marginals(emissions, mask))


# ------------------------------------------------------------------------------------------ constraints


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_constrained_decode_is_always_well_formed(scheme):
    tags = BIOES_TWO_TYPES if scheme == "BIOES" else TAGS[scheme]
    crf = CRF(len(tags), allowed_transitions(tags, scheme))
    generator = torch.Generator().manual_seed(12)
    emissions = 5 * torch.randn(200, 8, len(tags), generator=generator)  # large: often favour ill-formed paths
    lengths = torch.randint(1, 9, (200,), generator=generator)
    mask = torch.arange(8) < lengths.unsqueeze(1)
    unconstrained = CRF(len(tags))
    unconstrained.crf.load_state_dict(crf.crf.state_dict())

    def all_well_formed(paths: torch.Tensor) -> bool:
        return all(is_well_formed([tags[i] for i in path[:n].tolist()], scheme) for path, n in zip(paths, lengths))

    assert all_well_formed(crf.decode(emissions, mask))
    assert not all_well_formed(unconstrained.decode(emissions, mask))  # the emissions do push for ill-formed


def test_constraints_survive_parameter_updates_and_state_dict():
    tags = TAGS["BIOES"]
    crf = CRF(len(tags), allowed_transitions(tags, "BIOES"))
    emissions, mask = make_batch(LENGTHS, len(tags), seed=13, dtype=torch.float32)
    before = crf.decode(emissions, mask)
    with torch.no_grad():  # as if training had pushed every disallowed score up
        crf.crf.transitions.masked_fill_(~crf.transitions_allowed, 50.0)
        crf.crf.start_transitions.masked_fill_(~crf.start_allowed, 50.0)
        crf.crf.end_transitions.masked_fill_(~crf.end_allowed, 50.0)
    assert crf.decode(emissions, mask).equal(before)
    start, transitions, end = crf.effective_scores()
    assert transitions[~crf.transitions_allowed].eq(IMPOSSIBLE).all() and start[~crf.start_allowed].eq(IMPOSSIBLE).all()
    restored = CRF(len(tags))
    restored.load_state_dict(crf.state_dict())
    assert restored.transitions_allowed.equal(crf.transitions_allowed)
    assert restored.decode(emissions, mask).equal(before)


def test_float32_matches_float64_and_dtypes_promote():
    crf64 = make_crf(5, "IOB2", seed=14)
    emissions, mask = make_batch(LENGTHS, 5, seed=14)
    crf32 = copy.deepcopy(crf64).float()
    marginals32 = crf32.marginals(emissions.float(), mask)
    assert marginals32.dtype == torch.float32
    torch.testing.assert_close(marginals32.double(), crf64.marginals(emissions, mask), atol=1e-5, rtol=1e-5)
    assert crf32.log_partition(emissions, mask).dtype == torch.float64  # float64 emissions win
    assert crf32.decode(emissions.float(), mask).equal(crf64.decode(emissions, mask))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_each_device(device):
    crf = make_crf(5, "BIOES", seed=15, dtype=torch.float32)
    emissions, mask = make_batch(LENGTHS, 5, seed=15, dtype=torch.float32)
    spans = [[("PER", 0, 2)], [], [], [("PER", 1, 2)]]
    expected_path = crf.decode(emissions, mask)
    expected_probabilities = crf.span_probabilities(emissions, mask, spans, TAGS["BIOES"], "BIOES")
    crf.to(device)
    emissions, mask = emissions.to(device), mask.to(device)
    decoded = crf.decode(emissions, mask)
    assert decoded.device.type == device and decoded.cpu().equal(expected_path)
    probabilities = crf.span_probabilities(emissions, mask, spans, TAGS["BIOES"], "BIOES")
    for row, expected_row in zip(probabilities, expected_probabilities):
        assert row == pytest.approx(expected_row, abs=1e-5)


# ------------------------------------------------------------------------------------------ bad input


def _error(call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_mask_errors():
    crf = CRF(3)
    emissions = torch.randn(2, 4, 3)
    assert _error(lambda: crf.decode(emissions, torch.ones(2, 4, dtype=torch.uint8))) == (
        "mask must be a bool tensor, got torch.uint8"
    )
    assert _error(lambda: crf.decode(emissions, torch.ones(2, 3, dtype=torch.bool))) == (
        "mask must have shape (2, 4) (batch, time) like emissions, got (2, 3)"
    )
    first_off = torch.tensor([[True, True, False, False], [False, True, True, False]])
    assert _error(lambda: crf.log_partition(emissions, first_off)) == (
        "mask must be on at the first time step of every sentence, got off in row 1"
    )
    gap = torch.tensor([[True, True, True, True], [True, False, True, False]])
    assert _error(lambda: crf.marginals(emissions, gap)) == (
        "mask must be left-aligned (on for a prefix of each row, then off), got on after off in row 1 at time step 2"
    )


def test_emission_tag_and_reduction_errors():
    crf = CRF(3)
    emissions, mask = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    tags = torch.zeros(2, 4, dtype=torch.long)
    assert _error(lambda: crf.decode(torch.randn(2, 4, 5))) == (
        "emissions must have shape (batch, time, 3), got (2, 4, 5)"
    )
    assert _error(lambda: crf.decode(torch.randn(4, 3))) == "emissions must have shape (batch, time, 3), got (4, 3)"
    assert _error(lambda: crf.decode(emissions.half())) == "emissions must be float32 or float64, got torch.float16"
    assert _error(lambda: crf.decode(torch.randn(2, 0, 3))) == (
        "emissions must have at least one time step, got shape (2, 0, 3)"
    )
    assert _error(lambda: crf.neg_log_likelihood(emissions, tags.int(), mask)) == (
        "tags must be an int64 tensor, got torch.int32"
    )
    assert _error(lambda: crf.neg_log_likelihood(emissions, tags[:, :3], mask)) == (
        "tags must have shape (2, 4) (batch, time), got (2, 3)"
    )
    bad = tags.clone()
    bad[1, 2] = 3
    assert _error(lambda: crf.neg_log_likelihood(emissions, bad, mask)) == (
        "tags must be tag ids in [0, 3) where the mask is on, got 3 in row 1 at time step 2"
    )
    assert _error(lambda: crf.neg_log_likelihood(emissions, tags, mask, "avg")) == (
        "reduction must be one of mean, sum, token_mean, none, got 'avg'"
    )
    assert _error(lambda: CRF(0)) == "invalid number of tags: 0"
    allowed = torch.ones(3, dtype=torch.bool)
    assert _error(lambda: CRF(3, (allowed, torch.ones(3, 2, dtype=torch.bool), allowed))) == (
        "constraints transitions must be a bool tensor of shape (3, 3), got torch.bool (3, 2)"
    )


def test_segment_and_span_errors():
    tags = TAGS["IOB2"]
    crf = CRF(5, allowed_transitions(tags, "IOB2"))
    emissions, mask = make_batch([4, 2], 5, dtype=torch.float32)
    path = torch.zeros(2, 4, dtype=torch.long)

    def index(*values: int) -> torch.Tensor:
        return torch.tensor(values)

    assert _error(lambda: crf.segment_log_probs(emissions, mask, index(0), index(1), index(3), path[:, :2])) == (
        "path must have shape (2, 4) (batch, time), got (2, 2)"
    )
    assert _error(lambda: crf.segment_log_probs(emissions, mask, index(0, 2), index(0, 0), index(1, 1), path)) == (
        "batch_index must be in [0, 2), got 2 at 1"
    )
    assert _error(lambda: crf.segment_log_probs(emissions, mask, index(0, 1), index(0, 1), index(1, 3), path)) == (
        "segments must satisfy 0 <= start < end <= sentence length, got start 1, end 3, length 2 at 1"
    )
    assert _error(lambda: crf.segment_log_probs(emissions, mask, index(0), index(0), index(1, 2), path)) == (
        "end must be a 1-D int64 tensor of the same length as batch_index, got torch.int64 (2,)"
    )
    spans = [[("PER", 0, 1)], []]
    assert _error(lambda: crf.span_probabilities(emissions, mask, spans, tags, "IOB1")) == (
        "span probabilities need scheme IOB2 or BIOES, got 'IOB1'"
    )
    assert _error(lambda: crf.span_probabilities(emissions, mask, [[("ORG", 0, 1)], []], tags, "IOB2")) == (
        "span type 'ORG' needs tag 'B-ORG', which is not in tag_names"
    )
    assert _error(lambda: crf.span_probabilities(emissions, mask, [[], [("PER", 1, 3)]], tags, "IOB2")) == (
        "span ('PER', 1, 3) of sentence 1 must satisfy 0 <= start < end <= 2 (the sentence length)"
    )
    assert _error(lambda: crf.span_probabilities(emissions, mask, spans[:1], tags, "IOB2")) == (
        "spans must list the spans of each of the 2 sentences, got 1"
    )
    assert _error(lambda: crf.span_probabilities(emissions, mask, spans, tags[:4], "IOB2")) == (
        "tag_names must name all 5 tags, got 4"
    )
