"""Frozen-ELMo cost per tagger epoch: building the activation cache once, then reading + mixing it per batch.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/elmo_cache.py [--bilm RUN_DIR] [--config LM_CONFIG]

Uses the biLM of ``--bilm`` (a ``ner pretrain-lm`` output folder) or, without it, a randomly initialised biLM of
the size in ``--config`` (timings do not depend on the weights). Reports the cache build time for the CoNLL-2003
training set, the per-epoch time of ``layers_for`` + ``Elmo.from_layers`` (forward and backward of the mix,
batches of 32), and what running the frozen biLM on every batch would cost instead. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ner.data.conll import read_conll
from ner.elmo import BiLM, Elmo, ElmoCache, batch_to_char_ids
from ner.elmo.pretrain import load_lm_config

SHARED = Path(os.environ.get("NER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bilm", help="output folder of ner pretrain-lm")
    parser.add_argument("--config", default="configs/lm_reuters.yaml")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bilm = BiLM.load(args.bilm) if args.bilm else BiLM(load_lm_config(args.config).model.bilm_options())
    sentences = [s.tokens for s in read_conll(SHARED / "data" / "conll2003" / "train.txt").sentences]
    tokens = sum(len(s) for s in sentences)
    elmo = Elmo(bilm, dropout=0.0)
    rng = np.random.default_rng(0)
    batches = np.array_split(rng.permutation(len(sentences)), len(sentences) // args.batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cache = ElmoCache.for_sentences(bilm, sentences, tmp, dtype=torch.float16)
        build_s = time.perf_counter() - start
        size_mb = cache.data.nbytes / 2**20
        start = time.perf_counter()
        for indices in batches:
            embeddings, _ = elmo.from_layers(*cache.layers_for(indices))
            embeddings.sum().backward()
        epoch_s = time.perf_counter() - start

    sample = batches[:20]
    start = time.perf_counter()
    with torch.no_grad():
        for indices in sample:
            bilm(batch_to_char_ids([sentences[i] for i in indices]))
    uncached_epoch_s = (time.perf_counter() - start) / len(sample) * len(batches)

    figures = {
        "sentences": len(sentences),
        "tokens": tokens,
        "elmo_dim": bilm.output_dim,
        "threads": torch.get_num_threads(),
        "cache_build_s": round(build_s, 1),
        "cache_mb": round(size_mb),
        "cached_epoch_overhead_s": round(epoch_s, 2),
        "uncached_epoch_bilm_s": round(uncached_epoch_s, 1),
    }
    print(
        f"cache build {build_s:.1f} s ({tokens / build_s:.0f} tokens/s, {size_mb:.0f} MB float16); "
        f"per epoch: cached read + mix {epoch_s:.2f} s vs running the frozen biLM {uncached_epoch_s:.0f} s"
    )
    print("command: flock -x /tmp/ner-cpu.lock .venv/bin/python " + " ".join(sys.argv))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
