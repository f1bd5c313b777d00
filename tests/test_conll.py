"""CoNLL reader and writer: one tiny inline file per edge case, exact error messages, byte-identical round trips."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ner.data.conll import Corpus, read_conll, write_conll, write_predictions
from ner.data.schemes import convert_tags, tags_to_spans
from ner.errors import DataError

SAMPLE = Path(__file__).parents[1] / "data" / "sample"

CONLL2003_LIKE = (
    "Mira NNP I-NP I-PER\nVoss NNP I-NP I-PER\nvisited VBD I-VP O\nOstrel NNP I-NP I-LOC\n. . O O\n"
    "\n"
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "Talo NNP I-NP I-PER\nBrenn NNP I-NP B-PER\nwon VBD I-VP O\n"
    "\n"
    "-DOCSTART- -X- O O"
)
FIXTURES = {
    "conll2003_like": CONLL2003_LIKE,
    "tabs": "New York\tI-LOC\nis\tO\n\nbig\tO\n",
    "docstart_without_blank_lines": "-DOCSTART- O\nA B-ORG\n-DOCSTART- O\nB B-ORG\nC I-ORG\n",
    "blank_lines_doubled_and_whitespace": "\n\nA O\n  \n\t\nB B-PER\n\n\n",
    "crlf": "A B-PER\r\nB O\r\n\r\nC O\r\n",
    "utf8": "Zoë B-PER\nvisited O\nKöln B-LOC\n\n東京 B-LOC\n",
    "one_column": "Hello\nworld\n\nagain",
}


def write(tmp_path: Path, text: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def read_text(tmp_path: Path, text: str, **options: object) -> Corpus:
    return read_conll(write(tmp_path, text), **options)


class TestReading:
    def test_default_columns_docstarts_and_missing_final_newline(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, CONLL2003_LIKE)
        assert [s.tokens for s in corpus.sentences] == [
            ["Mira", "Voss", "visited", "Ostrel", "."],
            ["Talo", "Brenn", "won"],
        ]
        assert [s.tags for s in corpus.sentences] == [["I-PER", "I-PER", "O", "I-LOC", "O"], ["I-PER", "B-PER", "O"]]
        assert [s.line for s in corpus.sentences] == [1, 9]
        assert corpus.sentences[1].columns[1] == ("Brenn", "NNP", "I-NP", "B-PER")
        assert (corpus.scheme, corpus.num_columns, corpus.separator, corpus.final_newline) == ("IOB1", 4, " ", False)

    def test_configurable_columns(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, CONLL2003_LIKE, token_column=1, tag_column=2)
        assert corpus.sentences[0].tokens == ["NNP", "NNP", "VBD", "NNP", "."]
        assert corpus.sentences[0].tags == ["I-NP", "I-NP", "I-VP", "I-NP", "O"]

    def test_tab_separated_tokens_may_hold_spaces(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["tabs"])
        assert corpus.separator == "\t"
        assert [s.tokens for s in corpus.sentences] == [["New York", "is"], ["big"]]
        assert corpus.scheme == "IOB1"

    def test_docstart_anywhere_ends_a_sentence(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["docstart_without_blank_lines"])
        assert [(s.tokens, s.line) for s in corpus.sentences] == [(["A"], 2), (["B", "C"], 4)]

    def test_blank_and_whitespace_only_lines_break_sentences(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["blank_lines_doubled_and_whitespace"])
        assert [(s.tokens, s.line) for s in corpus.sentences] == [(["A"], 3), (["B"], 6)]

    def test_crlf_line_endings(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["crlf"])
        assert [s.tags for s in corpus.sentences] == [["B-PER", "O"], ["O"]]
        assert corpus.newline == "\r\n"

    def test_utf8_and_byte_order_mark(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, "\ufeff" + FIXTURES["utf8"])
        assert [s.tokens for s in corpus.sentences] == [["Zoë", "visited", "Köln"], ["東京"]]
        assert corpus.scheme == "IOB2"

    def test_one_column_file_is_untagged(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["one_column"])
        assert [(s.tokens, s.tags) for s in corpus.sentences] == [(["Hello", "world"], []), (["again"], [])]
        assert (corpus.scheme, corpus.tag_column) == (None, None)

    def test_explicit_scheme_is_validated(self, tmp_path: Path) -> None:
        with pytest.raises(DataError) as caught:
            read_text(tmp_path, "A B-PER\nB I-PER\n", scheme="BIOES")
        assert str(caught.value) == (
            f"{tmp_path / 'data.txt'}:2: 'I-PER' ends the sentence in BIOES: expected E- or S- "
            "(the configured scheme of this file)"
        )


class TestWriting:
    @pytest.mark.parametrize("name", sorted(FIXTURES))
    def test_round_trip_is_byte_identical(self, tmp_path: Path, name: str) -> None:
        source = write(tmp_path, FIXTURES[name])
        corpus = read_conll(source)
        write_conll(corpus, tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_bytes() == source.read_bytes()
        again = read_conll(tmp_path / "out.txt")
        assert [(s.tokens, s.tags, s.columns, s.line) for s in again.sentences] == [
            (s.tokens, s.tags, s.columns, s.line) for s in corpus.sentences
        ]

    def test_new_tags_are_written_in_the_files_scheme(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, CONLL2003_LIKE)
        predicted = [["S-PER", "O", "O", "S-LOC", "O"], ["B-PER", "E-PER", "O"]]
        write_conll(corpus.with_tags(predicted, "BIOES"), tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == (
            CONLL2003_LIKE.replace("Voss NNP I-NP I-PER", "Voss NNP I-NP O").replace(
                "Brenn NNP I-NP B-PER", "Brenn NNP I-NP I-PER"
            )
        )

    def test_untagged_corpus_gains_a_tag_column(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["one_column"])
        write_conll(corpus.with_tags([["B-ORG", "I-ORG"], ["O"]], "IOB2"), tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == "Hello B-ORG\nworld I-ORG\n\nagain O"

    def test_corpus_built_without_layout_gets_blank_lines_between_sentences(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, FIXTURES["conll2003_like"])
        bare = Corpus(corpus.sentences, "memory", "IOB1", token_column=0, tag_column=3)
        write_conll(bare, tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == (
            "Mira NNP I-NP I-PER\nVoss NNP I-NP I-PER\nvisited VBD I-VP O\nOstrel NNP I-NP I-LOC\n. . O O\n"
            "\nTalo NNP I-NP I-PER\nBrenn NNP I-NP B-PER\nwon VBD I-VP O\n"
        )

    def test_write_predictions(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, "A B-PER\nB O\n\nC O\n")
        write_predictions(tmp_path / "pred.txt", corpus.sentences, [["B-PER", "B-LOC"], ["O"]])
        assert (tmp_path / "pred.txt").read_text() == "A B-PER B-PER\nB O B-LOC\n\nC O O\n"

    def test_failed_write_leaves_no_file(self, tmp_path: Path) -> None:
        corpus = read_text(tmp_path, "A B-PER\n")
        corpus.sentences[0].tags = []  # inconsistent: the writer fails half-way
        with pytest.raises(IndexError):
            write_conll(corpus, tmp_path / "out.txt")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]


class TestBadInput:
    def expect(self, path: Path, message: str, **options: object) -> None:
        with pytest.raises(DataError) as caught:
            read_conll(path, **options)
        assert str(caught.value) == message

    def test_missing_file(self, tmp_path: Path) -> None:
        self.expect(tmp_path / "nope.txt", f"{tmp_path / 'nope.txt'}: no such file: expected a CoNLL file")

    def test_directory(self, tmp_path: Path) -> None:
        self.expect(tmp_path, f"{tmp_path}: is a directory: expected a CoNLL file")

    def test_empty_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, "")
        self.expect(path, f"{path}: empty file: expected CoNLL lines (one token per line)")

    def test_no_sentences(self, tmp_path: Path) -> None:
        path = write(tmp_path, "\n-DOCSTART- -X- O O\n  \n")
        self.expect(path, f"{path}: no sentences, only blank lines and -DOCSTART- markers: expected CoNLL lines")

    def test_column_count_differs(self, tmp_path: Path) -> None:
        path = write(tmp_path, "-DOCSTART- -X- -X- O\n\nA NNP B-PER\nB NNP O\n\nC O\n")
        self.expect(path, f"{path}:6: expected 3 columns (as on line 3), got 2")

    @pytest.mark.parametrize("tag", ["X-PER", "B-", "I-", "PER", "o"])
    def test_ill_formed_tag(self, tmp_path: Path, tag: str) -> None:
        path = write(tmp_path, f"A O\n\nB O\nC {tag}\n")
        self.expect(
            path, f"{path}:4: ill-formed tag {tag!r}: expected 'O' or B-, I-, E-, S- followed by a type (e.g. B-PER)"
        )

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        path = write(tmp_path, b"A O\nB\xe9 O\n")
        self.expect(
            path, f"{path}:2: invalid UTF-8 byte 0xe9 at byte offset 5 (byte 2 of the line): expected UTF-8 text"
        )

    def test_binary_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, b"A O\n\x00\x01\x02")
        self.expect(
            path, f"{path}:2: looks like a binary file (NUL byte at byte offset 4, column 1): expected UTF-8 text"
        )

    def test_sequence_breaking_the_detected_scheme(self, tmp_path: Path) -> None:
        path = write(tmp_path, "A I-PER\n\nB O\nC B-LOC\n")
        self.expect(
            path,
            f"{path}:4: 'B-LOC' after 'O': B- only starts an entity directly after one of the same type in IOB1 "
            "(the detected scheme of this file)",
        )

    def test_column_out_of_range(self, tmp_path: Path) -> None:
        path = write(tmp_path, "\nA B O\n")
        self.expect(path, f"{path}:2: tag_column 3 does not exist: the file has 3 columns", tag_column=3)


class TestSample:
    """The bundled sample corpus: generated by make_sample.py, IOB1 in the CoNLL-2003 layout."""

    def test_committed_files_equal_the_generators_output(self) -> None:
        spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        generated = module.generate()
        assert sorted(generated) == ["dev.txt", "raw.txt", "test.txt", "train.txt"]
        for name, text in generated.items():
            assert (SAMPLE / name).read_text(encoding="utf-8") == text, name

    def test_sample_reads_as_iob1_with_all_types_and_b_tags(self) -> None:
        counts = {}
        for split in ("train", "dev", "test"):
            corpus = read_conll(SAMPLE / f"{split}.txt")
            assert (corpus.scheme, corpus.num_columns) == ("IOB1", 4)
            assert any(len(gap) > 1 for gap in corpus.gaps), "expected -DOCSTART- lines"
            tags = {tag for s in corpus.sentences for tag in s.tags}
            assert {"I-PER", "I-LOC", "I-ORG", "I-MISC", "B-PER"} <= tags
            iob2 = [convert_tags(s.tags, "IOB1", "IOB2") for s in corpus.sentences]
            assert [tags_to_spans(t) for t in iob2] == [tags_to_spans(s.tags) for s in corpus.sentences]
            counts[split] = len(corpus.sentences)
        assert counts == {"train": 400, "dev": 100, "test": 100}


def test_document_ids_start_a_new_document_at_each_docstart_marker(tmp_path: Path) -> None:
    corpus = read_conll(write(tmp_path, "-DOCSTART- O\n\nA O\n\nB O\n\n-DOCSTART- O\n\nC O\n-DOCSTART- O\nD O\n"))
    assert [s.tokens for s in corpus.sentences] == [["A"], ["B"], ["C"], ["D"]]
    assert corpus.document_ids() == [0, 0, 1, 2]
    assert read_conll(write(tmp_path, "A O\n\nB O\n")).document_ids() == [0, 0]  # no markers: one document
