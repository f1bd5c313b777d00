"""ScalarMix against hand computation (AllenNLP / docs/elmo.md section 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ner.nn.scalar_mix import ScalarMix


def _layers_and_mask(seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    layers = [torch.randn(3, 5, 4, generator=generator, dtype=torch.float64) * (k + 1) + k for k in range(3)]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    return layers, mask


def _softmax(scalars: list[float]) -> np.ndarray:
    """Softmax of the parameters as stored (float32, like the module's initial values)."""
    exp = np.exp(np.asarray(scalars, dtype=np.float32).astype(np.float64))
    return exp / exp.sum()


def test_softmax_weights_and_gamma() -> None:
    layers, _ = _layers_and_mask()
    mix = ScalarMix(3, initial_scalar_parameters=[0.1, -0.4, 0.7], initial_gamma=1.5).double()
    weights = _softmax([0.1, -0.4, 0.7])
    expected = 1.5 * sum(w * a.numpy() for w, a in zip(weights, layers))
    np.testing.assert_allclose(mix(layers).detach().numpy(), expected, rtol=1e-12)


def test_default_is_the_mean_and_stacked_input_is_accepted() -> None:
    layers, _ = _layers_and_mask()
    mix = ScalarMix(3).double()
    torch.testing.assert_close(mix(torch.stack(layers)), torch.stack(layers).mean(0), rtol=1e-12, atol=1e-12)


def test_layer_norm_is_one_mean_and_variance_over_the_masked_batch() -> None:
    layers, mask = _layers_and_mask()
    mix = ScalarMix(3, do_layer_norm=True, initial_scalar_parameters=[0.3, 0.0, -0.2]).double()
    weights = _softmax([0.3, 0.0, -0.2])
    expected = 0.0
    for w, layer in zip(weights, layers):
        a = layer.numpy()
        real = a[mask.numpy()]  # (unmasked positions, dim): every value counts once
        expected = expected + w * (a - real.mean()) / np.sqrt(real.var() + 1e-13)
    got = mix(layers, mask).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Statistics come from unmasked positions only: changing padding changes nothing there.
    layers[0][1, 3:] = 1e6
    np.testing.assert_allclose(mix(layers, mask).detach().numpy()[mask.numpy()], expected[mask.numpy()], rtol=1e-10)


def test_l2_penalty_and_frozen_parameters() -> None:
    mix = ScalarMix(3, initial_scalar_parameters=[1.0, -2.0, 0.5], trainable=False, l2_coef=0.1)
    assert mix.penalty().item() == pytest.approx(0.1 * (1 + 4 + 0.25))
    assert not mix.scalar_parameters.requires_grad and not mix.gamma.requires_grad


def test_gradients_reach_weights_and_gamma() -> None:
    layers, mask = _layers_and_mask()
    mix = ScalarMix(3, do_layer_norm=True, l2_coef=0.5).double()
    (mix(layers, mask).sum() + mix.penalty()).backward()
    assert mix.scalar_parameters.grad.abs().sum() > 0 and mix.gamma.grad.abs().sum() > 0


def test_errors() -> None:
    layers, _ = _layers_and_mask()
    with pytest.raises(ValueError, match="got 3 tensors, expected num_layers = 2"):
        ScalarMix(2)(layers)
    with pytest.raises(ValueError, match="do_layer_norm=True needs a mask"):
        ScalarMix(3, do_layer_norm=True)(layers)
    with pytest.raises(ValueError, match="initial_scalar_parameters has 2 values, expected num_layers = 3"):
        ScalarMix(3, initial_scalar_parameters=[0.0, 0.0])
