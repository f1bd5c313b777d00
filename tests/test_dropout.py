"""Our dropout against the definition and against torch's: same kept fraction, scaling, gradient and modes."""

from __future__ import annotations

import pytest
import torch

from ner.nn.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_keeps_one_minus_p_of_the_elements_scaled_and_zeroes_the_rest(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(200, 500) + 0.5  # no zeros of its own
    out = dropout(x, p)
    kept = out != 0
    # 100,000 draws: the kept fraction within 5 standard deviations of 1 - p
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * (p * (1 - p) / x.numel()) ** 0.5
    torch.testing.assert_close(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)
    # torch's dropout keeps the same fraction (as a check of the reading of p)
    theirs = torch.nn.functional.dropout(x, p, True) != 0
    assert abs(kept.double().mean().item() - theirs.double().mean().item()) < 10 * (p * (1 - p) / x.numel()) ** 0.5


def test_gradient_is_the_same_mask_and_scale() -> None:
    torch.manual_seed(1)
    x = (torch.rand(7, 9, 11, dtype=torch.float64) + 0.5).requires_grad_()
    out = dropout(x, 0.3)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    expected = upstream * (out != 0) / 0.7
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=0)
    assert out.dtype == torch.float64


def test_a_seed_fixes_the_mask_and_the_masks_differ_between_calls() -> None:
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    first, second = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), first) and not torch.equal(first, second)


def test_eval_mode_zero_and_one() -> None:
    x = torch.randn(5, 6, requires_grad=True)
    module = Dropout(0.5).eval()
    assert module(x) is x and dropout(x, 0.0) is x and dropout(x, 0.7, training=False) is x
    zeros = dropout(x, 1.0)
    assert torch.equal(zeros, torch.zeros_like(x))
    zeros.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"^dropout probability must be in \[0, 1\], got 1.5$"):
        Dropout(1.5)
    assert repr(Dropout(0.25)) == "Dropout(p=0.25)"


def test_half_precision_inputs_draw_in_float32() -> None:
    torch.manual_seed(4)
    x = torch.ones(300, 300, dtype=torch.bfloat16)
    out = dropout(x, 0.05)
    assert out.dtype == torch.bfloat16
    # a bfloat16 uniform could not tell 0.05 from its neighbours; float32 draws keep 95 % within the noise
    assert abs((out != 0).double().mean().item() - 0.95) < 5 * (0.05 * 0.95 / x.numel()) ** 0.5
