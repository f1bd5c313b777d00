"""Training speed with ``training.precision: bf16`` (autocast) against float32, on one device.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/bf16_step.py [--config configs/conll2003.yaml] \\
        [--sentences 600] [--repeats 3] [--threads 1] [--device cpu] [KEY=VALUE ...]

Builds the config's tagger on the first ``--sentences`` training sentences and times passes of
``ner.training.train_epoch`` over them (the code of ``ner train``), float32 and bf16 alternating after a warm-up
pass of each; the figure is the median pass in sentences/s, with the last pass's mean loss. The last line is JSON.
(``NER_LSTM_KERNEL=0`` in the environment runs the LSTM's PyTorch loops instead of its C++ kernel.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ner.config import load_config  # noqa: E402
from ner.data.sources import load_splits  # noqa: E402
from ner.distributed import keep_float32  # noqa: E402
from ner.model import Tagger  # noqa: E402
from ner.nn.lstm import LSTM  # noqa: E402
from ner.training import make_optimizer, train_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "conll2003.yaml"))
    parser.add_argument("--sentences", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="float32,bf16", help="comma-separated, timed in turn")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.train=../shared/data/...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, [*args.overrides, "data.dev=", "data.test="])
    corpus = load_splits(config.data)["train"]
    corpus = dataclasses.replace(
        corpus, sentences=corpus.sentences[: args.sentences], gaps=corpus.gaps[: args.sentences]
    )
    torch.manual_seed(1)
    tagger = Tagger.build(config, corpus, device=args.device)
    data = tagger.encode_corpus(corpus)
    tagger.count_training_words(corpus)
    keep_float32(tagger.model, LSTM)  # as ner train does with bf16: the LSTM recurrence stays float32
    optimizer = make_optimizer(tagger.model, config.training)
    rates: dict[str, list[float]] = {precision: [] for precision in args.precisions.split(",")}
    losses: dict[str, float] = {}
    for repeat in range(args.repeats + 1):
        for precision in rates:
            opts = dataclasses.replace(config.training, precision=precision)
            started = time.perf_counter()
            losses[precision] = train_epoch(tagger, data, optimizer, opts, repeat + 1, progress=False)
            if args.device != "cpu":
                torch.cuda.synchronize()
            if repeat:  # the first pass of each warms up
                rates[precision].append(len(data) / (time.perf_counter() - started))
    medians = {precision: round(statistics.median(values), 1) for precision, values in rates.items()}
    print(
        f"{len(data)} sentences, {args.threads} thread(s), {args.device}: "
        + ", ".join(f"{precision} {rate} sentences/s" for precision, rate in medians.items())
    )
    print("command: flock -x /tmp/ner-cpu.lock .venv/bin/python " + shlex.join(sys.argv))
    print(
        json.dumps(
            {
                "config": args.config,
                "sentences": len(data),
                "threads": args.threads,
                "device": args.device,
                "sentences_per_s": medians,
                "passes": rates,
                "last_loss": losses,
            }
        )
    )


if __name__ == "__main__":
    main()
