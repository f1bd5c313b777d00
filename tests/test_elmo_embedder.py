"""Elmo embedder (mix -> strip boundaries -> dropout) and the on-disk activation cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ner.elmo import BiLM, BiLMOptions, Elmo, ElmoCache, batch_to_char_ids
from ner.elmo.cache import cache_key

SENTENCES = [
    ["EU", "rejects", "German", "call"],
    [],
    ["Peter", "Blackburn"],
    ["a"],
    ["BRUSSELS", "1996-08-22", "x", "y", "z"],
]


@pytest.fixture(scope="module")
def bilm() -> BiLM:
    torch.manual_seed(0)
    options = BiLMOptions(filters=[(1, 4), (2, 4), (3, 8)], char_dim=4, highway_layers=1, projection_dim=6, lstm_dim=8)
    return BiLM(options).eval()


def test_mix_on_boundaries_then_strip(bilm: BiLM) -> None:
    elmo = Elmo(bilm, dropout=0.0, do_layer_norm=True, scalar_mix_parameters=[0.5, -1.0, 0.2])
    ids = batch_to_char_ids(SENTENCES)
    embeddings, mask = elmo(ids)
    layers, full_mask = bilm(ids)
    weights = torch.softmax(torch.tensor([0.5, -1.0, 0.2]), 0)
    expected = 0.0
    for w, layer in zip(weights, layers):
        real = layer[full_mask]  # statistics include <S> and </S>
        expected = expected + w * (layer - real.mean()) / torch.sqrt(real.var(unbiased=False) + 1e-13)
    assert mask.tolist() == [[t < len(s) for t in range(5)] for s in SENTENCES]
    assert embeddings.shape == (5, 5, 12)
    for row, tokens in enumerate(SENTENCES):
        n = len(tokens)
        torch.testing.assert_close(embeddings[row, :n], expected[row, 1 : n + 1], atol=1e-5, rtol=1e-5)
        assert embeddings[row, n:].abs().sum() == 0


def test_output_mix_has_its_own_weights_and_penalty(bilm: BiLM) -> None:
    elmo = Elmo(bilm, dropout=0.0, output_mix=True, l2_coef=0.1)
    with torch.no_grad():
        elmo.output_scalar_mix.scalar_parameters.copy_(torch.tensor([1.0, -2.0, 0.5]))
        elmo.output_scalar_mix.gamma.fill_(2.0)
    layers, full_mask = elmo.layers(batch_to_char_ids(SENTENCES))
    inputs, mask = elmo.from_layers(layers, full_mask)
    outputs, output_mask = elmo.from_layers(layers, full_mask, output=True)
    weights = 2.0 * torch.softmax(torch.tensor([1.0, -2.0, 0.5]), 0)
    expected = sum(w * layer for w, layer in zip(weights, layers))
    assert torch.equal(mask, output_mask)
    for row, tokens in enumerate(SENTENCES):
        n = len(tokens)
        torch.testing.assert_close(outputs[row, :n], expected[row, 1 : n + 1], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(inputs[row, :n], torch.stack(layers).mean(0)[row, 1 : n + 1], atol=1e-6, rtol=1e-6)
    assert elmo.penalty().item() == pytest.approx(0.1 * (1 + 4 + 0.25))  # the input mix's weights are all 0
    with pytest.raises(ValueError, match="this Elmo was made without output_mix"):
        Elmo(bilm).from_layers(layers, full_mask, output=True)


def test_frozen_trains_only_the_mix_and_fine_tuning_reaches_the_bilm(bilm: BiLM) -> None:
    ids = batch_to_char_ids(SENTENCES)
    frozen = Elmo(bilm, dropout=0.5)
    frozen(ids)[0].sum().backward()
    assert all(p.grad is None for p in bilm.parameters())
    assert frozen.scalar_mix.scalar_parameters.grad is not None
    tuned = Elmo(bilm, fine_tune=True)
    tuned(ids)[0].sum().backward()
    assert bilm.forward_layers[1].weight_hh_l0.grad.abs().sum() > 0
    bilm.requires_grad_(False)
    bilm.zero_grad(set_to_none=True)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_top_layer_recomputed_from_the_one_below_equals_the_bilm(num_layers: int) -> None:
    torch.manual_seed(1)
    options = BiLMOptions(filters=[(1, 4), (2, 4)], char_dim=4, projection_dim=6, lstm_dim=8, num_layers=num_layers)
    bilm = BiLM(options).eval()
    layers, mask = bilm(batch_to_char_ids(SENTENCES))
    torch.testing.assert_close(bilm.top_layer(layers[-2], mask), layers[-1], atol=1e-6, rtol=1e-6)


def test_fine_tuning_the_top_layer_trains_it_from_the_layer_below(bilm: BiLM) -> None:
    ids = batch_to_char_ids(SENTENCES)
    tuned = Elmo(bilm, dropout=0.0, fine_tune_top=True)
    features, _ = tuned(ids)
    features.sum().backward()
    top = {*bilm.forward_layers[-1].parameters(), *bilm.backward_layers[-1].parameters()}
    assert top and all(p.grad is not None and p.grad.abs().sum() > 0 for p in top)
    assert all(p.grad is None for p in bilm.parameters() if p not in top)
    # A cache holds the top layer as the biLM made it before training: it is recomputed from the layer below.
    layers, mask = bilm(ids)
    stale = [*layers[:-1], torch.zeros_like(layers[-1])]
    with torch.no_grad():
        torch.testing.assert_close(tuned.from_layers(tuned.top_from_below(stale, mask), mask)[0], features)
    assert Elmo(bilm).top_from_below(stale, mask) is stale
    bilm.requires_grad_(False)
    bilm.zero_grad(set_to_none=True)


def test_dropout_after_stripping(bilm: BiLM) -> None:
    elmo = Elmo(bilm, dropout=0.5).train()
    embeddings, mask = elmo(batch_to_char_ids(SENTENCES))
    zeros = (embeddings[mask] == 0).float().mean().item()
    assert 0.35 < zeros < 0.65
    elmo.eval()
    assert (elmo(batch_to_char_ids(SENTENCES))[0][mask] == 0).sum() == 0


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_cache_returns_the_bilm_layers(bilm: BiLM, tmp_path: Path, dtype: torch.dtype, tolerance: float) -> None:
    cache = ElmoCache.build(bilm, SENTENCES, tmp_path / "train.v1", dtype=dtype, batch_size=2)
    assert len(cache) == 5 and cache.dtype == (np.float16 if dtype == torch.float16 else np.float32)
    indices = [4, 1, 0]
    layers, mask = cache.layers_for(indices, max_len=7)
    direct, direct_mask = bilm(batch_to_char_ids([SENTENCES[i] for i in indices]))
    assert layers.shape == (3, 3, 9, 12) and layers.dtype == torch.float32
    assert torch.equal(mask[:, :7], direct_mask) and not mask[:, 7:].any()
    torch.testing.assert_close(layers[:, :, :7], torch.stack(direct), atol=tolerance, rtol=tolerance)
    assert layers[:, :, 7:].abs().sum() == 0
    elmo = Elmo(bilm, dropout=0.0)
    from_cache, cache_mask = elmo.from_layers(*cache.layers_for(indices))
    from_bilm, bilm_mask = elmo(batch_to_char_ids([SENTENCES[i] for i in indices]))
    assert torch.equal(cache_mask, bilm_mask)
    torch.testing.assert_close(from_cache, from_bilm, atol=tolerance * 4, rtol=tolerance * 4)


def test_cache_is_reused_only_for_the_same_sentences_and_weights(bilm: BiLM, tmp_path: Path) -> None:
    first = ElmoCache.for_sentences(bilm, SENTENCES, tmp_path)
    stamp = first.path.with_name(first.path.name + ".npy").stat().st_mtime_ns
    again = ElmoCache.for_sentences(bilm, SENTENCES, tmp_path)
    assert again.path == first.path and again.path.with_name(again.path.name + ".npy").stat().st_mtime_ns == stamp
    assert cache_key(bilm, SENTENCES[:-1], torch.float16) != first.key
    assert cache_key(bilm, SENTENCES, torch.float32) != first.key
    changed = BiLM(bilm.options)
    changed.load_state_dict(bilm.state_dict())
    with torch.no_grad():
        changed.token_encoder.projection.bias[0] += 1e-3
    assert cache_key(changed, SENTENCES, torch.float16) != first.key
    assert len(list(tmp_path.iterdir())) == 2  # one .npy + one .json, no temporary files left


def test_cache_is_read_not_memory_mapped_and_a_truncated_one_is_refused(bilm: BiLM, tmp_path: Path) -> None:
    """Its pages stay in the page cache instead of the process's resident memory (445 MB for CoNLL-2003)."""
    from ner.errors import NerError

    cache = ElmoCache.build(bilm, SENTENCES, tmp_path / "train", dtype=torch.float32, batch_size=2)
    layers, _ = cache.layers_for(range(len(SENTENCES)))
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert "train.npy" not in maps.read_text()
    data = tmp_path / "train.npy"
    values = np.load(data)  # (L + 1, rows, 2P), sentences back to back with their boundaries
    last = cache.offsets[-2]
    assert torch.equal(layers[:, -1, :7], torch.from_numpy(values[:, last:]))
    os.truncate(data, data.stat().st_size - 4)
    with pytest.raises(NerError, match=r"train\.npy: ELMo cache truncated; delete it"):
        cache.layers_for([len(SENTENCES) - 1])
