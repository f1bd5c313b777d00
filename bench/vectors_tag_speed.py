"""Tagging time of a config with pretrained vectors against the same config without them, in one process.

Both taggers are untrained (speed does not depend on the weights) and share every size; the only difference is
``model.embeddings.pretrained``. They tag the same sentences in turn, ``--rounds`` times (the input cache is
emptied before each call), and the medians are compared, so a load that comes and goes touches both alike.

    python bench/vectors_tag_speed.py [--config configs/conll2003_glove.yaml] [--data ../shared/data/conll2003]
        [--rounds 5] [--threads 1]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ner.config import load_config  # noqa: E402
from ner.data.conll import read_conll  # noqa: E402
from ner.data.sources import load_corpus  # noqa: E402
from ner.model import Tagger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "conll2003_glove.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "conll2003"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    data = Path(args.data)
    splits = [f"data.{split}={data / f'{split}.txt'}" for split in ("train", "dev", "test")]
    taggers = {}
    for name, extra in (("vectors", []), ("none", ["model.embeddings.pretrained=null"])):
        torch.manual_seed(1)
        config = load_config(args.config, splits + extra)
        taggers[name] = Tagger.build(config, load_corpus(config.data, "train"))
        taggers[name].model.eval()
    test = read_conll(data / "test.txt")
    sentences = [s.tokens for s in test.sentences]
    tokens = sum(len(s) for s in sentences)
    times: dict[str, list[float]] = {name: [] for name in taggers}
    for _ in range(args.rounds):
        for name, tagger in taggers.items():
            tagger.input_cache.columns.clear()
            tagger.input_cache.table = None
            started = time.perf_counter()
            tagger.predict_spans(sentences, 64, document_ids=test.document_ids())
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in median.items():
        print(f"{name}: {tokens / seconds:,.0f} tokens/s (median of {args.rounds}: {seconds:.2f} s)")
    ratio = median["vectors"] / median["none"]
    print(f"time with vectors / without: {ratio:.3f}")
    print(
        json.dumps(
            {
                "tokens": tokens,
                "rounds": args.rounds,
                "threads": args.threads,
                "ratio": round(ratio, 3),
                **{f"{name}_tokens_per_s": round(tokens / s) for name, s in median.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
