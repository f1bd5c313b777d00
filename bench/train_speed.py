"""Training throughput (sentences/s) of our tagger against Flair's SequenceTagger, same sizes, side by side.

Both train on the same ``--sentences`` CoNLL-2003 training sentences (a seeded sample) with the batch size and SGD
settings of the config: ours through ``ner.training.train_epoch`` (length-grouped batches, as ``ner train``
runs), Flair as its ``ModelTrainer`` does it (shuffled mini-batches, ``forward_loss``, backward, clipping, step;
see ``flair_side.py``, which also maps the sizes). Each side makes a warm-up pass, then ``--repeats`` timed
passes; the figure is the median pass. Flair runs in ``.bench-venv`` (``python3 -m venv .bench-venv &&
.bench-venv/bin/pip install -c constraints.txt flair``) in a subprocess, after ours, never at the same time.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/train_speed.py [--config configs/conll2003.yaml] \\
        [--sentences 2000] [--repeats 3] [--threads 2] [--flair-python .bench-venv/bin/python] [KEY=VALUE ...]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from flair_side import model_sizes, run_flair  # noqa: E402
from ner.config import load_config  # noqa: E402
from ner.data.schemes import convert_tags, tags_to_spans  # noqa: E402
from ner.data.sources import load_corpus  # noqa: E402
from ner.model import Tagger  # noqa: E402
from ner.training import make_optimizer, train_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "conll2003.yaml"))
    parser.add_argument("--train", default=str(REPO.parent / "shared" / "data" / "conll2003" / "train.txt"))
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flair-python", default=str(REPO / ".bench-venv" / "bin" / "python"))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(f"command: python {shlex.join(sys.argv)}")
    torch.set_num_threads(args.threads)

    config = load_config(args.config, [f"data.train={args.train}", "data.dev=null", "data.test=null",
                                       "output.progress=false", *args.overrides])
    corpus = load_corpus(config.data, "train")
    sample = random.Random(0).sample(corpus.sentences, min(args.sentences, len(corpus.sentences)))
    torch.manual_seed(config.training.seed)
    tagger = Tagger.build(config, corpus, device="cpu")
    data = tagger.encode([s.tokens for s in sample],
                         [convert_tags(s.tags, corpus.scheme, config.model.scheme) for s in sample])
    optimizer = make_optimizer(tagger.model, config.training)
    seconds = []
    for repeat in range(args.repeats + 1):  # the first pass warms up
        started = time.perf_counter()
        train_epoch(tagger, data, optimizer, config.training, repeat + 1, progress=False)
        seconds.append(time.perf_counter() - started)
    ours = len(sample) / statistics.median(seconds[1:])
    tokens = sum(len(s.tokens) for s in sample)
    print(f"ours: {len(sample)} sentences ({tokens} tokens), batch {config.training.batch_size}, passes "
          f"{', '.join(f'{s:.2f}' for s in seconds[1:])} s: {ours:,.1f} sentences/s, "
          f"{sum(p.numel() for p in tagger.model.parameters()):,} parameters")
    result = {"sentences": len(sample), "tokens": tokens, "threads": args.threads,
              "batch_size": config.training.batch_size, "ours_sentences_per_second": round(ours, 1)}

    spans = [[[start, end, kind] for kind, start, end in tags_to_spans(s.tags)] for s in sample]
    with tempfile.TemporaryDirectory() as folder:
        flair = run_flair(args.flair_python, "train", {
            **model_sizes(tagger), "sentences": [[s.tokens, sp] for s, sp in zip(sample, spans)],
            "threads": args.threads, "batch_size": config.training.batch_size, "lr": config.training.lr,
            "momentum": config.training.momentum, "repeats": args.repeats}, Path(folder))
    if flair is not None:
        print(f"flair: passes {', '.join(f'{s:.2f}' for s in flair['pass_seconds'])} s: "
              f"{flair['sentences_per_second']:,.1f} sentences/s, {flair['parameters']:,} parameters")
        print(f"ours / flair (training sentences/s): {ours / flair['sentences_per_second']:.2f}x")
        result.update(flair_sentences_per_second=round(flair["sentences_per_second"], 1),
                      speed_up=round(ours / flair["sentences_per_second"], 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
