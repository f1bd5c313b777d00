"""The CRF's C++ inference loops (ner.nn.crf_kernel) against its PyTorch loops, and when each runs.

tests/test_crf.py checks the CRF against enumeration and pytorch-crf; there ``decode`` and the no-grad forward-
backward take the kernel where it is built, the likelihood and gradients the PyTorch loops.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_crf import TAGS, make_batch, make_crf

from ner.data.schemes import tags_to_spans
from ner.nn import crf_kernel, kernels
from ner.nn.crf import CRF

KERNEL = kernels.available()
needs_kernel = pytest.mark.skipif(not KERNEL and not os.environ.get("CI"), reason="the C++ kernels could not be built")
LENGTHS = [7, 1, 3, 7, 2, 6, 5, 4]


def both_ways(monkeypatch: pytest.MonkeyPatch, call, *args) -> tuple:
    """``call(*args)`` with the PyTorch loops, then with the kernel (no gradient)."""
    with torch.no_grad():
        monkeypatch.setattr(kernels, "_loaded", False)
        expected = call(*args)
        monkeypatch.setattr(kernels, "_loaded", True)
        return expected, call(*args)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("scheme", ["IOB2", "BIOES", None])
def test_kernel_equals_pytorch_loops(scheme, dtype, monkeypatch) -> None:
    """Equal paths, forward-backward scores within 1e-12 and equal span probabilities to 1e-12, on random CRFs
    and emissions, in a batch of lengths 1 to 7 (scores in float64 whatever the emissions)."""
    names = TAGS[scheme] if scheme else [f"S-T{i}" for i in range(5)]
    for seed in range(5):
        crf = make_crf(len(names), scheme, seed=seed)
        emissions, mask = make_batch(LENGTHS, len(names), seed=seed, dtype=dtype)
        expected, paths = both_ways(monkeypatch, crf.decode, emissions, mask)
        assert torch.equal(paths, expected)
        expected, got = both_ways(monkeypatch, crf.forward_backward, emissions, mask)
        for ours, theirs in zip(got, expected):
            assert ours.dtype == theirs.dtype
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        if scheme:
            spans = [tags_to_spans([names[i] for i in row[:n]]) for row, n in zip(paths.tolist(), LENGTHS)]
            expected, got = both_ways(monkeypatch, crf.span_probabilities, emissions, mask, spans, names, scheme)
            assert sum(map(len, spans)) > 0
            for ours, theirs in zip(got, expected):
                assert ours == pytest.approx(theirs, abs=1e-12)


@needs_kernel
def test_ties_keep_the_first_maximum_as_torch(monkeypatch) -> None:
    """All scores equal: every path ties, and both take tag 0 at every step (the first of equal maxima)."""
    crf = CRF(4)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.zero_()
    emissions, mask = torch.zeros(3, 5, 4), torch.arange(5) < torch.tensor([[5], [2], [1]])
    expected, got = both_ways(monkeypatch, crf.decode, emissions, mask)
    assert torch.equal(got, expected) and got.eq(0).all()


def test_gradients_take_the_pytorch_loops() -> None:
    """With a gradient wanted the kernel is not used, and marginals still have one."""
    crf = make_crf(5)
    emissions, mask = make_batch(LENGTHS, 5)
    emissions.requires_grad_()
    assert not crf_kernel.supports(emissions)
    crf.marginals(emissions, mask).sum().backward()
    assert emissions.grad is not None and emissions.grad.abs().sum() > 0
    with torch.no_grad():
        assert crf_kernel.supports(emissions) == KERNEL
    assert not crf_kernel.supports(emissions.detach().to("meta"))
