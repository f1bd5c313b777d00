"""Vocabularies (ids, min count, lowercasing, JSON round trip) and padded, length-grouped, seeded batches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from ner.data.batching import Batcher
from ner.data.conll import Sentence
from ner.data.vocab import Vocabulary, build_vocabularies, load_vocabularies, save_vocabularies
from ner.errors import DataError


def sentence(text: str) -> Sentence:
    """``"Ana/B-PER went/O"`` -> a Sentence."""
    tokens, tags = zip(*(item.rsplit("/", 1) for item in text.split()))
    return Sentence(list(tokens), list(tags), [(t, g) for t, g in zip(tokens, tags)], 1)


SENTENCES = [
    sentence("The/O cat/O saw/O Ana/B-PER ./O"),
    sentence("the/O Cat/O ran/O to/O Rome/B-LOC and/O the/O cat/O slept/O ./O"),
    sentence("Ana/B-PER Lee/I-PER ./O"),
]


class TestVocabulary:
    def test_ids_ordered_by_frequency_then_alphabet(self) -> None:
        words, chars, tags = build_vocabularies(SENTENCES)
        assert words.items[:8] == ["<pad>", "<unk>", ".", "Ana", "cat", "the", "Cat", "Lee"]
        assert tags.items == ["O", "B-LOC", "B-PER", "I-PER"]
        assert chars.items[:6] == ["<pad>", "<unk>", "a", "e", "t", "n"]  # 8, 7, 7, 4 times
        assert (words.id("<pad>"), words.id("never-seen")) == (0, 1)

    def test_min_count_and_lowercasing(self) -> None:
        words, chars, _ = build_vocabularies(SENTENCES, min_count=2, lowercase=True)
        assert words.items == ["<pad>", "<unk>", ".", "cat", "the", "ana"]  # 3, 3, 3, 2 times
        assert words.encode(["THE", "Cat", "Rome"]) == [4, 3, 1]
        assert "C" in chars and "T" in chars  # characters keep their case for the character CNN

    def test_tag_vocabulary_of_a_scheme_holds_every_tag_of_the_seen_types(self) -> None:
        _, _, tags = build_vocabularies(SENTENCES, scheme="BIOES")
        assert tags.items == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]

    def test_tag_vocabulary_has_no_padding_or_unknown(self) -> None:
        _, _, tags = build_vocabularies(SENTENCES)
        assert tags.encode(["O", "I-PER"]) == [0, 3]
        assert tags.decode([2, 0]) == ["B-PER", "O"]
        with pytest.raises(KeyError):
            tags.encode(["B-ORG"])

    def test_json_round_trip(self, tmp_path: Path) -> None:
        vocabularies = build_vocabularies(SENTENCES, lowercase=True)
        save_vocabularies(tmp_path, *vocabularies)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["chars.json", "tags.json", "words.json"]
        loaded = load_vocabularies(tmp_path)
        assert loaded == vocabularies
        assert loaded[0].lowercase and loaded[0].encode(["ANA"]) == vocabularies[0].encode(["ana"])

    def test_missing_vocabulary_file(self, tmp_path: Path) -> None:
        with pytest.raises(DataError) as caught:
            load_vocabularies(tmp_path)
        assert str(caught.value) == f"{tmp_path / 'words.json'}: no such file: expected a vocabulary JSON file"

    def test_malformed_vocabulary_file(self, tmp_path: Path) -> None:
        path = tmp_path / "words.json"
        path.write_text('{"items": [\n  "a",\n}')
        with pytest.raises(DataError) as caught:
            Vocabulary.load(path)
        assert str(caught.value) == (
            f"{path}:3: not a vocabulary JSON file: Expecting value: line 3 column 1 (char 19)"
        )
        path.write_text('{"items": ["a"]}')
        with pytest.raises(DataError) as caught:
            Vocabulary.load(path)
        assert str(caught.value) == f"{path}: expected a JSON object with keys items, lowercase, pad, unk"


def make_batcher(count: int = 40, **options: object) -> tuple[Batcher, list[list[str]], list[list[str]]]:
    """A batcher over ``count`` random sentences of 1 to 9 tokens, with their tokens and tags."""
    rng = random.Random(7)
    words = ["a", "bb", "Ccc", "dddd", "eeeeeee"]
    token_seqs = [[rng.choice(words) for _ in range(rng.randint(1, 9))] for _ in range(count)]
    tag_seqs = [[rng.choice(["O", "S-PER", "S-LOC"]) for _ in tokens] for tokens in token_seqs]
    vocabulary = Vocabulary(["a", "bb", "Ccc"])  # dddd and eeeeeee are unknown words
    chars = Vocabulary(["a", "b", "c", "d"])  # C and e are unknown characters
    tags = Vocabulary(["O", "S-LOC", "S-PER"], pad=False, unk=False)
    return Batcher(token_seqs, vocabulary, chars, tag_seqs, tags, **options), token_seqs, tag_seqs


class TestBatcher:
    def test_batch_contents_against_a_per_token_reference(self) -> None:
        batcher, token_seqs, tag_seqs = make_batcher()
        batch = batcher.batch([3, 0, 5])
        sentences = [token_seqs[i] for i in (3, 0, 5)]
        longest = max(len(tokens) for tokens in sentences)
        widest = max(len(word) for tokens in sentences for word in tokens)
        assert batch.word_ids.shape == (3, longest) and batch.char_ids.shape == (3, longest, widest)
        assert batch.mask.dtype == torch.bool and batch.word_ids.dtype == batch.char_ids.dtype == torch.long
        words, chars = Vocabulary(["a", "bb", "Ccc"]), Vocabulary(["a", "b", "c", "d"])
        tags = Vocabulary(["O", "S-LOC", "S-PER"], pad=False, unk=False)
        for row, index in enumerate((3, 0, 5)):
            tokens = token_seqs[index]
            for position in range(longest):
                on_token = position < len(tokens)
                assert bool(batch.mask[row, position]) == on_token
                word = tokens[position] if on_token else ""
                assert int(batch.word_ids[row, position]) == (words.id(word) if on_token else 0)
                expected_chars = chars.encode(word) + [0] * (widest - len(word))
                assert batch.char_ids[row, position].tolist() == expected_chars
                expected_tag = tags.id(tag_seqs[index][position]) if on_token else 0
                assert int(batch.tag_ids[row, position]) == expected_tag
        assert batch.indices == [3, 0, 5] and batch.tokens == sentences
        assert batch.lengths.tolist() == [len(tokens) for tokens in sentences]

    def test_sentence_rows_are_slices_of_one_flat_table(self) -> None:
        batcher, token_seqs, _ = make_batcher()
        assert batcher.rows.shape == (sum(len(tokens) for tokens in token_seqs),)  # one tensor, not one per sentence
        for index, tokens in enumerate(token_seqs):
            assert [batcher.distinct[row - 1] for row in batcher.sentence_rows(index).tolist()] == tokens

    def test_character_width_has_a_minimum_and_a_maximum(self) -> None:
        batcher, token_seqs, _ = make_batcher(min_word_length=12)
        assert batcher.batch([0]).char_ids.shape[2] == 12
        capped, _, _ = make_batcher(max_word_length=3)
        index = next(i for i, tokens in enumerate(token_seqs) if "eeeeeee" in tokens)
        assert capped.batch([index]).char_ids.shape[2] == 3

    def test_every_sentence_once_grouped_by_length(self) -> None:
        batcher, token_seqs, _ = make_batcher()
        batches = list(batcher.batches(8))
        assert sorted(i for batch in batches for i in batch.indices) == list(range(40))
        lengths = [len(token_seqs[i]) for batch in batches for i in batch.indices]
        assert lengths == sorted(lengths)  # unshuffled: shortest first
        for batch in make_batcher()[0].batches(8, shuffle=True, seed=3):
            spread = [len(token_seqs[i]) for i in batch.indices]
            assert max(spread) - min(spread) <= 2  # 40 sentences over 9 lengths: a batch spans few lengths

    def test_character_ids_past_int16_are_kept(self) -> None:
        alphabet = [chr(0x4E00 + i) for i in range(40_000)]  # more characters than int16 holds
        word = alphabet[-1] + alphabet[0]
        batcher = Batcher([[word, "a"]], Vocabulary([word]), Vocabulary(alphabet))
        assert batcher.char_table.dtype == torch.int32
        assert batcher.batch([0]).char_ids[0, 0].tolist() == Vocabulary(alphabet).encode(word)
        assert make_batcher()[0].char_table.dtype == torch.int16

    def test_batches_keep_a_padded_token_budget(self) -> None:
        batcher, token_seqs, _ = make_batcher()
        batches = list(batcher.batches(8, max_tokens=20))
        assert sorted(i for batch in batches for i in batch.indices) == list(range(40))
        assert all(batch.mask.numel() <= 20 and len(batch.indices) <= 8 for batch in batches)
        lengths = [len(token_seqs[i]) for batch in batches for i in batch.indices]
        assert lengths == sorted(lengths)
        assert [b.indices for b in batcher.batches(8, max_tokens=10**6)] == [b.indices for b in batcher.batches(8)]
        with pytest.raises(ValueError, match="sentences and max_tokens go with neither documents nor shuffle"):
            next(batcher.batches(8, shuffle=True, max_tokens=20))

    def test_document_batches_hold_whole_documents(self) -> None:
        batcher = make_batcher()[0]
        documents = [range(0, 3), range(3, 15), range(15, 16), range(16, 30), range(30, 40)]  # 3, 12, 1, 14, 10
        for shuffle, seed in ((False, 0), (True, 1), (True, 2)):
            groups = [batch.indices for batch in batcher.batches(12, shuffle=shuffle, seed=seed, documents=documents)]
            assert sorted(i for group in groups for i in group) == list(range(40))
            for group in groups:
                members = [d for d in documents if d.start in group]
                assert sorted(group) == [i for d in members for i in d]  # whole documents only
                assert len(group) <= 12 or len(members) == 1  # a longer document comes alone
        unshuffled = [batch.indices for batch in batcher.batches(12, documents=documents)]
        assert unshuffled == [
            list(range(0, 3)),
            list(range(3, 15)),
            list(range(15, 16)),
            list(range(16, 30)),
            list(range(30, 40)),
        ]
        assert [b.indices for b in batcher.batches(16, documents=documents)][0] == list(range(0, 16))
        shuffled = [
            [b.indices for b in batcher.batches(12, shuffle=True, seed=s, documents=documents)] for s in (1, 1, 2)
        ]
        assert shuffled[0] == shuffled[1] != shuffled[2]

    def test_shuffled_order_is_fixed_by_the_seed_alone(self) -> None:
        batcher = make_batcher()[0]
        python_state, torch_state = random.getstate(), torch.get_rng_state()
        first = [batch.indices for batch in batcher.batches(8, shuffle=True, seed=1)]
        random.seed(99)
        torch.manual_seed(99)
        assert [batch.indices for batch in batcher.batches(8, shuffle=True, seed=1)] == first
        assert [batch.indices for batch in batcher.batches(8, shuffle=True, seed=2)] != first
        random.setstate(python_state)
        torch.set_rng_state(torch_state)

    def test_batching_leaves_global_random_state_alone(self) -> None:
        batcher = make_batcher()[0]
        python_state, torch_state = random.getstate(), torch.get_rng_state()
        list(batcher.batches(8, shuffle=True, seed=5))
        assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)

    def test_untagged_sentences(self) -> None:
        words, chars = Vocabulary(["a"]), Vocabulary(["a"])
        batch = next(Batcher([["a", "b"]], words, chars).batches(4))
        assert batch.tag_ids is None and batch.word_ids.tolist() == [[2, 1]]

    def test_bad_arguments(self) -> None:
        words, chars, tags = Vocabulary(["a"]), Vocabulary(["a"]), Vocabulary(["O"], pad=False, unk=False)
        with pytest.raises(ValueError, match=r"^sentence 1 is empty: every sentence needs a token$"):
            Batcher([["a"], []], words, chars)
        with pytest.raises(ValueError, match=r"^sentence 0: 2 tokens, 1 tags$"):
            Batcher([["a", "a"]], words, chars, [["O"]], tags)
        with pytest.raises(ValueError, match=r"^give both tag_seqs and the tag vocabulary, or neither$"):
            Batcher([["a"]], words, chars, [["O"]])


def test_casing_classes_of_known_tokens() -> None:
    from ner.data.features import CASING_CLASSES, casing_class

    examples = {
        "paris": "lower",
        "EU": "upper",
        "Paris": "title",
        "McDonald": "mixed",
        "1996": "numeric",
        "3-1": "has_digit",
        "U.S.": "upper",
        "--": "punct",
        ",": "punct",
        "": "other",
        "é": "lower",
    }
    assert {token: CASING_CLASSES[casing_class(token)] for token in examples} == examples


def test_document_casing_classes_come_from_the_other_informative_occurrences() -> None:
    from ner.data.features import DOCUMENT_CASING_CLASSES, document_casing, documents_casing

    document = [
        ["EU", "REJECTS", "GERMAN", "CALL"],  # all capitals: says nothing about its words
        ["The", "German", "call", "was", "rejected", "by", "the", "EU"],  # first tokens say nothing
        ["Germany", "and", "German", "firms", "said", "the", "Call", "call"],
    ]
    names = [[DOCUMENT_CASING_CLASSES[c] for c in sentence] for sentence in document_casing(document)]
    assert names == [
        ["capitalized", "unseen", "capitalized", "both"],  # "the EU", "German", "call" and "Call"
        ["lower", "capitalized", "both", "unseen", "unseen", "unseen", "lower", "unseen"],
        ["unseen", "unseen", "capitalized", "unseen", "unseen", "lower", "lower", "both"],
    ]
    # a document is a run of equal ids: split in two, the headline loses what the later sentences said
    split = documents_casing(document, [0, 1, 1])
    assert split[0] == [1, 1, 1, 1] and split[1:] == document_casing(document[1:])
    with pytest.raises(ValueError, match=r"^document_ids: expected one per sentence \(3\), got 2$"):
        documents_casing(document, [0, 1])


def test_rows_are_distinct_word_and_feature_pairs_when_features_are_given() -> None:
    words, chars, _ = build_vocabularies(SENTENCES)
    batcher = Batcher([["a", "b", "a"], ["a"]], words, chars, token_features=[[1, 2, 3], [1]])
    assert batcher.keys == [("a", 1), ("b", 2), ("a", 3)]
    assert batcher.distinct == ["a", "b", "a"]
    assert batcher.row_features.tolist() == [0, 1, 2, 3]
    batch = batcher.batch([0, 1])
    assert batch.rows.tolist() == [[1, 2, 3], [1, 0, 0]]
    assert batcher.row_features[batch.rows].tolist() == [[1, 2, 3], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"^token_features: expected one feature per token of every sentence$"):
        Batcher([["a", "b"]], words, chars, token_features=[[1]])
