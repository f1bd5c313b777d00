"""CoNLL-2003 accuracy and speed of a tagger trained with ``configs/conll2003.yaml`` (model chosen on dev).

    python bench/conll2003.py                       # train, then report
    python bench/conll2003.py --run runs/conll2003  # report on a finished (or resumed) run

Reports test micro F1 (seqeval), epochs, training time (sum of epoch times from
metrics.jsonl), peak memory, training sentences/s (median over epochs) and evaluation tokens/s (the best model
tagging the test set, median of 3); with ``model.propagate_entities`` also dev and test F1 with the rule off.
Never selects on test: the model is the best epoch on dev (with ``training.train_with_dev=true``, trained on dev
too, the epoch of lowest loss, and dev is not scored). Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ner.checkpoints import METRICS_FILE, METRICS_LOG  # noqa: E402
from ner.data.conll import read_conll  # noqa: E402
from ner.evaluation import score_corpus  # noqa: E402
from ner.model import Tagger  # noqa: E402
from ner.training import train_from_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "conll2003.yaml"))
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "conll2003"),
        help="folder with train.txt, dev.txt, test.txt",
    )
    parser.add_argument("--run", help="report on this existing run directory instead of training")
    parser.add_argument("--output", default=str(REPO / "runs" / "bench-conll2003"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)

    run_dir = Path(args.run) if args.run else Path(args.output)
    if not args.run:
        train_from_config(
            args.config,
            [
                f"data.train={data / 'train.txt'}",
                f"data.dev={data / 'dev.txt'}",
                f"data.test={data / 'test.txt'}",
                f"output.dir={run_dir}",
                f"training.threads={args.threads}",
                *args.overrides,
            ],
        )
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    epochs = [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]

    tagger = Tagger.load(run_dir, device="cpu")
    test = read_conll(data / "test.txt")
    sentences = [s.tokens for s in test.sentences]
    tokens = sum(len(s) for s in sentences)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        tagger.predict(sentences, batch_size=64, document_ids=test.document_ids())
        timings.append(time.perf_counter() - started)

    result = {
        "test_f1_default": round(100 * metrics["test"]["default"]["micro"]["f1"], 2),
        "dev_f1": round(100 * metrics["dev"]["default"]["micro"]["f1"], 2) if "dev" in metrics else None,
        "best_epoch": metrics["best_epoch"],
        "epochs": len(epochs),
        "train_minutes": round(sum(e["seconds"] for e in epochs) / 60, 1),
        "train_sentences_per_s_median": round(statistics.median(e["sentences_per_second"] for e in epochs), 1),
        "eval_tokens_per_s_median": round(tokens / statistics.median(timings)),
        "peak_rss_mb_training": metrics.get("peak_rss_mb"),
        "peak_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": args.threads,
    }
    if tagger.config.model.propagate_entities:  # the same model with the rule off, for the ablation
        tagger.config.model.propagate_entities = False
        splits = {} if tagger.config.training.train_with_dev else {"dev": read_conll(data / "dev.txt")}
        for split, corpus in {**splits, "test": test}.items():  # dev is training data with train_with_dev
            scores, _ = score_corpus(tagger, corpus)
            result[f"{split}_f1_without_propagation"] = round(100 * scores["default"]["micro"]["f1"], 2)
    print(f"command: python {shlex.join(sys.argv)}")
    for key, value in result.items():
        print(f"{key:>32}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
