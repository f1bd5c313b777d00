"""Raw text -> sentences -> tokens with character offsets, tokenized like CoNLL-2003.

CoNLL-2003 is Penn-Treebank-like: punctuation is split off, "n't" and "'s" are separate tokens, hyphenated words
and abbreviations ("U.S.", "AL-AIN") stay whole and both kinds of double quote are written `"`. Sentence splitting
is segtok's ``split_single`` and word splitting its ``word_tokenizer`` with contraction and possessive splitting,
adapted where CoNLL-2003 differs (``_conll_pieces``, ``_joins``, ``_INITIALS_END``); ``bench/tokenizer_agreement.py``
measures the result. Words are tokenized once and cached (``_tokens``), and text without a possible sentence end
skips its sentence splitter (``_SENTENCE_END``).

Every token carries ``(start, end)`` with ``text[start:end]`` its surface string in the original text, and
``Token.text``, the normalised form given to the model (curly quotes and apostrophes made ASCII, ``` `` ``` and
``''`` made ``"``, Unicode dashes made ``-``/``--``). Normalisation never changes the offsets.

Line breaks (``\\n``, ``\\r\\n``, ``\\r``, U+2028...) always end a sentence. Tabs, other control characters and
Unicode spaces separate tokens like a space. Very long input stays bounded: text without a sentence break is cut
into chunks of at most ``max_chars`` characters at whitespace, sentences into pieces of at most ``max_tokens``
tokens (at whitespace where possible) and tokens into pieces of at most ``max_token_chars`` characters.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import NamedTuple

import regex
from segtok.segmenter import SENTENCE_TERMINALS, split_single
from segtok.tokenizer import split_contractions, split_possessive_markers, word_tokenizer

MAX_TOKENS = 200
"""Most tokens in one sentence given to the model; longer sentences are cut (CoNLL-2003's longest has 124)."""
MAX_CHARS = 10_000
"""Most characters handed to the sentence splitter at once; longer text is cut at whitespace first."""
MAX_TOKEN_CHARS = 100
"""Most characters in one token; longer runs without a break (base64, long URLs) are cut into pieces."""


class Token(NamedTuple):
    """One token: ``text`` is the normalised form for the model; ``source[start:end]`` is its surface string."""

    text: str
    start: int
    end: int


_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _char_map() -> dict[int, str]:
    """One-to-one character replacements applied before tokenizing (same length, so offsets stay valid)."""
    table: dict[int, str] = {}
    for code in range(0x3001):  # every control character and Unicode space lies below U+3001
        char = chr(code)
        category = unicodedata.category(char)
        # Control characters (tab included) and Unicode spaces separate tokens like a space.
        if category in ("Cc", "Zs", "Zl", "Zp") and char != " ":
            table[code] = " "
    table[0xFEFF] = " "  # byte-order mark / zero-width no-break space
    for char in "\u2018\u2019\u201a\u201b\u2032\u00b4\u02bc":
        table[ord(char)] = "'"
    for char in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb":
        table[ord(char)] = '"'
    for char in "\u2010\u2011\u2012\u2212":
        table[ord(char)] = "-"
    return table


_CHAR_MAP = _char_map()

_TOKEN_FORMS = {"``": '"', "''": '"', "\u2013": "-", "\u2014": "--", "\u2015": "--", "\u2026": "..."}
"""Whole-token normalisations that change the length (the offsets keep the surface)."""

_PUNCTUATION_PIECE = regex.compile(r"``|''|-+|\.+|\*+|=+|\X")
"""Pieces of a word without letters or digits: paired quotes and runs of dashes, dots, stars and equals signs
stay whole as in CoNLL-2003, anything else is one piece per grapheme cluster (an emoji with its modifiers)."""
_POSSESSIVE = re.compile(r"(.*\w)('[sS])")
_ALNUM = re.compile(r"\w")
_MARK = regex.compile(r"\p{M}")
_DIGITS = re.compile(r"\d")
_NUMBER = re.compile(r"[\d.,]*\d")
_FALLBACK_TOKEN = re.compile(r"\w+|[^\w\s]")


def _conll_pieces(word: str) -> list[str]:
    """Split one segtok word further where CoNLL-2003 splits it; the pieces concatenate to ``word``."""
    if _ALNUM.search(word) is None:
        return _PUNCTUATION_PIECE.findall(word)  # '("' -> '(', '"'; '((' -> '(', '('
    possessive = _POSSESSIVE.fullmatch(word)  # segtok leaves "S.AFRICA'S" whole
    if possessive:
        return [possessive.group(1), possessive.group(2)]
    return [word]


def _joins(left: str, right: str, before: str, after: str) -> bool:
    """Whether adjacent pieces ``left`` and ``right`` form one CoNLL-2003 token that segtok splits;
    ``before`` and ``after`` are the characters just around the pair ("" at the ends)."""
    if _MARK.match(right) or (_MARK.match(left[-1:]) and right[:1].isalnum()):
        return True  # a combining accent belongs to its letter: "e\u0301cole" (decomposed "école")
    if left in ("+", ".") and _DIGITS.match(right):
        return not before.isalnum()  # "+44", ".778" (batting averages)
    if left.endswith("/") or right == "/":
        return (right == "/" and left[-1:].isdigit()) or (left[-2:-1].isdigit() and right[:1].isdigit())  # "1/2"
    if right == "$":
        return left.isupper() and len(left) <= 3 and not before.isalnum()  # "C$", "US$", "HK$"
    if right == "=":
        return _NUMBER.fullmatch(left) is not None and not after.strip()  # golf scores "19="
    if right == "-":
        return (left[-1:].isalpha() and after.isspace()) or (left[-1:] == "." and after.isalpha())  # "U.S.-led"
    if left[-1:] in ("-", "&") and _ALNUM.search(left):
        return right[:1].isalnum()  # "U.S.-" + "led", "S&" + "P"
    if right == "&":
        return left[-1:].isupper() and after.isupper()  # "S&P", "AT&T"
    return False


def _segtok_spans(sentence: str) -> list[tuple[int, int]]:
    """(start, end) of each token of one normalised sentence, left to right, by segtok and the rules above."""
    words = split_contractions(split_possessive_markers(word_tokenizer(sentence)))
    spans: list[tuple[int, int]] = []
    cursor = 0
    for word in words:
        for piece in _conll_pieces(word):
            start = sentence.find(piece, cursor)
            if start < 0 or sentence[cursor:start].strip():
                # Never expected (segtok returns substrings); fall back to words and single symbols.
                return [match.span() for match in _FALLBACK_TOKEN.finditer(sentence)]
            end = start + len(piece)
            if spans and spans[-1][1] == start:
                left_start = spans[-1][0]
                before, after = sentence[left_start - 1 : left_start] if left_start else "", sentence[end : end + 1]
                if _joins(sentence[left_start:start], piece, before, after):
                    spans[-1] = (left_start, end)
                    cursor = end
                    continue
            spans.append((start, end))
            cursor = end
    return spans


_Pieces = tuple[tuple[str, int, int], ...]
"""(form, start, end) of each token of a word, offsets counted from the start of the word."""

_CACHE_SIZE = 100_000
_WORD_CACHE: dict[str, _Pieces] = {}
"""Tokens of words that do not end their sentence."""
_LAST_WORD_CACHE: dict[str, _Pieces | None] = {}
"""Tokens of words that end their sentence, or None where they depend on the words before them."""
_new_token = tuple.__new__
"""``_new_token(Token, (text, start, end))`` is ``Token(text, start, end)`` without a Python-level call."""


def _pieces(text: str, spans: list[tuple[int, int]], shift: int = 0) -> _Pieces:
    """(form, start - shift, end - shift) for each (start, end) in ``spans`` of ``text``."""
    return tuple((_TOKEN_FORMS.get(form := text[start:end], form), start - shift, end - shift) for start, end in spans)


def _word_pieces(word: str) -> _Pieces:
    """Tokens of a word that does not end its sentence, tokenized once with an "x" after it: segtok's rules see
    one space-separated word at a time, except the sentence-end rule, which stops at the "x"."""
    pieces = _WORD_CACHE.get(word)
    if pieces is None:
        if len(_WORD_CACHE) >= _CACHE_SIZE:
            _WORD_CACHE.clear()
        pieces = _WORD_CACHE[word] = _pieces(word, _segtok_spans(word + " x")[:-1])
    return pieces


def _last_word_pieces(word: str) -> _Pieces | None:
    """Tokens of a word that ends its sentence, or None where they depend on the words before it.

    segtok's sentence-end rule splits the last of the last three tokens of the sentence (its ``word_tokenizer``
    pieces) that looks like a word or holds a terminal; if there is none in ``word`` and it has fewer than three,
    the rule goes on to the words before. The word is tokenized after "x. ", which the rule splits exactly then.
    """
    try:
        return _LAST_WORD_CACHE[word]
    except KeyError:
        if len(_LAST_WORD_CACHE) >= _CACHE_SIZE:
            _LAST_WORD_CACHE.clear()
        spans = _segtok_spans("x. " + word)
        pieces = _LAST_WORD_CACHE[word] = _pieces("x. " + word, spans[1:], 3) if spans[0] == (0, 2) else None
        return pieces


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Tokens of ``text`` taken as one sentence, with offsets counted from ``offset``; no length bounds."""
    return _tokens(text.translate(_CHAR_MAP), offset)


def _tokens(sentence: str, offset: int) -> list[Token]:
    """Tokens of one normalised sentence (its only whitespace is " "), with offsets counted from ``offset``.

    Those of ``_segtok_spans(sentence)``, faster: every word is tokenized once and cached, the last one apart
    (``_last_word_pieces``) or, where its tokens depend on the words before it, with the two words before it.
    """
    words = sentence.split(" ")
    last = len(words) - 1
    while last >= 0 and not words[last]:
        last -= 1
    if last < 0:
        return []
    tail = _last_word_pieces(words[last])
    # Where the last word's tokens depend on the words before it, the last three words are tokenized in place.
    cut = last if tail is not None else [index for index, word in enumerate(words) if word][-3:][0]
    tokens: list[Token] = []
    start = offset
    for word in words[:cut]:
        for form, first, end in _word_pieces(word):
            tokens.append(_new_token(Token, (form, start + first, start + end)))
        start += len(word) + 1
    if tail is None:
        rest = sentence[start - offset :]
        tail = _pieces(rest, _segtok_spans(rest))
    for form, first, end in tail:
        tokens.append(_new_token(Token, (form, start + first, start + end)))
    return tokens


def _chunks(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into (start, end) pieces of at most ``max_chars`` characters, at whitespace where
    the second half of a piece has some."""
    pieces = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = max(text.rfind(" ", start + max_chars // 2, limit), text.rfind("\t", start + max_chars // 2, limit))
        stop = cut + 1 if cut >= 0 else limit
        pieces.append((start, stop))
        start = stop
    pieces.append((start, end))
    return pieces


@functools.cache
def _long_word(max_chars: int) -> re.Pattern[str]:
    """Finds a word of more than ``max_chars`` characters in a normalised text: tokens lie within words."""
    return re.compile(f"[^ ]{{{max_chars + 1}}}")


def _split_long_tokens(tokens: list[Token], source: str, max_token_chars: int) -> list[Token]:
    """Cut tokens longer than ``max_token_chars`` into consecutive pieces."""
    if all(token.end - token.start <= max_token_chars for token in tokens):
        return tokens
    pieces = []
    for token in tokens:
        if token.end - token.start <= max_token_chars:
            pieces.append(token)
            continue
        for start in range(token.start, token.end, max_token_chars):
            end = min(start + max_token_chars, token.end)
            form = source[start:end].translate(_CHAR_MAP)
            pieces.append(Token(_TOKEN_FORMS.get(form, form), start, end))
    return pieces


def _bounded(tokens: list[Token], max_tokens: int) -> list[list[Token]]:
    """Cut a sentence into pieces of at most ``max_tokens`` tokens, between tokens separated by whitespace
    where the second half of the piece has such a gap."""
    pieces = []
    while len(tokens) > max_tokens:
        cut = max_tokens
        for index in range(max_tokens, max_tokens // 2, -1):
            if tokens[index - 1].end < tokens[index].start:
                cut = index
                break
        pieces.append(tokens[:cut])
        tokens = tokens[cut:]
    pieces.append(tokens)
    return pieces


_INITIALS_END = re.compile(r"(?:^|[\s(])(?:[A-Z]\.)+$")
"""A sentence candidate ending in an initial or a dotted acronym ("M.", "F.A."): segtok splits after these, but
in news text a name or noun nearly always follows ("M. Waugh", "F.A. Cup")."""
_SENTENCE_END = re.compile(f"[{re.escape(SENTENCE_TERMINALS)}]['\u2019\"\u201d]?[\\])]* ")
"""Where ``split_single`` may end a sentence in a normalised text without line breaks: segtok's ``SEGMENTER_REGEX``
(a terminal, a quote, closing brackets, whitespace, which is only " " there)."""


def _sentence_spans(normalised: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in a normalised text without line breaks."""
    if _SENTENCE_END.search(normalised) is None:  # split_single only strips the text
        start = len(normalised) - len(normalised.lstrip())
        return [(start, len(normalised.rstrip()))] if start < len(normalised) else []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in split_single(normalised):
        start = normalised.find(sentence, cursor)
        if start < 0:  # never expected (segtok returns stripped substrings): keep the rest as one sentence
            spans.append((cursor, len(normalised)))
            break
        end = start + len(sentence)
        if spans and _INITIALS_END.search(normalised[spans[-1][0] : spans[-1][1]]):
            spans[-1] = (spans[-1][0], end)
        elif sentence:
            spans.append((start, end))
        cursor = end
    return spans


def cut_point(text: str, max_chars: int = MAX_CHARS) -> int:
    """Where to cut the start of a line whose end is not read yet (``ner.tagging`` on a long line) so that
    ``split_sentences`` gives the sentences of the whole line as those of ``text[:cut]`` and of the rest: after
    the last line break, or where ``split_sentences`` itself cuts the text that follows it into chunks."""
    start = 0
    for line_break in _LINE_BREAK.finditer(text):
        start = line_break.end()
    return _chunks(text, start, len(text), max_chars)[-1][0]


def split_sentences(
    text: str,
    *,
    max_tokens: int = MAX_TOKENS,
    max_chars: int = MAX_CHARS,
    max_token_chars: int = MAX_TOKEN_CHARS,
) -> list[list[Token]]:
    """Sentences of ``text`` as lists of tokens with offsets into ``text``; sentences without tokens are left out.

    Line breaks always end a sentence. No sentence has more than ``max_tokens`` tokens and no token more than
    ``max_token_chars`` characters.
    """
    sentences: list[list[Token]] = []
    line_start = 0
    for line_break in [*_LINE_BREAK.finditer(text), None]:
        line_end = line_break.start() if line_break else len(text)
        for chunk_start, chunk_end in _chunks(text, line_start, line_end, max_chars):
            normalised = text[chunk_start:chunk_end].translate(_CHAR_MAP)
            long_words = _long_word(max_token_chars).search(normalised) is not None
            for start, end in _sentence_spans(normalised):
                tokens = _tokens(normalised[start:end], chunk_start + start)
                if long_words:
                    tokens = _split_long_tokens(tokens, text, max_token_chars)
                if len(tokens) > max_tokens:
                    sentences.extend(_bounded(tokens, max_tokens))
                elif tokens:
                    sentences.append(tokens)
        if line_break:
            line_start = line_break.end()
    return sentences
