"""Language-model pretraining: a smoke run that learns, resume equivalence, output folder, config errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from ner.elmo import BiLM, batch_to_char_ids
from ner.elmo.pretrain import load_lm_config, pretrain_lm
from ner.errors import ConfigError, NerError

SMOKE_CONFIG = {
    "data": {"train": "text.txt", "heldout_sentences": 40, "min_count": 2},
    "model": {"filters": [[1, 8], [2, 8], [3, 16]], "char_dim": 8, "highway_layers": 1, "projection_dim": 16,
              "lstm_dim": 32, "num_layers": 2, "dropout": 0.0, "softmax_cutoffs": [12]},
    "training": {"epochs": 3, "batch_tokens": 300, "bptt": 6, "lr": 0.01, "eval_every": 4,
                 "checkpoint_every": 5, "progress": False, "seed": 3},
    "output_dir": "run",
}


def _write_text(path: Path, sentences: int = 400) -> None:
    """Sentences from a small grammar: predictable enough for a tiny LM to learn in a few steps."""
    rng = random.Random(0)
    subjects, verbs = ["Reuters", "The company", "Analysts", "The bank"], ["said", "expects", "reported"]
    lines = []
    for _ in range(sentences):
        amount = rng.choice(["1.5", "20", "300", "4,000"])
        month = rng.choice(["March", "April"])
        lines.append(f"{rng.choice(subjects)} {rng.choice(verbs)} {amount} mln dlrs in {month} .")
    path.write_text("\n".join(lines) + "\n")


def _config(tmp_path: Path, **training: object) -> Path:
    config = json.loads(json.dumps(SMOKE_CONFIG))
    config["training"].update(training)
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    if not (tmp_path / "text.txt").exists():
        _write_text(tmp_path / "text.txt")
    return path


def test_smoke_run_lowers_heldout_perplexity_and_writes_a_loadable_bilm(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    final = pretrain_lm(_config(tmp_path))
    run = tmp_path / "run"
    history = json.loads((run / "metrics.json").read_text())["history"]
    first, last = history[0], history[-1]
    assert last == final and last["step"] > first["step"]
    for direction in ("forward", "backward"):
        assert last[f"heldout_ppl_{direction}"] < 0.5 * first[f"heldout_ppl_{direction}"]
        assert last[f"heldout_ppl_{direction}"] < 4.0  # 17 words; the grammar leaves ~2-4 choices per slot
    assert (run / "vocab.txt").read_text().split("\n")[:3] == ["<S>", "</S>", "<UNK>"]
    bilm = BiLM.load(run)
    assert bilm.options.lstm_dim == 32 and bilm.options.filters == [(1, 8), (2, 8), (3, 16)]
    bilm.to_allennlp(tmp_path / "exported")
    exported = BiLM.from_allennlp(tmp_path / "exported" / "options.json", tmp_path / "exported" / "weights.hdf5")
    ids = batch_to_char_ids([["The", "bank", "said"], ["Analysts", "expects", "20", "mln", "."]])
    with torch.no_grad():
        for got, want in zip(exported(ids)[0], bilm(ids)[0]):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    exported.to_allennlp(tmp_path / "again")  # file -> model -> file is bit-exact
    first_file, again_file = tmp_path / "exported" / "weights.hdf5", tmp_path / "again" / "weights.hdf5"
    with h5py.File(first_file) as first, h5py.File(again_file) as again:
        names: list[str] = []
        first.visit(lambda name: names.append(name) if isinstance(first[name], h5py.Dataset) else None)
        assert len(names) == 1 + 3 * 2 + 4 + 2 + 4 * 3  # char_embed, CNN, 1 highway, CNN_proj, 4 LSTM cells
        for name in names:
            assert (first[name][()] == again[name][()]).all(), name


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    pretrain_lm(_config(whole, max_steps=7, eval_every=100))
    pretrain_lm(_config(parts, max_steps=3, eval_every=100))
    pretrain_lm(_config(parts, eval_every=100), ["training.max_steps=7"], resume=True)
    a = torch.load(whole / "run" / "bilm.pt", weights_only=True)
    b = torch.load(parts / "run" / "bilm.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(NerError, match="already holds a pretraining run; pass --resume"):
        pretrain_lm(_config(parts))


def test_config_errors_are_collected(tmp_path: Path) -> None:
    path = _config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["training"]["lr_rate"] = 0.1
    raw["model"]["softmax_cutoffs"] = [20, 10]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_lm_config(path, ["training.bptt=-1"])
    message = str(error.value)
    assert "lm.yaml: unknown key 'training.lr_rate'" in message
    assert "model.softmax_cutoffs: expected increasing positive integers" in message
    assert "training.bptt: expected an integer >= 0" in message


def test_overrides_and_paths(tmp_path: Path) -> None:
    config = load_lm_config(_config(tmp_path), ["model.lstm_dim=64", "output_dir=elsewhere"])
    assert config.model.lstm_dim == 64
    assert config.data.train == str(tmp_path / "text.txt")
    assert config.output_dir == str(Path.cwd() / "elsewhere")


def test_reuters_config_is_valid() -> None:
    config = load_lm_config(Path(__file__).parents[1] / "configs" / "lm_reuters.yaml")
    assert config.data.train.endswith("shared/data/unlabeled/reuters21578.txt")
