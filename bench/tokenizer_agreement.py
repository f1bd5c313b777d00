"""Token agreement of ner.data.text with CoNLL-2003's own tokenization.

Each CoNLL-2003 sentence is detokenized into plausible raw text (no space before punctuation, "n't" and "'s"
attached, quotes paired up, ...), which records where every gold token lies in that text. The text is then
tokenized again with ``ner.data.text.split_sentences`` and compared with the gold tokens:

- exact: % of sentences whose token strings (normalised forms) equal the gold tokens exactly;
- span P/R/F1: tokens as (start, end) character spans in the detokenized text, micro-averaged;
- one_sentence: % of sentences the splitter keeps as one sentence (each gold sentence is one line).

    python bench/tokenizer_agreement.py ../shared/data/conll2003/test.txt [--show 20]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ner.data.text import split_sentences  # noqa: E402

NO_SPACE_BEFORE = {",", ".", ":", ";", "?", "!", ")", "]", "}", "%", "...", "n't", "N'T"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}
CLITICS = {"'s", "'S", "'m", "'M", "'re", "'RE", "'ve", "'VE", "'ll", "'LL", "'d", "'D"}


def read_sentences(path: str) -> list[list[str]]:
    """Token lists of a CoNLL file (first column), without -DOCSTART- lines."""
    sentences: list[list[str]] = []
    tokens: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    sentences.append(tokens)
                tokens = []
            else:
                tokens.append(fields[0])
    if tokens:
        sentences.append(tokens)
    return sentences


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Raw text for ``tokens`` as a news writer would type it, and each token's (start, end) in that text."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    double_open = False  # inside "..."
    single_open = False  # inside '...'
    glue_next = False  # the previous token takes no space after it
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else ""
        space = index > 0 and not glue_next
        glue_next = False
        if token in NO_SPACE_BEFORE or token in CLITICS:
            space = False
        elif token == '"':
            if double_open or index == len(tokens) - 1:  # a quote ending the sentence closes a quotation
                space = False
            else:
                glue_next = True
            double_open = not double_open
        elif token == "'":
            if single_open or index == len(tokens) - 1:
                space, single_open = False, False
            elif previous[-1:] in ("s", "S") and previous[-1:].isalpha():
                space = False  # plural possessive: players '
            else:
                single_open, glue_next = True, True
        if token in NO_SPACE_AFTER:
            glue_next = True
        if space:
            parts.append(" ")
            length += 1
        spans.append((length, length + len(token)))
        parts.append(token)
        length += len(token)
    return "".join(parts), spans


def f1(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 in %."""
    precision = 100 * correct / predicted if predicted else 0.0
    recall = 100 * correct / gold if gold else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("conll", help="CoNLL-2003 file, e.g. ../shared/data/conll2003/test.txt")
    parser.add_argument("--show", type=int, default=0, help="print this many disagreeing sentences")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))

    sentences = read_sentences(args.conll)
    exact = one_sentence = correct = predicted = gold = 0
    shown = 0
    confusions: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()
    for tokens in sentences:
        text, gold_spans = detokenize(tokens)
        pieces = split_sentences(text)
        ours = [token for piece in pieces for token in piece]
        one_sentence += len(pieces) == 1
        exact += [token.text for token in ours] == tokens
        ours_spans = {(token.start, token.end) for token in ours}
        gold_set = set(gold_spans)
        correct += len(ours_spans & gold_set)
        predicted += len(ours_spans)
        gold += len(gold_set)
        if ours_spans != gold_set:
            missed = " ".join(text[s:e] for s, e in sorted(gold_set - ours_spans))
            made = " ".join(text[s:e] for s, e in sorted(ours_spans - gold_set))
            confusions[(missed, made)] += 1
            if shown < args.show:
                shown += 1
                print(f"TEXT  {text}\n  gold-only: {missed}\n  ours-only: {made}")
    seconds = time.perf_counter() - started
    precision, recall, score = f1(correct, predicted, gold)
    n = len(sentences)
    print(f"sentences {n}  tokens {gold}  exact {100 * exact / n:.2f}%  one-sentence {100 * one_sentence / n:.2f}%")
    print(f"token spans  P {precision:.2f}  R {recall:.2f}  F1 {score:.2f}  ({gold / seconds:,.0f} tokens/s)")
    print("most frequent disagreements (gold-only -> ours-only):")
    for (missed, made), count in confusions.most_common(15):
        print(f"  {count:4d}  {missed!r} -> {made!r}")
    print(
        json.dumps(
            {
                "file": args.conll,
                "sentences": n,
                "tokens": gold,
                "exact_sentence_pct": round(100 * exact / n, 2),
                "one_sentence_pct": round(100 * one_sentence / n, 2),
                "span_precision": round(precision, 2),
                "span_recall": round(recall, 2),
                "span_f1": round(score, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
