"""Span-level scores as seqeval computes them (``ner.scoring``): micro and per-type precision, recall, F1 and
support, in seqeval's default mode (conlleval's chunking), of a tagger on a corpus; ``ner evaluate``.

There is no strict mode: predictions come from a CRF constrained to its scheme (well-formed sequences only), gold
tags are checked against their scheme when read, and both reach the scorer as IOB2 (converted through their spans),
where seqeval's strict mode equals its default. Scores keep the ``{"default": report}`` layout of the run
directories written when strict mode was reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ner.data.conll import Corpus, read_conll, write_predictions
from ner.data.schemes import convert_tags
from ner.data.sources import check_unseen_tags
from ner.encoding import EncodedSentences
from ner.errors import NerError
from ner.fileio import check_output, refuse_links_out, write_json_atomic
from ner.memory import large_blocks_returned
from ner.model import Tagger
from ner.scoring import report


def score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> dict[str, Any]:
    """Score tag sequences written in ``scheme``.

    Returns ``{"default": report}`` where a report maps ``"micro"`` and each entity type to
    ``{"precision", "recall", "f1", "support"}``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but predicted has {len(predicted)}")
    gold_iob2 = [convert_tags(list(tags), scheme, "IOB2") for tags in gold]
    pred_iob2 = [convert_tags(list(tags), scheme, "IOB2") for tags in predicted]
    return {"default": report(gold_iob2, pred_iob2)}


def score_corpus(
    tagger: Tagger, corpus: Corpus, encoded: EncodedSentences | None = None, batch_size: int = 64
) -> tuple[dict[str, Any], list[list[str]]]:
    """Scores of ``tagger`` on a labelled corpus, and its predictions (in the corpus's scheme).

    ``encoded`` is the corpus already encoded (e.g. with its ELMo cache), to reuse across epochs.
    """
    scheme = tagger.config.model.scheme
    if encoded is None:
        encoded = tagger.encode([s.tokens for s in corpus.sentences], document_ids=corpus.document_ids())
    with large_blocks_returned():  # the peak of a training run: its temporaries go back when freed
        predicted = tagger.predict_encoded(encoded, batch_size, keep_inputs=False)  # in the model's scheme
    gold = [convert_tags(s.tags, corpus.scheme, scheme) for s in corpus.sentences]
    return score(gold, predicted, scheme), [convert_tags(p, scheme, corpus.scheme) for p in predicted]


def evaluate_run(
    run_dir: str | Path,
    data_file: str | Path,
    predictions_path: str | Path | None = None,
    verbose: bool = False,
    precision: str = "float32",
) -> dict[str, Any]:
    """Score the tagger in ``run_dir`` on a CoNLL file (read with the run's column settings), at inference
    ``precision`` (``Tagger.load``).

    Writes ``RUN_DIR/evaluate/<file stem>/metrics.json`` and, on request, ``token gold predicted`` lines.
    Returns the scores.
    """
    if predictions_path is not None:
        check_output(predictions_path, inputs=[data_file])
    out_dir = Path(run_dir) / "evaluate" / Path(data_file).stem
    refuse_links_out(Path(run_dir), [out_dir / "metrics.json"])
    tagger = Tagger.load(run_dir, precision=precision)
    data = tagger.config.data
    corpus = read_conll(data_file, data.token_column, data.tag_column, data.scheme)
    if corpus.scheme is None:
        raise NerError(f"{data_file}: no tag column: evaluate needs gold tags (use `ner tag` for raw text)")
    corpus = check_unseen_tags(corpus, tagger.tags.items, data.unseen_tags)
    scores, predicted = score_corpus(tagger, corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "metrics.json", {"data": str(data_file), **scores})
    if predictions_path is not None:
        write_predictions(predictions_path, corpus.sentences, predicted)
    if verbose:
        print(f"{data_file}: {len(corpus.sentences)} sentences\n{format_table(scores)}")
        print(
            f"metrics written to {out_dir / 'metrics.json'}"
            + (f", predictions to {predictions_path}" if predictions_path else "")
        )
    return scores


def format_table(scores: dict[str, Any]) -> str:
    """The report, one row per entity type, micro average last."""
    default = scores["default"]
    names = [n for n in default if n != "micro"] + ["micro"]
    header = f"{'type':<8} {'support':>7} | {'P':>6} {'R':>6} {'F1':>6}"
    lines = [header, "-" * len(header)]
    for name in names:
        row = default[name]
        lines.append(
            f"{name:<8} {row['support']:>7} | {100 * row['precision']:6.2f} {100 * row['recall']:6.2f} "
            f"{100 * row['f1']:6.2f}"
        )
    return "\n".join(lines)
