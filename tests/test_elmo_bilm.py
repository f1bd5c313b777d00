"""BiLM against an independent NumPy forward pass of docs/elmo.md, written in TensorFlow conventions and reading
the hdf5 file directly; plus character ids, boundaries, weight-file round trips and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ner.elmo import BiLM, batch_to_char_ids
from ner.elmo.bilm import BiLMOptions
from ner.errors import NerError

FILTERS = [[1, 4], [2, 5], [3, 7], [5, 3]]
CHAR_DIM, N_HIGHWAY, P, D, N_LAYERS = 4, 2, 6, 10, 2
CELL_CLIP, PROJ_CLIP = 0.6, 0.4
SENTENCES = [
    ["The", "cat", "sat", "."],
    ["Zürich"],
    [],
    ["x" * 60, "€", "a", "b", "c", "d"],
    ["<S>", "</S>", "ok"],
]


def _write_published_layout(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """A small options.json + weights.hdf5 pair in the bilm-tf ``dump_weights`` layout, random weights."""
    rng = np.random.default_rng(seed)
    n = sum(num for _, num in FILTERS)
    options = {
        "lstm": {
            "use_skip_connections": True,
            "projection_dim": P,
            "cell_clip": CELL_CLIP,
            "proj_clip": PROJ_CLIP,
            "dim": D,
            "n_layers": N_LAYERS,
        },
        "char_cnn": {
            "activation": "tanh",
            "filters": FILTERS,
            "n_highway": N_HIGHWAY,
            "embedding": {"dim": CHAR_DIM},
            "n_characters": 262,
            "max_characters_per_token": 50,
        },
    }
    options_path, weights_path = directory / "options.json", directory / "weights.hdf5"
    options_path.write_text(json.dumps(options))

    def normal(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    with h5py.File(weights_path, "w") as h5:
        h5["char_embed"] = normal(261, CHAR_DIM, scale=1.0)
        for i, (width, num) in enumerate(FILTERS):
            h5[f"CNN/W_cnn_{i}"] = normal(1, width, CHAR_DIM, num)
            h5[f"CNN/b_cnn_{i}"] = normal(num)
        for k in range(N_HIGHWAY):
            for name, shape in (("W_transform", (n, n)), ("W_carry", (n, n)), ("b_transform", (n,)), ("b_carry", (n,))):
                h5[f"CNN_high_{k}/{name}"] = normal(*shape)
        h5["CNN_proj/W_proj"] = normal(n, P)
        h5["CNN_proj/b_proj"] = normal(P)
        for direction in range(2):
            for layer in range(N_LAYERS):
                group = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
                h5[f"{group}/W_0"] = normal(2 * P, 4 * D)
                h5[f"{group}/B"] = normal(4 * D)
                h5[f"{group}/W_P_0"] = normal(D, P)
    return options_path, weights_path


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: one sentence at a time, TF conventions, float64, straight from the hdf5 datasets.


def _reference_char_ids(token: str) -> list[int]:
    if token in ("<S>", "</S>"):
        chars = [256 if token == "<S>" else 257]
    else:
        chars = list(token.encode("utf-8"))[:48]
    ids = [258, *chars, 259] + [260] * (48 - len(chars))
    return [i + 1 for i in ids]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reference_layers(weights_path: Path, tokens: list[str]) -> tuple[list[np.ndarray], dict[str, int]]:
    """All n_layers + 1 activations (len(tokens) + 2, 2P) of one sentence, and counts of clipped values."""
    with h5py.File(weights_path, "r") as h5:
        w = {name: np.asarray(h5[name], dtype=np.float64) for name in _all_datasets(h5)}
    ids = np.array([_reference_char_ids(t) for t in ["<S>", *tokens, "</S>"]])  # (n + 2, 50)
    table = np.vstack([np.zeros((1, CHAR_DIM)), w["char_embed"]])
    chars = table[ids]  # (n + 2, 50, cd)
    features = []
    for i, (width, _count) in enumerate(FILTERS):
        kernel = w[f"CNN/W_cnn_{i}"][0]  # (width, cd, num)
        conv = (
            np.stack(
                [sum(chars[:, start + k] @ kernel[k] for k in range(width)) for start in range(50 - width + 1)], axis=1
            )
            + w[f"CNN/b_cnn_{i}"]
        )  # (n + 2, positions, num)
        features.append(np.tanh(conv.max(axis=1)))
    x = np.concatenate(features, axis=-1)
    for k in range(N_HIGHWAY):
        g = f"CNN_high_{k}/"
        carry = _sigmoid(x @ w[g + "W_carry"] + w[g + "b_carry"])
        x = carry * np.maximum(x @ w[g + "W_transform"] + w[g + "b_transform"], 0) + (1 - carry) * x
    token_vectors = x @ w["CNN_proj/W_proj"] + w["CNN_proj/b_proj"]  # (n + 2, P)

    clipped = {"cell": 0, "proj": 0}

    def run_direction(direction: int, inputs: np.ndarray) -> list[np.ndarray]:
        outputs = []
        for layer in range(N_LAYERS):
            g = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
            h, c, out = np.zeros(P), np.zeros(D), []
            for x_t in inputs:
                i, j, f, o = np.split(np.concatenate([x_t, h]) @ w[g + "W_0"] + w[g + "B"], 4)
                c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
                clipped["cell"] += int((np.abs(c) > CELL_CLIP).sum())
                c = np.clip(c, -CELL_CLIP, CELL_CLIP)
                h = (_sigmoid(o) * np.tanh(c)) @ w[g + "W_P_0"]
                clipped["proj"] += int((np.abs(h) > PROJ_CLIP).sum())
                h = np.clip(h, -PROJ_CLIP, PROJ_CLIP)
                out.append(h)
            out = np.array(out)
            if layer > 0:
                out = out + inputs
            outputs.append(out)
            inputs = out
        return outputs

    forward = run_direction(0, token_vectors)
    backward = [o[::-1] for o in run_direction(1, token_vectors[::-1])]
    layers = [np.concatenate([token_vectors, token_vectors], -1)]
    layers += [np.concatenate([f, b], -1) for f, b in zip(forward, backward)]
    return layers, clipped


def _all_datasets(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_published_layout(tmp_path_factory.mktemp("elmo"))


# ---------------------------------------------------------------------------------------------------------------


class TestCharIds:
    def test_word_layout_with_offset(self) -> None:
        ids = batch_to_char_ids([["Hi"]])
        assert ids.shape == (1, 1, 50) and ids.dtype == torch.long
        assert ids[0, 0].tolist() == [259, 73, 106, 260] + [261] * 46

    def test_boundary_strings_and_padding_rows(self) -> None:
        ids = batch_to_char_ids([["<S>", "</S>"], []])
        assert ids[0, 0].tolist() == [259, 257, 260] + [261] * 47
        assert ids[0, 1].tolist() == [259, 258, 260] + [261] * 47
        assert ids[1].abs().sum() == 0

    def test_utf8_bytes_truncated_to_48(self) -> None:
        ids = batch_to_char_ids([["é" * 30]])[0, 0].tolist()
        assert ids[:3] == [259, 0xC3 + 1, 0xA9 + 1] and ids[49] == 260 and ids[48] == 0xA9 + 1
        assert all(a == b for a, b in zip(ids, _reference_char_ids("é" * 30)))

    def test_empty_batch(self) -> None:
        assert batch_to_char_ids([]).shape == (0, 0, 50)


class TestAgainstReference:
    @pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
    def test_every_layer_matches_numpy_spec(
        self, published: tuple[Path, Path], dtype: torch.dtype, tolerance: float
    ) -> None:
        bilm = BiLM.from_allennlp(*published).to(dtype)
        with torch.no_grad():
            layers, mask = bilm(batch_to_char_ids(SENTENCES))
        assert len(layers) == N_LAYERS + 1
        lengths = [len(s) + 2 for s in SENTENCES]
        assert mask.tolist() == [[t < n for t in range(max(lengths))] for n in lengths]
        total_clipped = {"cell": 0, "proj": 0}
        for row, tokens in enumerate(SENTENCES):
            expected, clipped = _reference_layers(published[1], tokens)
            total_clipped = {k: total_clipped[k] + v for k, v in clipped.items()}
            n = len(tokens) + 2
            for got, want in zip(layers, expected):
                assert got.shape == (len(SENTENCES), max(lengths), 2 * P)
                np.testing.assert_allclose(got[row, :n].double().numpy(), want, atol=tolerance, rtol=0)
                assert got[row, n:].abs().sum() == 0  # exactly zero at padding
        assert total_clipped["cell"] > 0 and total_clipped["proj"] > 0  # both clips were exercised

    def test_sentence_alone_equals_sentence_in_batch(self, published: tuple[Path, Path]) -> None:
        bilm = BiLM.from_allennlp(*published).double()
        with torch.no_grad():
            batch_layers, _ = bilm(batch_to_char_ids(SENTENCES))
            for row, tokens in enumerate(SENTENCES):
                alone, _ = bilm(batch_to_char_ids([tokens]))
                for got, want in zip(batch_layers, alone):
                    torch.testing.assert_close(got[row, : len(tokens) + 2], want[0], atol=1e-12, rtol=0)

    def test_stateless_repeated_calls_agree(self, published: tuple[Path, Path]) -> None:
        bilm = BiLM.from_allennlp(*published)
        ids = batch_to_char_ids(SENTENCES)
        with torch.no_grad():
            first, _ = bilm(ids)
            bilm(batch_to_char_ids([["Another", "batch"]]))
            again, _ = bilm(ids)
        for got, want in zip(again, first):
            assert torch.equal(got, want)


class TestWeightFiles:
    def test_allennlp_round_trip_is_bit_exact(self, published: tuple[Path, Path], tmp_path: Path) -> None:
        options_path, weights_path = published
        BiLM.from_allennlp(options_path, weights_path).to_allennlp(tmp_path)
        with h5py.File(weights_path, "r") as original, h5py.File(tmp_path / "weights.hdf5", "r") as exported:
            names = _all_datasets(original)
            assert sorted(names) == sorted(_all_datasets(exported))
            for name in names:
                assert exported[name].dtype == np.float32
                np.testing.assert_array_equal(exported[name][()], original[name][()], err_msg=name)
        written = json.loads((tmp_path / "options.json").read_text())
        original_options = json.loads(options_path.read_text())
        assert written["lstm"] == original_options["lstm"]
        assert written["char_cnn"] == original_options["char_cnn"]

    def test_trained_model_round_trips_through_allennlp_layout(self, tmp_path: Path) -> None:
        torch.manual_seed(0)
        options = BiLMOptions(filters=[(1, 3), (2, 4)], char_dim=3, highway_layers=1, projection_dim=4, lstm_dim=5)
        bilm = BiLM(options)
        with torch.no_grad():
            for parameter in bilm.parameters():
                parameter.normal_()
            bilm.token_encoder.embedding.weight[0] = 0.0
        bilm.to_allennlp(tmp_path)
        loaded = BiLM.from_allennlp(tmp_path / "options.json", tmp_path / "weights.hdf5")
        ids = batch_to_char_ids(SENTENCES)
        with torch.no_grad():
            for got, want in zip(loaded(ids)[0], bilm(ids)[0]):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    def test_own_format_round_trip(self, published: tuple[Path, Path], tmp_path: Path) -> None:
        bilm = BiLM.from_allennlp(*published)
        bilm.save(tmp_path)
        loaded = BiLM.load(tmp_path)
        assert loaded.options == bilm.options
        for (key, got), want in zip(loaded.state_dict().items(), bilm.state_dict().values()):
            assert torch.equal(got, want), key

    def test_missing_dataset_is_named(self, published: tuple[Path, Path], tmp_path: Path) -> None:
        broken = tmp_path / "weights.hdf5"
        with h5py.File(published[1], "r") as src, h5py.File(broken, "w") as dst:
            for name in _all_datasets(src):
                if name != "CNN_high_1/W_carry":
                    dst[name] = src[name][()]
        with pytest.raises(NerError, match=r"weights.hdf5: dataset 'CNN_high_1/W_carry' missing"):
            BiLM.from_allennlp(published[0], broken)

    def test_options_that_do_not_fit_the_weights(self, published: tuple[Path, Path], tmp_path: Path) -> None:
        options = json.loads(published[0].read_text())
        options["lstm"]["dim"] = D + 1
        wrong = tmp_path / "options.json"
        wrong.write_text(json.dumps(options))
        with pytest.raises(
            NerError,
            match=r"dataset 'RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0' has shape "
            r"\(12, 40\), the options file implies \(12, 44\)",
        ):
            BiLM.from_allennlp(wrong, published[1])

    def test_options_without_skip_connections(self, tmp_path: Path) -> None:
        path = tmp_path / "options.json"
        path.write_text(json.dumps({"lstm": {"use_skip_connections": False}, "char_cnn": {}}))
        with pytest.raises(NerError, match="lstm.use_skip_connections: expected true"):
            BiLM.from_allennlp(path, tmp_path / "weights.hdf5")


def test_committed_reuters_bilm_is_what_the_elmo_config_uses_and_round_trips(tmp_path: Path) -> None:
    from ner.config import load_config

    repo = Path(__file__).resolve().parents[1]
    config = load_config(repo / "configs" / "conll2003_elmo.yaml")
    assert Path(config.model.elmo.pretrained_dir) == repo / "models" / "lm_reuters"
    bilm = BiLM.load(config.model.elmo.pretrained_dir)
    assert bilm.options.projection_dim == 128 and bilm.options.num_layers == 2
    bilm.to_allennlp(tmp_path)
    loaded = BiLM.from_allennlp(tmp_path / "options.json", tmp_path / "weights.hdf5")
    ids = batch_to_char_ids(SENTENCES)
    with torch.no_grad():
        for got, want in zip(loaded(ids)[0], bilm(ids)[0]):  # the layout has one bias per cell: sums may round
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_committed_adapted_bilm_is_the_reuters_architecture_with_other_weights() -> None:
    models = Path(__file__).resolve().parents[1] / "models"
    reuters, adapted = BiLM.load(models / "lm_reuters"), BiLM.load(models / "lm_reuters_conll2003")
    assert adapted.options == reuters.options
    changed = [
        name for name, weight in adapted.state_dict().items() if not torch.equal(weight, reuters.state_dict()[name])
    ]
    assert len(changed) == len(reuters.state_dict())  # fine-tuning moved every tensor
