"""Multi-seed runs: RUN/seed-N, summary.json against a hand computation, exact per-seed resume, side by side
equal to one after another, evaluate and load of such a run."""

from __future__ import annotations

import json
import os
import stat
import statistics
from pathlib import Path

import pytest
import torch

from ner import seeds as seeds_module
from ner.checkpoints import METRICS_FILE, METRICS_LOG
from ner.cli import main
from ner.config import load_config
from ner.errors import NerError
from ner.evaluation import evaluate_run
from ner.model import Tagger
from ner.seeds import evaluate_seeds, resume_seeds, summarize, train_seeds
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
FAST = [
    "training.epochs=2",
    "model.lstm.hidden_size=16",
    "model.embeddings.dim=16",
    "output.progress=false",
    "training.threads=1",
]


class Interrupt(Exception):
    """Stands for the process being killed after an epoch's checkpoint."""


def fake_seed(run: Path, seed: int, dev: dict[str, float], test: dict[str, float], minutes: list[float]) -> None:
    folder = run / f"seed-{seed}"
    folder.mkdir(parents=True)

    def report(f1s: dict[str, float]) -> dict:
        return {"default": {name: {"precision": 0, "recall": 0, "f1": f1, "support": 1} for name, f1 in f1s.items()}}

    (folder / METRICS_FILE).write_text(
        json.dumps({"best_epoch": 1, "epochs": len(minutes), "dev": report(dev), "test": report(test)})
    )
    (folder / METRICS_LOG).write_text(
        "".join(json.dumps({"epoch": i + 1, "seconds": 60 * m}) + "\n" for i, m in enumerate(minutes))
    )


def test_summary_mean_and_sample_std_match_a_hand_computation(tmp_path: Path) -> None:
    fake_seed(tmp_path, 1, {"micro": 0.90, "PER": 0.95}, {"micro": 0.86, "PER": 0.91}, [1.0, 2.0])
    fake_seed(tmp_path, 2, {"micro": 0.92, "PER": 0.93}, {"micro": 0.88, "PER": 0.90}, [1.5])
    fake_seed(tmp_path, 3, {"micro": 0.91, "PER": 0.97}, {"micro": 0.84, "PER": 0.95}, [2.0])
    summary = summarize(tmp_path, [1, 2, 3])
    assert summary["test"]["micro"]["mean"] == pytest.approx((0.86 + 0.88 + 0.84) / 3)
    assert summary["test"]["micro"]["std"] == pytest.approx(((0.0**2 + 0.02**2 + 0.02**2) / 2) ** 0.5)
    assert summary["dev"]["PER"]["std"] == pytest.approx(statistics.stdev([0.95, 0.93, 0.97]))
    assert summary["best_seed"] == 2
    assert summary["runs"]["1"]["train_minutes"] == 3.0
    one = summarize(tmp_path, [1])
    assert one["test"]["micro"] == {"mean": 0.86, "std": None}


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "run"
    config = load_config(SAMPLE, [*FAST, f"output.dir={out}", "training.seeds=[1, 2]"])
    train_seeds(config, out)
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)


def epochs_without_timing(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / METRICS_LOG).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "sentences_per_second")} for r in records]


def test_each_seed_is_a_run_of_its_own_and_the_summary_reads_them(two_seeds: Path) -> None:
    summary = json.loads((two_seeds / "summary.json").read_text())
    assert summary["seeds"] == [1, 2]
    for seed in (1, 2):
        metrics = json.loads((two_seeds / f"seed-{seed}" / METRICS_FILE).read_text())
        assert summary["runs"][str(seed)]["test"]["micro"] == metrics["test"]["default"]["micro"]["f1"]
        assert load_config(two_seeds / f"seed-{seed}" / "config.yaml").training.seed == seed
    assert any(
        not torch.equal(a, b)
        for a, b in zip(weights(two_seeds / "seed-1").values(), weights(two_seeds / "seed-2").values())
    )


def test_an_interrupted_seed_resumes_as_if_never_stopped(
    two_seeds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = load_config(SAMPLE, [*FAST, f"output.dir={out}", "training.seeds=[1, 2]"])
    real_train = seeds_module.train

    def train_then_die_in_seed_2(seed_config, run_dir, **kwargs):
        def stop(epoch: int) -> None:
            if seed_config.training.seed == 2 and epoch == 1:
                raise Interrupt

        return real_train(seed_config, run_dir, on_epoch_end=stop)

    monkeypatch.setattr(seeds_module, "train", train_then_die_in_seed_2)
    with pytest.raises(Interrupt):
        train_seeds(config, out)
    monkeypatch.undo()
    assert not (out / "seed-2" / METRICS_FILE).exists() and not (out / "summary.json").exists()
    finished_before = (out / "seed-1" / METRICS_FILE).stat().st_mtime_ns
    resume_seeds(out)
    assert (out / "seed-1" / METRICS_FILE).stat().st_mtime_ns == finished_before  # not retrained
    for seed in (1, 2):
        assert epochs_without_timing(out / f"seed-{seed}") == epochs_without_timing(two_seeds / f"seed-{seed}")
        for (name, a), b in zip(weights(out / f"seed-{seed}").items(), weights(two_seeds / f"seed-{seed}").values()):
            assert torch.equal(a, b), name


def test_seeds_side_by_side_equal_seeds_one_after_another(two_seeds: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", str(SAMPLE), *FAST, f"output.dir={out}", "--seeds", "1,2", "--parallel", "2"]) == 0
    for seed in (1, 2):
        assert epochs_without_timing(out / f"seed-{seed}") == epochs_without_timing(two_seeds / f"seed-{seed}")
        for (name, a), b in zip(weights(out / f"seed-{seed}").items(), weights(two_seeds / f"seed-{seed}").values()):
            assert torch.equal(a, b), name


def test_load_and_tag_use_the_seed_best_on_dev_and_say_so(two_seeds: Path, capsys) -> None:
    summary = json.loads((two_seeds / "summary.json").read_text())
    best = summary["best_seed"]
    tagger = Tagger.load(two_seeds)
    assert torch.equal(tagger.model.emissions.weight, weights(two_seeds / f"seed-{best}")["emissions.weight"])
    assert main(["tag", str(two_seeds), str(REPO / "data/sample/raw.txt"), "-o", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # written through, not replaced by a file (as root it could be)
    assert f"using seed-{best}, the best of 2 finished seeds on dev" in capsys.readouterr().err


def test_evaluate_scores_every_seed_and_their_mean(two_seeds: Path) -> None:
    data = REPO / "data" / "sample" / "test.txt"
    result = evaluate_seeds(two_seeds, data)
    single = [evaluate_run(two_seeds / f"seed-{seed}", data)["default"]["micro"]["f1"] for seed in (1, 2)]
    assert [result["seeds"][s]["micro"] for s in ("1", "2")] == single
    assert result["mean"]["micro"]["mean"] == pytest.approx(sum(single) / 2)
    assert json.loads((two_seeds / "evaluate" / "test" / "summary.json").read_text()) == result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1,x"], "error: --seeds: expected comma-separated integers such as 1,2,3, got '1,x'"),
        (["--parallel", "2"], "error: --parallel: runs seeds side by side; give --seeds 1,2,3 (or training.seeds) too"),
        (
            ["data.dev=null", "training.train_with_dev=true"],
            "error: command line: training.train_with_dev: trains on the dev corpus too: set data.dev",
        ),
        (
            ["training.seeds=[1, 1]"],
            "error: command line: training.seeds: expected distinct integers in [0, 9223372036854775807], got [1, 1]",
        ),
    ],
)
def test_bad_seed_options_are_one_line_errors(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["train", str(SAMPLE), f"output.dir={tmp_path / 'run'}", *args]) == 2
    assert capsys.readouterr().err.strip() == message.format(config=SAMPLE)
    assert not (tmp_path / "run").exists()


def test_a_non_empty_folder_is_not_reused_for_new_seeds(two_seeds: Path) -> None:
    config = load_config(SAMPLE, [*FAST, f"output.dir={two_seeds}", "training.seeds=[3]"])
    with pytest.raises(NerError, match="not empty; continue its seeds with --resume"):
        train_seeds(config, two_seeds)


def test_training_with_dev_equals_training_on_the_files_joined_resumes_exactly_and_tags_with_the_lowest_seed(
    tmp_path: Path, capsys
) -> None:
    sample = REPO / "data" / "sample"
    joined = tmp_path / "train_dev.txt"  # dev after train, starting a document of its own
    train_text, dev_text = (sample / "train.txt").read_text(), (sample / "dev.txt").read_text()
    joined.write_text(train_text.rstrip("\n") + "\n\n-DOCSTART- -X- -X- O\n\n" + dev_text)
    with_dev, on_joined = tmp_path / "with_dev", tmp_path / "joined"
    train_seeds(
        load_config(SAMPLE, [*FAST, f"output.dir={with_dev}", "training.seeds=[1, 2]", "training.train_with_dev=true"]),
        with_dev,
    )
    train_from_config(SAMPLE, [*FAST, f"output.dir={on_joined}", f"data.train={joined}", "data.dev=null"])
    assert epochs_without_timing(with_dev / "seed-1") == epochs_without_timing(on_joined)
    for (name, a), b in zip(weights(with_dev / "seed-1").items(), weights(on_joined).values()):
        assert torch.equal(a, b), name
    metrics = json.loads((with_dev / "seed-1" / METRICS_FILE).read_text())
    assert "dev" not in metrics and metrics["test"] == json.loads((on_joined / METRICS_FILE).read_text())["test"]
    losses = [record["loss"] for record in epochs_without_timing(on_joined)]
    assert metrics["best_epoch"] == 1 + losses.index(min(losses))  # no dev: the epoch of lowest loss is kept
    summary = json.loads((with_dev / "summary.json").read_text())
    assert "dev" not in summary and "best_seed" not in summary and set(summary["runs"]) == {"1", "2"}
    capsys.readouterr()
    tagger = Tagger.load(with_dev)
    assert torch.equal(tagger.model.emissions.weight, weights(with_dev / "seed-1")["emissions.weight"])
    assert "using seed-1, the lowest of 2 finished seeds (no dev scores)" in capsys.readouterr().err
    resumed = tmp_path / "resumed"

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_from_config(SAMPLE, [*FAST, f"output.dir={resumed}", "training.train_with_dev=true"], on_epoch_end=stop)
    train_from_config(None, resume=resumed)
    assert epochs_without_timing(resumed) == epochs_without_timing(with_dev / "seed-1")
    for (name, a), b in zip(weights(resumed).items(), weights(with_dev / "seed-1").values()):
        assert torch.equal(a, b), name
