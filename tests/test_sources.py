"""Corpora from CoNLL files or a local Hugging Face dataset (offline), and the unseen-tag check."""

from __future__ import annotations

from pathlib import Path

import datasets
import huggingface_hub
import pytest

from ner.config import DataConfig
from ner.data.conll import read_conll, write_conll
from ner.data.sources import check_unseen_tags, load_corpus, load_splits
from ner.errors import ConfigError, DataError

IOB2_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode: the variables, and the constants the libraries derived from them when first imported."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def save_dataset(folder: Path, splits: dict[str, dict[str, list]], tags_feature: object = None) -> str:
    """Save a DatasetDict of token/tag rows with ``save_to_disk``; returns the folder."""
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": tags_feature or datasets.Sequence(datasets.ClassLabel(names=IOB2_NAMES)),
        }
    )
    dataset = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"id": [str(i) for i in range(len(rows["tokens"]))], **rows}, features)
            for name, rows in splits.items()
        }
    )
    dataset.save_to_disk(str(folder))
    return str(folder)


TRAIN_ROWS = {
    "tokens": [["-DOCSTART-"], ["Ana", "Lee", "lives", "in", "Rome"], [], ["Bo", "left"]],
    "ner_tags": [[0], [1, 2, 0, 0, 3], [], [1, 0]],
}
VALIDATION_ROWS = {"tokens": [["Rome", "Ana"]], "ner_tags": [[3, 1]]}


@pytest.fixture
def local_dataset(tmp_path: Path) -> str:
    return save_dataset(tmp_path / "toy", {"train": TRAIN_ROWS, "validation": VALIDATION_ROWS, "test": VALIDATION_ROWS})


def hf_config(dataset: str, **fields: object) -> DataConfig:
    return DataConfig(source="hf", hf_dataset=dataset, **fields)


class TestHuggingFace:
    def test_local_dataset_with_class_label_tags(self, local_dataset: str) -> None:
        corpus = load_corpus(hf_config(local_dataset), "train")
        assert [(s.tokens, s.tags, s.line) for s in corpus.sentences] == [
            (["Ana", "Lee", "lives", "in", "Rome"], ["B-PER", "I-PER", "O", "O", "B-LOC"], 1),
            (["Bo", "left"], ["B-PER", "O"], 3),
        ]  # the -DOCSTART- row and the empty row are not sentences; line is the row number
        assert (corpus.path, corpus.scheme) == (f"{local_dataset}[train]", "IOB2")
        assert [s.tokens for s in load_corpus(hf_config(local_dataset), "dev").sentences] == [["Rome", "Ana"]]

    def test_split_and_field_names_from_the_config(self, tmp_path: Path) -> None:
        rows = {"words": [["Ana"]], "labels": [[1]]}
        features = datasets.Features(
            {
                "words": datasets.Sequence(datasets.Value("string")),
                "labels": datasets.Sequence(datasets.ClassLabel(names=IOB2_NAMES)),
            }
        )
        dataset = datasets.DatasetDict({"heldout": datasets.Dataset.from_dict(rows, features=features)})
        dataset.save_to_disk(str(tmp_path / "d"))
        config = hf_config(str(tmp_path / "d"), dev="heldout", hf_tokens_field="words", hf_tags_field="labels")
        assert [(s.tokens, s.tags) for s in load_corpus(config, "dev").sentences] == [(["Ana"], ["B-PER"])]

    def test_string_tags(self, tmp_path: Path) -> None:
        rows = {"tokens": [["Ana", "Lee"]], "ner_tags": [["I-PER", "I-PER"]]}
        folder = save_dataset(tmp_path / "d", {"train": rows}, datasets.Sequence(datasets.Value("string")))
        corpus = load_corpus(hf_config(folder), "train")
        assert (corpus.sentences[0].tags, corpus.scheme) == (["I-PER", "I-PER"], "IOB1")

    def test_written_as_conll_and_read_back(self, local_dataset: str, tmp_path: Path) -> None:
        corpus = load_corpus(hf_config(local_dataset), "train")
        write_conll(corpus, tmp_path / "train.txt")
        expected = "Ana B-PER\nLee I-PER\nlives O\nin O\nRome B-LOC\n\nBo B-PER\nleft O\n"
        assert (tmp_path / "train.txt").read_text() == expected
        again = read_conll(tmp_path / "train.txt")
        assert [(s.tokens, s.tags) for s in again.sentences] == [(s.tokens, s.tags) for s in corpus.sentences]

    def test_missing_split(self, local_dataset: str) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(local_dataset, test="gold"), "test")
        assert str(caught.value) == (
            f"{local_dataset}: no split 'gold' (data.test): expected one of train, validation, test"
        )

    def test_missing_field(self, local_dataset: str) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(local_dataset, hf_tags_field="labels"), "train")
        assert str(caught.value) == (
            f"{local_dataset}[train]: no column 'labels' (data.hf_tags_field): expected one of id, tokens, ner_tags"
        )

    def test_tags_field_of_the_wrong_type(self, local_dataset: str) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(local_dataset, hf_tags_field="id"), "train")
        assert str(caught.value) == (
            f"{local_dataset}[train]: column 'id' (data.hf_tags_field) is Value('string'): "
            "expected a sequence of ClassLabel or of strings"
        )

    def test_ill_formed_class_label_name(self, tmp_path: Path) -> None:
        feature = datasets.Sequence(datasets.ClassLabel(names=["O", "X-PER"]))
        rows = {"tokens": [["a"], ["b", "c"]], "ner_tags": [[0], [0, 1]]}
        folder = save_dataset(tmp_path / "d", {"train": rows}, feature)
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(folder), "train")
        assert str(caught.value) == (
            f"{folder}[train]:1: ill-formed tag 'X-PER': expected 'O' or B-, I-, E-, S- followed by a type"
        )

    def test_tag_id_without_a_name(self, tmp_path: Path) -> None:
        folder = save_dataset(tmp_path / "d", {"train": {"tokens": [["a", "b"]], "ner_tags": [[0, -1]]}})
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(folder), "train")
        assert str(caught.value) == f"{folder}[train]:0: tag id -1 has no ClassLabel name: expected 0 to 4"

    def test_sequence_breaking_the_configured_scheme_names_the_row(self, local_dataset: str) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(local_dataset, scheme="BIOES"), "train")
        assert str(caught.value) == (
            f"{local_dataset}[train]:1: 'O' after 'I-PER': expected I-PER or E-PER in BIOES "
            "(the configured scheme of this file)"
        )

    def test_not_a_saved_dataset(self, tmp_path: Path) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config(str(tmp_path)), "train")
        assert str(caught.value).startswith(f"{tmp_path}: not a datasets save_to_disk folder: ")

    def test_hub_name_offline(self, tmp_path: Path) -> None:
        with pytest.raises(DataError) as caught:
            load_corpus(hf_config("nobody/no-such-dataset"), "train", cache_dir=str(tmp_path / "cache"))
        assert str(caught.value) == (
            "data.hf_dataset: cannot load 'nobody/no-such-dataset' split 'train' (data.train): "
            "Couldn't reach 'nobody/no-such-dataset' on the Hub (OfflineModeIsEnabled)"
        )
        assert not (tmp_path / "cache").exists()


def write_files(tmp_path: Path, **texts: str) -> dict[str, str]:
    paths = {}
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text)
        paths[name] = str(tmp_path / f"{name}.txt")
    return paths


class TestFilesAndUnseenTags:
    def test_columns_and_scheme_from_the_config(self, tmp_path: Path) -> None:
        paths = write_files(tmp_path, train="x Ana B-PER\nx Lee E-PER\n")
        corpus = load_corpus(DataConfig(train=paths["train"], token_column=1, tag_column=2), "train")
        assert (corpus.sentences[0].tokens, corpus.scheme) == (["Ana", "Lee"], "BIOES")

    def test_unset_file(self) -> None:
        with pytest.raises(ConfigError, match=r"^data\.dev: not set: expected the path of a CoNLL file$"):
            load_corpus(DataConfig(train="train.txt"), "dev")

    def test_unseen_type_in_dev_names_file_line_and_tag(self, tmp_path: Path) -> None:
        paths = write_files(tmp_path, train="Ana I-PER\n", dev="Ana I-PER\n\nin O\nRome I-LOC\n")
        with pytest.raises(DataError) as caught:
            load_splits(DataConfig(train=paths["train"], dev=paths["dev"]))
        assert str(caught.value) == (
            f"{paths['dev']}:4: tag 'I-LOC' has entity type 'LOC', unseen in training: expected one of the "
            "training types (PER); set data.unseen_tags: O to map unseen types to O"
        )

    def test_unseen_types_mapped_to_o(self, tmp_path: Path) -> None:
        paths = write_files(tmp_path, train="Ana I-PER\n", test="Ana I-PER\nRome I-LOC\nCity I-LOC\n\nBo I-PER\n")
        corpora = load_splits(DataConfig(train=paths["train"], test=paths["test"], unseen_tags="O"))
        assert sorted(corpora) == ["test", "train"]
        assert [s.tags for s in corpora["test"].sentences] == [["I-PER", "O", "O"], ["I-PER"]]

    def test_known_type_with_a_new_prefix_is_not_unseen(self, tmp_path: Path) -> None:
        corpus = read_conll(write_files(tmp_path, dev="Ana I-PER\nBo B-PER\n")["dev"])
        assert check_unseen_tags(corpus, {"O", "I-PER"}).sentences[0].tags == ["I-PER", "B-PER"]

    def test_unseen_tag_in_a_dataset_names_the_row(self, local_dataset: str) -> None:
        corpus = load_corpus(hf_config(local_dataset), "train")
        with pytest.raises(DataError) as caught:
            check_unseen_tags(corpus, ["O", "B-PER", "I-PER"])
        assert str(caught.value).startswith(f"{local_dataset}[train]:1: tag 'B-LOC' has entity type 'LOC'")
