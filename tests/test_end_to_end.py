"""Training runs end to end that tests/test_training.py does not cover: a tagger with ELMo features from a tiny
biLM (its layers cached on disk), SGD with learning-rate decay and early stopping, and a Hugging Face dataset as
the source of the splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_sources import TRAIN_ROWS, VALIDATION_ROWS, offline, save_dataset  # noqa: F401  (offline: a fixture)

from ner.checkpoints import METRICS_FILE, METRICS_LOG
from ner.data.conll import read_conll
from ner.elmo import BiLM, BiLMOptions, batch_to_char_ids
from ner.evaluation import evaluate_run
from ner.model import Tagger
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
TINY = ["model.lstm.hidden_size=16", "model.embeddings.dim=16", "model.char_cnn.dim=8", "output.progress=false"]


def epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]


ELMO_VARIANTS = {
    "input-mix": [],
    "input-and-output-mix": ["model.elmo.output_mix=true"],
    "top-layer-fine-tuned": ["model.elmo.fine_tune_top=true"],
}


@pytest.fixture(scope="module", params=list(ELMO_VARIANTS))
def elmo_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The sample corpus, 2 epochs, with a tiny biLM whose layers training caches (in float32); its features at
    the BiLSTM's input only, at its output as well (``model.elmo.output_mix``), or with the biLM's top layer
    trained from the cached layer below it (``model.elmo.fine_tune_top``)."""
    folder = tmp_path_factory.mktemp("elmo")
    torch.manual_seed(0)
    options = BiLMOptions(filters=[(1, 4), (2, 4), (3, 8)], char_dim=4, highway_layers=1, projection_dim=6, lstm_dim=8)
    BiLM(options).save(folder / "bilm")
    train_from_config(
        SAMPLE,
        [
            *TINY,
            "training.epochs=2",
            f"model.elmo.pretrained_dir={folder / 'bilm'}",
            "model.elmo.cache_dtype=float32",
            *ELMO_VARIANTS[request.param],
            f"output.dir={folder / 'run'}",
        ],
    )
    return folder / "run"


def test_elmo_tagger_trains_on_its_cache_and_scores_the_same_without_it(elmo_run: Path) -> None:
    cached = sorted(path.suffix for path in (elmo_run / "elmo_cache").iterdir())
    assert cached.count(".npy") == 2 and cached.count(".json") == 2  # train and dev layers, each with its index
    metrics = json.loads((elmo_run / METRICS_FILE).read_text())
    best = next(record for record in epochs(elmo_run) if record["epoch"] == metrics["best_epoch"])
    # Dev was scored on the cached layers in training, and by the loaded model running its biLM at the end.
    assert metrics["dev"]["default"]["micro"]["f1"] == pytest.approx(best["dev_f1"], abs=1e-12)
    dev = REPO / "data" / "sample" / "dev.txt"
    assert evaluate_run(elmo_run, dev)["default"] == metrics["dev"]["default"]


def test_loaded_elmo_tagger_tags_the_same_from_the_cache_and_from_the_bilm(elmo_run: Path, tmp_path: Path) -> None:
    tagger = Tagger.load(elmo_run)
    assert tagger.model.elmo is not None and not tagger.model.elmo.fine_tune
    sentences = [s.tokens for s in read_conll(REPO / "data" / "sample" / "test.txt").sentences[:40]]
    cached = tagger.encode(sentences, elmo_cache_dir=tmp_path / "cache")
    assert cached.elmo_cache is not None
    from_cache = tagger.inference_emissions(cached)
    from_bilm = tagger.inference_emissions(tagger.encode(sentences))
    for (batch, emissions), (other, expected) in zip(from_cache, from_bilm):
        assert batch.indices == other.indices
        torch.testing.assert_close(emissions, expected, rtol=1e-4, atol=1e-5)
    assert tagger.predict_encoded(cached) == tagger.predict_encoded(tagger.encode(sentences))
    text = "Maren Quist scored twice for Versk United in Oslo.\nEU rejects German call."
    for entity in tagger.tag(text):
        assert text[entity["start"] : entity["end"]] == entity["text"] and 0.0 < entity["score"] <= 1.0


def test_fine_tuning_the_top_layer_trains_it_and_nothing_else_of_the_bilm(elmo_run: Path) -> None:
    tuned = Tagger.load(elmo_run).model.elmo.bilm.state_dict()
    pretrained = BiLM.load(elmo_run.parent / "bilm").state_dict()
    top = ("forward_layers.1.", "backward_layers.1.")
    changed = {name for name in pretrained if not torch.equal(pretrained[name], tuned[name])}
    if Tagger.load(elmo_run).config.model.elmo.fine_tune_top:
        assert changed == {name for name in pretrained if name.startswith(top) and tuned[name].dtype.is_floating_point}
    else:
        assert changed == set()


def test_the_output_mix_is_trained_and_joins_the_bilstm_states(elmo_run: Path) -> None:
    tagger = Tagger.load(elmo_run)
    model, elmo = tagger.model, tagger.model.elmo
    if not tagger.config.model.elmo.output_mix:
        assert elmo.output_scalar_mix is None and model.emissions.in_features == 2 * 16
        return
    assert model.emissions.in_features == 2 * 16 + elmo.output_dim
    mixes = elmo.scalar_mix, elmo.output_scalar_mix
    assert elmo.output_scalar_mix.gamma.item() != 1.0  # trained, and apart from the input mix
    assert not torch.equal(mixes[0].scalar_parameters, mixes[1].scalar_parameters)
    sentences = [s.tokens for s in read_conll(REPO / "data" / "sample" / "test.txt").sentences[:8]]
    item = next(tagger.encode(sentences).batches(8, whole_documents=False))
    model.eval()
    with torch.no_grad():
        states = tagger.states(item)  # (B, T, 2H + 2P)
        layers, mask = elmo.layers(batch_to_char_ids(item.batch.tokens))
        inputs, _ = elmo.from_layers(layers, mask)
        outputs, _ = elmo.from_layers(layers, mask, output=True)
        batch = item.batch
        bilstm = model.states(batch.word_ids, item.casing_ids, batch.char_ids, batch.mask, inputs)  # (B, T, 2H)
    assert states.shape[-1] == 2 * 16 + elmo.output_dim
    assert torch.equal(states[..., : 2 * 16], bilstm)
    assert torch.equal(states[..., 2 * 16 :], outputs)


def test_sgd_decays_its_rate_and_stops_early(tmp_path: Path) -> None:
    """A rate too small to change a prediction: dev F1 never improves on epoch 1, so patience 2 ends the run
    after epoch 3 of 10, and the rate of each epoch is lr / (1 + lr_decay * (epoch - 1))."""
    lr, decay = 1e-9, 0.5
    metrics = train_from_config(
        SAMPLE,
        [
            *TINY,
            "training.epochs=10",
            "training.optimizer=sgd",
            f"training.lr={lr:.10f}",
            f"training.lr_decay={decay}",
            "training.patience=2",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    records = epochs(tmp_path / "run")
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert metrics["best_epoch"] == 1 and metrics["epochs"] == 3
    assert len({record["dev_f1"] for record in records}) == 1
    # Each record holds the rate after the epoch's scheduler step: the next epoch's.
    assert [record["lr"] for record in records] == pytest.approx([lr / (1 + decay * epoch) for epoch in (1, 2, 3)])


@pytest.mark.usefixtures("offline")
def test_a_hugging_face_dataset_trains_like_conll_files(tmp_path: Path) -> None:
    dataset = save_dataset(
        tmp_path / "toy", {"train": TRAIN_ROWS, "validation": VALIDATION_ROWS, "test": VALIDATION_ROWS}
    )
    run = tmp_path / "run"
    metrics = train_from_config(
        SAMPLE,
        [
            *TINY,
            "training.epochs=2",
            "data.source=hf",
            f"data.hf_dataset={dataset}",
            "data.train=train",
            "data.dev=validation",
            "data.test=test",
            f"output.dir={run}",
        ],
    )
    # Validation and test hold one sentence with a LOC and a PER: that is what was scored.
    for split in ("dev", "test"):
        assert {kind: row["support"] for kind, row in metrics[split]["default"].items()} == {
            "micro": 2,
            "LOC": 1,
            "PER": 1,
        }
    tagger = Tagger.load(run)
    assert tagger.data_scheme == "IOB2" and set(tagger.tags.items) >= {"O", "B-PER", "E-PER", "S-LOC"}
    [tags] = tagger.predict([["Ana", "Lee", "lives", "in", "Rome"]])
    assert len(tags) == 5 and all(tag == "O" or tag[:2] in ("B-", "I-") for tag in tags)  # the dataset's IOB2
