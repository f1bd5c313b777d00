"""`ner report`: the entity-type confusion against hand counts and seqeval, the page of a run and of a
multi-seed run, a missing split."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

if os.environ.get("CI") != "true":  # CI installs the extra: there a missing one fails
    pytest.importorskip("matplotlib", reason="the report extra is not installed (pip install -e '.[report]')")

from test_training import FAST

from ner.cli import main
from ner.report import NONE, Confusion, analyse, write_report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sample"
    assert main(["train", str(REPO / "configs" / "sample.yaml"), *FAST, f"output.dir={out}"]) == 0
    return out


def test_confusion_counts_by_hand() -> None:
    confusion = Confusion()
    gold = [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 5, 7), ("MISC", 8, 9)]
    predicted = [("PER", 0, 2), ("ORG", 3, 4), ("ORG", 5, 6), ("LOC", 10, 11)]
    confusion.add(gold, predicted)
    confusion.add([("PER", 0, 1)], [])
    assert confusion.counts == {
        ("PER", "PER"): 1,
        ("LOC", "ORG"): 1,
        ("ORG", NONE): 1,
        ("MISC", NONE): 1,
        ("PER", NONE): 1,
        (NONE, "ORG"): 1,
        (NONE, "LOC"): 1,
    }
    assert confusion.summary() == {"correct": 1, "wrong type": 1, "missed": 3, "of which boundary": 1, "spurious": 2}
    assert confusion.types() == ["LOC", "MISC", "ORG", "PER"]


def test_confusion_agrees_with_seqeval(run_dir: Path) -> None:
    result = analyse(run_dir, "sample")
    assert set(result.splits) == {"dev", "test"} and result.skipped == {}
    assert [record["epoch"] for record in result.epochs] == [1, 2, 3, 4]
    for split in result.splits.values():
        micro, counts = split.scores["default"]["micro"], split.confusion.counts
        gold = sum(n for (g, _), n in counts.items() if g != NONE)
        predicted = sum(n for (_, p), n in counts.items() if p != NONE)
        correct = split.confusion.summary()["correct"]
        assert gold == micro["support"]
        assert correct == round(micro["recall"] * gold) == round(micro["precision"] * predicted)
        for kind in split.confusion.types():
            row = split.scores["default"][kind]
            assert sum(n for (g, _), n in counts.items() if g == kind) == row["support"]
            assert counts[kind, kind] == round(row["recall"] * row["support"])


def test_report_of_a_run(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    # curves; then for dev and test: per-type bars and confusion
    assert len(re.findall(r'<img alt="" src="data:image/png;base64,[A-Za-z0-9+/=]+">', page)) == 5
    assert "<h2>Dev <small>" in page and "<h2>Test <small>" in page and 'class="skipped"' not in page


def test_a_missing_split_is_skipped_and_said(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report.html"))
    config = copy / "config.yaml"
    missing = tmp_path / "gone" / "test.txt"
    config.write_text(re.sub(r"(?m)^  test: .*$", f"  test: {missing}", config.read_text()), encoding="utf-8")
    assert main(["report", str(copy), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"moved: test skipped: {missing}: no such file" in page and "<h2>Test" not in page
    assert f"{copy}: test skipped: {missing}: no such file" in capsys.readouterr().err
    assert not (copy / "report.html").exists()


def test_a_run_trained_on_dev_is_not_scored_on_it(run_dir: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "with_dev"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report.html"))
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("train_with_dev: false", "train_with_dev: true"), encoding="utf-8")
    result = analyse(copy, "with_dev")
    assert set(result.splits) == {"test"} and result.skipped == {"dev": "trained on (training.train_with_dev)"}
    assert f"{copy}: dev skipped: trained on (training.train_with_dev)" in capsys.readouterr().err


def test_report_of_a_multi_seed_run(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for seed in (1, 2):
        shutil.copytree(run_dir, tmp_path / "seeds" / f"seed-{seed}")
    (tmp_path / "seeds" / "seed-3").mkdir()  # still starting
    page = write_report(tmp_path / "seeds").read_text(encoding="utf-8")
    assert f"{tmp_path / 'seeds'}: seed 3 skipped: no model.pt yet" in capsys.readouterr().err
    assert page.count("<td>seed 1</td>") == 1 and page.count("<td>seed 2</td>") == 1 and "seed 3" not in page
    summary = re.search(r"<tr><th>mean ± std</th><td></td><td>([\d.]+) ± 0.00</td><td>([\d.]+) ± 0.00</td></tr>", page)
    assert summary is not None
    single = analyse(run_dir, "sample")
    assert float(summary[1]) == round(100 * single.splits["dev"].scores["default"]["micro"]["f1"], 2)
    # curves, then per split: F1 bars by seed and one confusion per seed
    assert page.count('<img alt=""') == 1 + 2 * (1 + 2)


def test_report_of_no_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'nothing'}: no such run directory (expected the output.dir of `ner train`)\n"
    )
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'no' / 'r.html'}: cannot write there: {tmp_path / 'no'} is no such folder\n"
    )
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'empty'}: no metrics.jsonl (expected a run directory written by `ner train`)\n"
    )
