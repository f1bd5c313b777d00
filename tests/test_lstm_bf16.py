"""bfloat16 recurrent products at inference (``LSTM.bf16_products``, ``--precision bf16``) against a reference that
rounds the same operands, and the float32 fallback wherever they do not apply."""

from __future__ import annotations

import pytest
import torch
from test_cli import fails_with, run_dir  # noqa: F401  (run_dir: the module's trained run, a fixture)
from test_lstm import assert_all_close, flat, make_input, mask_of

from ner.errors import NerError
from ner.model import Tagger
from ner.nn import LSTM, lstm_kernel

NATIVE = lstm_kernel.native_bf16()
needs_native = pytest.mark.skipif(not NATIVE, reason="no AVX512-BF16 products on this CPU (or no kernel)")
# Steps of 12 to 1 rows: those of more than lstm_kernel.FUSED_MAX_ROWS rows take bf16 products, the rest float32.
MANY = [9, 1, 6, 9, 3, 7, 2, 5, 8, 4, 9, 6]


def bf16(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to bfloat16 (nearest even), back in float64."""
    return t.to(torch.bfloat16).to(torch.float64)


def reference(module: LSTM, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """A one-layer bidirectional LSTM, sentence by sentence in float64, whose recurrent products round h_{t-1} and
    w_hh to bfloat16 at the steps where the kernel's batch has more than FUSED_MAX_ROWS rows: (B, T, 2H)."""
    hidden = module.hidden_size
    output = torch.zeros(len(lengths), x.shape[1], 2 * hidden, dtype=torch.float64)
    for direction, suffix in enumerate(("", "_reverse")):
        w_ih, w_hh = (getattr(module, f"{name}_l0{suffix}").double() for name in ("weight_ih", "weight_hh"))
        bias = (getattr(module, f"bias_ih_l0{suffix}") + getattr(module, f"bias_hh_l0{suffix}")).double()
        for b, length in enumerate(lengths):
            h, c = torch.zeros(hidden, dtype=torch.float64), torch.zeros(hidden, dtype=torch.float64)
            for step in range(length):
                t = step if direction == 0 else length - 1 - step
                rows = sum(other > step for other in lengths)  # the batch size of this step in the kernel
                low = rows > lstm_kernel.FUSED_MAX_ROWS
                recurrent = (bf16(w_hh) @ bf16(h.float())) if low else w_hh @ h
                i, f, g, o = (w_ih @ x[b, t].double() + bias + recurrent).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                output[b, t, direction * hidden : (direction + 1) * hidden] = h
    return output


def module_and_input() -> tuple[LSTM, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    module = LSTM(3, 8, bidirectional=True)  # 4H = 32: two vectors of 16 columns
    x = make_input(MANY, 3, torch.float32, time=max(MANY)).detach()
    return module, x, mask_of(MANY, max(MANY))


@needs_native
def test_bf16_products_are_the_rounded_operands_summed_in_float32() -> None:
    module, x, mask = module_and_input()
    with torch.no_grad():
        exact = module(x, mask)[0]
        module.bf16_products = True
        low = module(x, mask)[0]
    expected = reference(module, x, MANY).float()
    assert_all_close([low], [expected], 2e-6)
    assert (low - exact).abs().max() > 1e-4  # the rounding shows: the products were not float32


@needs_native
def test_bf16_input_projection_is_the_rounded_operands_summed_in_float32() -> None:
    """input_projection (I = 3, odd: the last pair padded with a zero) against float64 sums of the rounded x and
    w_ih, plus the bias; the float32 projection differs by the rounding."""
    module, _, _ = module_and_input()
    x = torch.randn(37, 3)
    with torch.no_grad():
        exact = module.input_projection(x)
        module.bf16_products = True
        weights = module._layer_weights(0)
        bias = weights.bias.clone()
        assert module.input_projection(x[:1]).shape == (2, 1, 32)  # one row: the bias must stay as it was
        low = module.input_projection(x)
    assert torch.equal(weights.bias, bias)
    expected = torch.einsum("vi,dgi->dvg", bf16(x), bf16(weights.w_ih)) + weights.bias.double()[:, None]
    assert low.shape == exact.shape == (2, 37, 32)
    assert_all_close([low], [expected.float()], 1e-6)
    assert (low - exact).abs().max() > 1e-4


def test_float32_where_bf16_products_do_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training, float64, a CPU without the products: bf16_products changes nothing, exactly."""
    module, x, mask = module_and_input()
    module.bf16_products = True
    plain = LSTM(3, 8, bidirectional=True)
    plain.load_state_dict(module.state_dict())
    x.requires_grad_()
    assert_all_close(flat(module(x, mask)), flat(plain(x, mask)), 0)  # training: autograd, no bf16
    with torch.no_grad():
        assert_all_close(flat(module.double()(x.double(), mask)), flat(plain.double()(x.double(), mask)), 0)
        module.float(), plain.float()
        monkeypatch.setattr(lstm_kernel, "native_bf16", lambda: False)
        assert_all_close(flat(module(x, mask)), flat(plain(x, mask)), 0)


def test_precision_is_checked(run_dir, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    tagger = Tagger.load(run_dir, precision="bf16")
    assert tagger.model.encoder.bf16_products is True
    with pytest.raises(NerError, match=r"^precision: expected one of float32, bf16, got 'fp16'$"):
        tagger.model.set_inference_precision("fp16")
    fails_with(
        capsys,
        ["tag", str(run_dir), "-", "--precision", "bf16", "--backend", "onnx"],
        "--precision bf16: only with --backend pytorch",
    )
    fails_with(
        capsys,
        ["tag", str(run_dir), "-", "--precision", "bf16", "--engine", "ray"],
        "--precision bf16: only with --engine local",
    )


@needs_native
def test_bf16_tagging_agrees_with_float32(run_dir) -> None:  # noqa: F811
    """The same entities as float32 on the sample's text, probabilities within bfloat16's rounding."""
    text = "EU rejects German call to boycott British lamb.\nPeter Blackburn met Werner Zwingmann in Brussels."
    exact = Tagger.load(run_dir).tag(text)
    low = Tagger.load(run_dir, precision="bf16").tag(text)
    assert [{k: v for k, v in e.items() if k != "score"} for e in low] == [
        {k: v for k, v in e.items() if k != "score"} for e in exact
    ]
    assert all(abs(a["score"] - b["score"]) < 1e-2 for a, b in zip(low, exact))
