"""Raw text -> sentences -> tokens with offsets (ner.data.text)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from segtok.segmenter import split_single

from ner.data.text import (
    _CHAR_MAP,
    _LINE_BREAK,
    _SENTENCE_END,
    _TOKEN_FORMS,
    MAX_TOKENS,
    Token,
    _segtok_spans,
    _tokens,
    cut_point,
    split_sentences,
    tokenize,
)


def forms(text: str) -> list[list[str]]:
    return [[token.text for token in sentence] for sentence in split_sentences(text)]


def surfaces(text: str) -> list[str]:
    return [text[token.start : token.end] for sentence in split_sentences(text) for token in sentence]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don't know.", ["I", "do", "n't", "know", "."]),
        ("The U.S. company's shares fell.", ["The", "U.S.", "company", "'s", "shares", "fell", "."]),
        ("AL-AIN, United Arab Emirates 1996-12-06", ["AL-AIN", ",", "United", "Arab", "Emirates", "1996-12-06"]),
        ('He said "we won" (again).', ["He", "said", '"', "we", "won", '"', "(", "again", ")", "."]),
        ("He said ``we won''.", ["He", "said", '"', "we", "won", '"', "."]),
        (
            "Profit of C$5.3 million, up 1/2 point.",
            ["Profit", "of", "C$", "5.3", "million", ",", "up", "1/2", "point", "."],
        ),
        ("MIAMI 14 4 .778 - Tel +44 171", ["MIAMI", "14", "4", ".778", "-", "Tel", "+44", "171"]),
        (
            "GUNMEN KILL FOUR IN S.AFRICA'S ZULU PROVINCE",
            ["GUNMEN", "KILL", "FOUR", "IN", "S.AFRICA", "'S", "ZULU", "PROVINCE"],
        ),
        ("the S&P index and U.S.-led talks", ["the", "S&P", "index", "and", "U.S.-led", "talks"]),
        ("players' ball -- the end...", ["players", "'", "ball", "--", "the", "end", "..."]),
    ],
)
def test_conll_style_tokens(text: str, expected: list[str]) -> None:
    assert [token for sentence in forms(text) for token in sentence] == expected


def test_normalised_forms_keep_surface_offsets() -> None:
    text = "\u201cIt\u2019s Smith\u2019s\u201d \u2014 he said\u2026"
    tokens = [token for sentence in split_sentences(text) for token in sentence]
    assert [token.text for token in tokens] == ['"', "It", "'s", "Smith", "'s", '"', "--", "he", "said", "..."]
    assert [text[token.start : token.end] for token in tokens] == [
        "\u201c",
        "It",
        "\u2019s",
        "Smith",
        "\u2019s",
        "\u201d",
        "\u2014",
        "he",
        "said",
        "\u2026",
    ]


def test_sentences_and_initials() -> None:
    assert forms("He won. She lost! Did they? Yes") == [
        ["He", "won", "."],
        ["She", "lost", "!"],
        ["Did", "they", "?"],
        ["Yes"],
    ]
    # A sentence never ends after an initial or a dotted acronym followed by a name.
    assert forms("R. Samuels c M. Waugh b Gillespie 7") == [
        ["R.", "Samuels", "c", "M.", "Waugh", "b", "Gillespie", "7"]
    ]


def test_line_breaks_end_sentences_and_offsets_ignore_line_endings() -> None:
    text = "John lives\r\nin Paris\rnow\nand\u2028then"
    sentences = split_sentences(text)
    assert [[text[t.start : t.end] for t in s] for s in sentences] == [
        ["John", "lives"],
        ["in", "Paris"],
        ["now"],
        ["and"],
        ["then"],
    ]
    assert sentences[1][0] == Token("in", 12, 14)


def test_tabs_control_characters_emoji_and_other_scripts() -> None:
    text = (
        "Tab\there\x00nul\x1bx \U0001f44d\U0001f3fd ok \U0001f468\u200d\U0001f469\u200d\U0001f467 "
        "\u041c\u043e\u0441\u043a\u0432\u0430, \u6771\u4eac e\u0301cole"
    )
    assert surfaces(text) == [
        "Tab",
        "here",
        "nul",
        "x",
        "\U0001f44d\U0001f3fd",
        "ok",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u041c\u043e\u0441\u043a\u0432\u0430",
        ",",
        "\u6771\u4eac",
        "e\u0301cole",
    ]


@pytest.mark.parametrize("text", ["", " ", "\t\n\r\n", "\x00\x01\x7f", "\u2028\u3000"])
def test_blank_text_has_no_sentences(text: str) -> None:
    assert split_sentences(text) == []


def test_long_line_without_sentence_break_is_cut_into_bounded_sentences() -> None:
    text = "word, " * 30_000  # no sentence terminal
    sentences = split_sentences(text)
    assert max(len(sentence) for sentence in sentences) == MAX_TOKENS
    tokens = [token for sentence in sentences for token in sentence]
    assert len(tokens) == 60_000
    assert all(text[token.start : token.end] == token.text for token in tokens)
    # Cuts fall between whitespace-separated tokens, never between "word" and its comma.
    assert all(sentence[-1].text == "," for sentence in sentences)


def test_long_token_is_cut_into_pieces() -> None:
    text = "a" + "x" * 1000 + " b"
    tokens = [token for sentence in split_sentences(text, max_token_chars=300) for token in sentence]
    assert [(token.start, token.end) for token in tokens] == [
        (0, 300),
        (300, 600),
        (600, 900),
        (900, 1001),
        (1002, 1003),
    ]


def test_small_bounds() -> None:
    text = "one two three four five six seven"
    assert forms(text) == [text.split()]
    assert forms_bounded(text, max_chars=12) == [["one", "two"], ["three", "four"], ["five", "six"], ["seven"]]
    assert forms_bounded(text, max_tokens=3) == [["one", "two", "three"], ["four", "five", "six"], ["seven"]]


def forms_bounded(text: str, **bounds: int) -> list[list[str]]:
    return [[token.text for token in sentence] for sentence in split_sentences(text, **bounds)]


def test_tokenize_counts_offsets_from_offset() -> None:
    assert tokenize("Hi there", offset=10) == [Token("Hi", 10, 12), Token("there", 13, 18)]


PIECES = st.one_of(
    st.sampled_from(list(" \t\n\r.,;:!?'\"`()[]$%&-/+=*\u2019\u201c\u201d\u2014\u2026\u00a0\u200d\x00\x0b")),
    st.characters(codec="utf-8"),
    st.sampled_from(["Mr.", "U.S.", "n't", "'s", "''", "``", "1/2", "C$", ".5", "e\u0301", "\U0001f44d", "Word"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=120).map("".join))
def test_offsets_property(text: str) -> None:
    """Every token is the normalised form of its surface text[start:end]; tokens are non-empty, ordered,
    non-overlapping and bounded, and every character that does not separate tokens lies in some token."""
    sentences = split_sentences(text, max_tokens=7, max_chars=40, max_token_chars=5)
    covered: set[int] = set()
    previous_end = 0
    for sentence in sentences:
        assert 1 <= len(sentence) <= 7
        for token in sentence:
            assert previous_end <= token.start < token.end <= len(text)
            assert token.end - token.start <= 5
            normalised = text[token.start : token.end].translate(_CHAR_MAP)
            assert token.text == _TOKEN_FORMS.get(normalised, normalised)
            assert not any(char.isspace() for char in token.text)
            covered.update(range(token.start, token.end))
            previous_end = token.end
    assert all(char.translate(_CHAR_MAP).isspace() for index, char in enumerate(text) if index not in covered)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=60).map("".join))
def test_cached_word_tokenizer_equals_segtok_on_the_whole_sentence(text: str) -> None:
    sentence = _LINE_BREAK.sub(" ", text).translate(_CHAR_MAP)
    assert _tokens(sentence, 7) == segtok_tokens(sentence, 7)


def segtok_tokens(sentence: str, offset: int) -> list[Token]:
    """Tokens from segtok on the whole sentence, without the caches."""
    tokens = []
    for start, end in _segtok_spans(sentence):
        form = sentence[start:end]
        tokens.append(Token(_TOKEN_FORMS.get(form, form), offset + start, offset + end))
    return tokens


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=60).map("".join))
@example('  He said "we won.")')
@example("\u00a0Mr.\u2019s U.S.A.\u201d)\u3002")
@example('He won.") They lost.')
@example("He won\u3002 They lost\u3002")
def test_text_without_sentence_end_candidate_is_one_sentence(text: str) -> None:
    """Where ``_SENTENCE_END`` finds nothing, segtok's ``split_single`` only strips the (normalised) text."""
    normalised = _LINE_BREAK.sub(" ", text).translate(_CHAR_MAP)
    if _SENTENCE_END.search(normalised) is None:
        assert split_single(normalised) == [normalised.strip()]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        # The last word has no token that segtok's sentence-end rule splits: the rule splits "Jr." before it.
        ("Smith Jr. '", ["Smith", "Jr", ".", "'"]),
        ('Smith Jr. -"', ["Smith", "Jr", ".", "-", '"']),
        ("a Jr. (-)", ["a", "Jr", ".", "(", "-", ")"]),
        ("to the  U.S. --", ["to", "the", "U.S", ".", "--"]),
        # The rule stops in the last word: "Jr." stays whole.
        ("Smith Jr. went", ["Smith", "Jr.", "went"]),
        ("Smith Jr. went.", ["Smith", "Jr.", "went", "."]),
        (" Smith Jr. a-b-c ", ["Smith", "Jr.", "a-b-c"]),
    ],
)
def test_sentence_end_rule_reaching_before_the_last_word(sentence: str, expected: list[str]) -> None:
    for _ in range(2):  # with the words cached the second time
        assert _tokens(sentence, 3) == segtok_tokens(sentence, 3)
        assert [token.text for token in _tokens(sentence, 3)] == expected


_PIECES = st.sampled_from(
    ["Anna", "Berg", "met", ".", "Dr.", "U.S.", "x" * 70, " ", "  ", "\t", "\r", "\n", "\r\n", "\u2028", "é", "!"]
)


@settings(max_examples=50, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=400), reads=st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_cutting_at_cut_point_keeps_the_sentences_of_the_whole(pieces: list[str], reads: list[int]) -> None:
    """A long line read in arbitrary pieces and cut at ``cut_point`` as it comes: the sentences of the parts,
    offsets shifted, are those of the whole line."""
    text, max_chars = "".join(pieces), 60
    parts: list[list[tuple[str, int, int]]] = []
    pending, offset, position = "", 0, 0
    for size in reads * (len(text) // max(sum(reads), 1) + 1):
        pending, position = pending + text[position : position + size], position + size
        more = position < len(text)
        cut = cut_point(pending, max_chars) if more else len(pending)
        parts += [
            [(t.text, t.start + offset, t.end + offset) for t in sentence]
            for sentence in split_sentences(pending[:cut], max_chars=max_chars)
        ]
        offset, pending = offset + cut, pending[cut:]
        if not more:
            break
    assert parts == [[tuple(token) for token in sentence] for sentence in split_sentences(text, max_chars=max_chars)]
