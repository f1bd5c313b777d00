"""CharCNN and Highway against plain NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ner.nn.char_cnn import CharCNN
from ner.nn.highway import Highway


def _reference_cnn(cnn: CharCNN, ids: np.ndarray) -> np.ndarray:
    """(tokens, chars) ids -> (tokens, output_dim), written out with loops."""
    table = cnn.embedding.weight.detach().double().numpy()
    rows = []
    for token in ids:
        length = len(token) - list(token[::-1] != 0).index(True) if token.any() else 0  # up to the last char
        features = []
        for conv, (width, _count) in zip(cnn.convs, cnn.filters):
            if cnn.boundary_windows:  # own chars with width - 1 padding on both sides
                padded = np.concatenate([np.zeros(width - 1, int), token[: max(length, 1)], np.zeros(width - 1, int)])
            else:  # own chars, padded up to the widest filter
                used = max(length, cnn.max_width)
                padded = np.pad(token, (0, max(0, used - len(token))))[:used]
            chars = table[padded]  # (positions, dim)
            kernel = conv.weight.detach().double().numpy()  # (num, dim, width)
            bias = conv.bias.detach().double().numpy()
            windows = [
                np.einsum("wc,ncw->n", chars[p : p + width], kernel) + bias for p in range(len(padded) - width + 1)
            ]
            features.append(np.tanh(np.max(windows, axis=0)))
        rows.append(np.concatenate(features))
    x = np.stack(rows)
    for layer in cnn.highway.layers:
        weight, bias = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        n = x.shape[1]
        gate = 1 / (1 + np.exp(-(x @ weight[n:].T + bias[n:])))
        x = gate * x + (1 - gate) * np.maximum(x @ weight[:n].T + bias[:n], 0)
    return x @ cnn.projection.weight.detach().double().numpy().T + cnn.projection.bias.detach().double().numpy()


def make_cnn(boundary_windows: bool = False) -> CharCNN:
    """Three filters (one of width 1), highway layers and a projection, float64, seeded."""
    torch.manual_seed(0)
    filters = [(1, 2), (2, 3), (4, 2)]
    return CharCNN(
        20, 3, filters, activation="tanh", highway_layers=2, projection_dim=5, boundary_windows=boundary_windows
    ).double()


@pytest.fixture
def cnn() -> CharCNN:
    return make_cnn()


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("boundary_windows", [False, True], ids=["own-chars", "boundary-windows"])
def test_matches_reference(grad: bool, boundary_windows: bool) -> None:
    """Both ways of pooling (with autograd; without: in place, amax) give the loops' numbers."""
    cnn = make_cnn(boundary_windows)
    ids = torch.randint(0, 20, (6, 9))
    ids[1, 5:] = 0  # shorter words: windows past them left out
    ids[2, 2:] = 0
    with torch.set_grad_enabled(grad):
        out = cnn(ids)
    np.testing.assert_allclose(out.detach().numpy(), _reference_cnn(cnn, ids.numpy()), rtol=1e-10, atol=1e-12)


def test_words_shorter_than_the_widest_filter_are_padded(cnn: CharCNN) -> None:
    ids = torch.tensor([[4, 7], [9, 0]])
    np.testing.assert_allclose(cnn(ids).detach().numpy(), _reference_cnn(cnn, ids.numpy()), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cnn(ids), cnn(torch.nn.functional.pad(ids, (0, 2))))


@pytest.mark.parametrize("boundary_windows", [False, True], ids=["own-chars", "boundary-windows"])
def test_a_token_does_not_depend_on_how_far_its_batch_is_padded(boundary_windows: bool) -> None:
    cnn = make_cnn(boundary_windows)
    ids = torch.tensor([[4, 7, 3, 0, 0, 0], [9, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    padded = torch.nn.functional.pad(ids, (0, 7))
    torch.testing.assert_close(cnn(padded), cnn(ids))
    torch.testing.assert_close(cnn(ids[:2, :3]), cnn(ids[:2]))
    np.testing.assert_allclose(cnn(ids).detach().numpy(), _reference_cnn(cnn, ids.numpy()), rtol=1e-10, atol=1e-12)


def test_mask_gives_zeros_and_leaves_real_tokens_unchanged(cnn: CharCNN) -> None:
    ids = torch.randint(1, 20, (2, 4, 6))  # (batch, time, chars)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    out = cnn(ids, mask)
    assert out.shape == (2, 4, 5)
    assert out[~mask].abs().sum() == 0
    torch.testing.assert_close(out[mask], cnn(ids)[mask])


def test_padding_embedding_stays_zero(cnn: CharCNN) -> None:
    cnn(torch.tensor([[0, 0, 3, 0]])).sum().backward()
    assert cnn.embedding.weight[0].abs().sum() == 0 and cnn.embedding.weight.grad[0].abs().sum() == 0


def test_output_dim_without_projection() -> None:
    assert CharCNN(10, 4, [(3, 30), (2, 7)]).output_dim == 37


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'tanh'\], got 'gelu'"):
        CharCNN(10, 4, [(3, 30)], activation="gelu")
    with pytest.raises(ValueError, match=r"filters must be a non-empty list of positive \(width, num\) pairs"):
        CharCNN(10, 4, [(0, 30)])


def test_highway_gate_one_is_identity_and_zero_is_transform() -> None:
    highway = Highway(3, 1).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    layer = highway.layers[0]
    with torch.no_grad():
        layer.bias[3:] = 1e4  # gate -> 1: carry x
    torch.testing.assert_close(highway(x), x)
    with torch.no_grad():
        layer.bias[3:] = -1e4  # gate -> 0: relu(A x + a)
    torch.testing.assert_close(highway(x), torch.relu(x @ layer.weight[:3].T + layer.bias[:3]))
