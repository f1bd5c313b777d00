"""Exported tagger (onnxruntime + numpy CRF) against the PyTorch tagger on CPU: tokens/s and batch-1 latency, and
``--check``: do both give the same entities and scores on a whole CoNLL file?

Both sides run the whole ``predict_spans`` path (inputs, network, Viterbi, propagation, span probabilities) on
the token lists of a CoNLL file, one call per document (``-DOCSTART-``), as ``ner tag`` calls a window:
throughput at ``--batch-size`` (tokens/s over the whole file) and latency at batch 1 (one call per sentence, the
first ``--latency-sentences``). Each figure is the median of ``--repeats`` runs, ONNX and PyTorch alternating so
that both see the same machine load; PyTorch's per-spelling input cache is emptied before each run (each run is a
new text to it). Both use ``--threads`` threads (torch.set_num_threads, onnxruntime's intra-op threads).

    .venv/bin/python bench/onnx_speed.py RUN_DIR [EXPORT_DIR] [--data FILE] [--repeats 5] [--threads 1]
    # a fresh, untrained model of a config's sizes (speed does not depend on the weights), exported on the fly:
    .venv/bin/python bench/onnx_speed.py --untrained configs/conll2003.yaml \\
        data.train=../shared/data/conll2003/train.txt data.dev=../shared/data/conll2003/dev.txt \\
        data.test=../shared/data/conll2003/test.txt
    .venv/bin/python bench/onnx_speed.py RUN_DIR --check --data ../shared/data/conll2003/test.txt

Without EXPORT_DIR the run is exported into a temporary folder. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NER_SHARED_DIR", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))


def documents(path: Path) -> list[tuple[list[list[str]], list[int]]]:
    """The file's sentences grouped by document: [(token lists, document ids)]."""
    from ner.data.conll import read_conll

    corpus = read_conll(path)
    ids = corpus.document_ids()
    grouped: dict[int, list[list[str]]] = {}
    for sentence, document in zip(corpus.sentences, ids):
        grouped.setdefault(document, []).append(sentence.tokens)
    return [(sentences, [0] * len(sentences)) for sentences in grouped.values()]


def untrained_run(config: str, overrides: list[str], folder: Path) -> Path:
    """A fresh tagger of ``config``'s sizes, saved as a run directory (vocabularies from its training file)."""
    from ner.config import load_config, save_config
    from ner.data.sources import load_corpus
    from ner.model import Tagger
    from ner.tagger_files import CONFIG_FILE

    loaded = load_config(config, overrides)
    tagger = Tagger.build(loaded, load_corpus(loaded.data, "train"), device="cpu")
    run = folder / "untrained"
    run.mkdir()
    save_config(loaded, run / CONFIG_FILE)
    tagger.save_vocabularies(run)
    tagger.save_weights(run)
    return run


def timed(run: Callable[[], None], reset: Callable[[], None]) -> float:
    """Seconds ``run`` takes after ``reset``."""
    reset()
    clock = time.perf_counter()
    run()
    return time.perf_counter() - clock


def measure(
    backends: dict[str, Any], reset: dict[str, Callable[[], None]], docs: list, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Per backend: tokens/s at the batch size and batch-1 latency (ms), medians over the repeats."""
    tokens = sum(len(s) for sentences, _ in docs for s in sentences)
    singles = [s for sentences, _ in docs for s in sentences][: args.latency_sentences]
    throughput: dict[str, list[float]] = {name: [] for name in backends}
    latency: dict[str, list[float]] = {name: [] for name in backends}
    for tagger in backends.values():  # warm-up: sessions, kernels, shapes
        tagger.predict_spans(docs[0][0], args.batch_size, docs[0][1])
    for _ in range(args.repeats):
        for name, tagger in backends.items():
            seconds = timed(
                lambda tagger=tagger: [tagger.predict_spans(s, args.batch_size, d) for s, d in docs], reset[name]
            )
            throughput[name].append(tokens / seconds)
            reset[name]()
            calls = []
            for sentence in singles:
                clock = time.perf_counter()
                tagger.predict_spans([sentence], 1)
                calls.append(time.perf_counter() - clock)
            latency[name].append(1000 * statistics.median(calls))
    return {
        name: {
            "tokens_per_second": statistics.median(throughput[name]),
            "latency_ms": statistics.median(latency[name]),
            "tokens_per_second_runs": [round(x) for x in throughput[name]],
            "latency_ms_runs": [round(x, 3) for x in latency[name]],
        }
        for name in backends
    }


def check(backends: dict[str, Any], docs: list, batch_size: int) -> dict[str, Any]:
    """Entities and scores of both backends on every document: mismatching sentences, max score difference."""
    mismatches, entities, difference = 0, 0, 0.0
    for sentences, ids in docs:
        expected = backends["pytorch"].predict_spans(sentences, batch_size, ids)
        found = backends["onnx"].predict_spans(sentences, batch_size, ids)
        for a, b in zip(expected, found):
            entities += len(a)
            if [s[:3] for s in a] != [s[:3] for s in b]:
                mismatches += 1
                continue
            difference = max([difference, *(abs(x[3] - y[3]) for x, y in zip(a, b))])
    return {
        "sentences": sum(len(s) for s, _ in docs),
        "entities": entities,
        "sentences_with_entity_mismatch": mismatches,
        "max_score_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", help="run directory of a trained model")
    parser.add_argument("export_dir", nargs="?", help="its `ner export` (default: exported into a temporary folder)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for --untrained")
    parser.add_argument("--untrained", metavar="CONFIG", help="time a fresh model built from this config instead")
    default_data = SHARED / "data" / "conll2003" / "test.txt"
    parser.add_argument(
        "--data", default=str(default_data if default_data.is_file() else REPO / "data" / "sample" / "test.txt")
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-sentences", type=int, default=300, help="sentences timed one by one")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--check", action="store_true", help="compare entities and scores instead of timing")
    args = parser.parse_args()
    if args.untrained:  # every positional is an override
        args.overrides[:0] = [a for a in (args.run_dir, args.export_dir) if a]
        args.run_dir = args.export_dir = None
    elif not args.run_dir:
        parser.error("give RUN_DIR or --untrained CONFIG")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    import torch

    from ner.export.onnx import export_onnx
    from ner.input_cache import TokenInputCache
    from ner.model import Tagger
    from ner.runtime import OnnxTagger

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        run = untrained_run(args.untrained, args.overrides, Path(folder)) if args.untrained else Path(args.run_dir)
        exported = Path(args.export_dir) if args.export_dir else Path(folder) / "export"
        if not args.export_dir:
            export_onnx(run, exported)
        tagger = Tagger.load(run, device="cpu")
        backends = {"onnx": OnnxTagger.load(exported, threads=args.threads), "pytorch": tagger}
        docs = documents(Path(args.data))
        tokens = sum(len(s) for sentences, _ in docs for s in sentences)
        print(
            f"data: {args.data}: {len(docs)} documents, {sum(len(s) for s, _ in docs)} sentences, {tokens} tokens; "
            f"threads {args.threads}, torch {torch.__version__}, onnxruntime "
            f"{__import__('onnxruntime').__version__}"
        )
        result: dict[str, Any] = {
            "data": args.data,
            "tokens": tokens,
            "threads": args.threads,
            "batch_size": args.batch_size,
        }
        if args.check:
            result["check"] = check(backends, docs, args.batch_size)
            c = result["check"]
            print(
                f"check: {c['sentences']} sentences, {c['entities']} entities (PyTorch): "
                f"{c['sentences_with_entity_mismatch']} sentences whose entities differ, max score difference "
                f"{c['max_score_difference']:.2e}"
            )
        else:

            def empty_cache() -> None:
                tagger.input_cache = TokenInputCache()

            figures = measure(backends, {"onnx": lambda: None, "pytorch": empty_cache}, docs, args)
            for name, values in figures.items():
                print(
                    f"{name:8s} batch {args.batch_size}: {values['tokens_per_second']:>9,.0f} tokens/s   "
                    f"batch 1: {values['latency_ms']:.2f} ms per sentence (median of {args.repeats} runs; "
                    f"runs {values['tokens_per_second_runs']} tokens/s, {values['latency_ms_runs']} ms)"
                )
            ratio = figures["onnx"]["tokens_per_second"] / figures["pytorch"]["tokens_per_second"]
            latency = figures["pytorch"]["latency_ms"] / figures["onnx"]["latency_ms"]
            print(f"onnx / pytorch: throughput x{ratio:.2f}; batch-1 latency pytorch / onnx x{latency:.2f}")
            result.update(figures=figures, throughput_ratio=round(ratio, 3), latency_speed_up=round(latency, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
