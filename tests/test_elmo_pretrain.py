"""Language-model pretraining: a smoke run that learns, resume equivalence, output folder, config errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from ner.elmo import BiLM, batch_to_char_ids, pretrain
from ner.elmo.pretrain import LMTrainingConfig, _lr_factor, load_lm_config, pretrain_lm, read_sentences
from ner.errors import ConfigError, NerError

SMOKE_CONFIG = {
    "data": {"train": "text.txt", "heldout_sentences": 40, "min_count": 2},
    "model": {
        "filters": [[1, 8], [2, 8], [3, 16]],
        "char_dim": 8,
        "highway_layers": 1,
        "projection_dim": 16,
        "lstm_dim": 32,
        "num_layers": 2,
        "dropout": 0.0,
        "softmax_cutoffs": [12],
    },
    "training": {
        "epochs": 3,
        "batch_tokens": 300,
        "bptt": 6,
        "lr": 0.01,
        "eval_every": 4,
        "checkpoint_every": 5,
        "progress": False,
        "seed": 3,
    },
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


def test_run_killed_mid_schedule_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    schedule = {"max_steps": 8, "eval_every": 100, "lr_schedule": "linear", "softmax_warmup_steps": 3}
    pretrain_lm(_config(whole, **schedule))
    write_checkpoint = pretrain._save_checkpoint

    def write_then_die(*args: object) -> None:
        write_checkpoint(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "_save_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain_lm(_config(parts, **schedule))  # dies right after the checkpoint at step 5
    monkeypatch.undo()
    assert torch.load(parts / "run" / "checkpoint.pt", weights_only=True)["state"]["step"] == 5
    pretrain_lm(_config(parts, **schedule), resume=True)
    a = torch.load(whole / "run" / "bilm.pt", weights_only=True)
    b = torch.load(parts / "run" / "bilm.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_init_from_starts_at_another_runs_bilm_and_warmup_freezes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # command-line paths resolve against the working directory
    pretrain_lm(_config(tmp_path, max_steps=6, eval_every=100))
    start = torch.load(tmp_path / "run" / "bilm.pt", weights_only=True)
    frozen = pretrain_lm(
        _config(tmp_path, max_steps=4, eval_every=100),
        ["output_dir=frozen", "training.init_from=run", "training.softmax_warmup_steps=4"],
    )
    for key, value in torch.load(Path("frozen") / "bilm.pt", weights_only=True).items():
        assert torch.equal(value, start[key]), key  # only the new softmax was trained
    fresh = pretrain_lm(_config(tmp_path, max_steps=4, eval_every=100), ["output_dir=fresh"])
    assert frozen["heldout_ppl_forward"] < fresh["heldout_ppl_forward"]  # 6 + 4 steps of biLM training beat 4
    with pytest.raises(
        ConfigError,
        match=r"training.init_from: .*run holds a biLM of another architecture than "
        r"the model section",
    ):
        pretrain_lm(_config(tmp_path, max_steps=1), ["output_dir=other", "training.init_from=run", "model.lstm_dim=48"])


def test_conll_text_reads_first_column_without_docstart(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\n\n-DOCSTART- -X- -X- O\n\nBlackburn NNP B-NP B-PER\n"
    )
    assert read_sentences(path, "conll") == [["EU", "rejects"], ["Peter"], ["Blackburn"]]
    (tmp_path / "plain.txt").write_text("EU rejects\n\nPeter\n")
    assert read_sentences(tmp_path / "plain.txt") == [["EU", "rejects"], ["Peter"]]


def test_adaptation_config_is_valid_and_matches_the_reuters_architecture() -> None:
    configs = Path(__file__).parents[1] / "configs"
    adapt = load_lm_config(configs / "lm_conll2003_adapt.yaml")
    assert adapt.data.format == "conll" and adapt.data.train.endswith("data/conll2003/train.txt")
    assert adapt.model.bilm_options() == load_lm_config(configs / "lm_reuters.yaml").model.bilm_options()
    assert Path(adapt.training.init_from) == configs.parent / "models" / "lm_reuters"


def test_linear_schedule_decays_to_zero_at_the_last_step() -> None:
    linear = LMTrainingConfig(lr_schedule="linear")
    assert [_lr_factor(linear, step, 4) for step in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [_lr_factor(LMTrainingConfig(), step, 4) for step in range(4)] == [1.0] * 4


def test_config_errors_are_collected(tmp_path: Path) -> None:
    path = _config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["training"]["lr_rate"] = 0.1
    raw["model"]["softmax_cutoffs"] = [20, 10]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_lm_config(path, ["training.bptt=-1", "model.lstm_dim=16"])
    message = str(error.value)
    assert "lm.yaml: unknown key 'training.lr_rate'" in message
    assert "model.softmax_cutoffs: expected increasing positive integers" in message
    assert "training.bptt: expected an integer >= 0" in message
    assert "model.projection_dim: expected an integer from 1 to model.lstm_dim - 1 = 15, got 16" in message


def test_overrides_and_paths(tmp_path: Path) -> None:
    config = load_lm_config(_config(tmp_path), ["model.lstm_dim=64", "output_dir=elsewhere"])
    assert config.model.lstm_dim == 64
    assert config.data.train == str(tmp_path / "text.txt")
    assert config.output_dir == str(Path.cwd() / "elsewhere")


def test_reuters_config_is_valid() -> None:
    config = load_lm_config(Path(__file__).parents[1] / "configs" / "lm_reuters.yaml")
    assert config.data.train.endswith("shared/data/unlabeled/reuters21578.txt")
