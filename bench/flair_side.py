"""The Flair side of the side-by-side benchmarks (``tag_speed.py``, ``train_speed.py``).

Flair lives in its own virtual environment (``python3 -m venv .bench-venv && .bench-venv/bin/pip install -c
constraints.txt flair``), so our benchmarks run it as a subprocess: they write a JSON job (the sizes of our model,
the sentences, the thread count), run ``python bench/flair_side.py {predict|train} JOB`` with the bench venv's
Python, and read the JSON line it prints last. This file imports nothing of ours.

Flair's model copies our sizes: word embeddings of our word + casing width (``OneHotEmbeddings``), character
features of our char-CNN width (Flair's char BiLSTM, ``CharacterEmbeddings``), no re-projection, a BiLSTM of our
hidden size and layers, a CRF over BIOES tags.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def model_sizes(tagger: Any) -> dict[str, Any]:
    """What Flair's model copies from one of our taggers: vocabularies, entity types, sizes."""
    model = tagger.config.model
    char_out = sum(count for _, count in model.char_cnn.filters) if model.char_cnn.dim else 0
    return {
        "words": tagger.words.items[2:],
        "chars": tagger.chars.items[2:],
        "types": sorted({tag[2:] for tag in tagger.tags.items if tag[1:2] == "-"}),
        "word_dim": model.embeddings.dim + model.embeddings.casing_dim,
        "char_dim": max(model.char_cnn.dim, 1),
        "char_out": max(char_out, 2),
        "hidden_size": model.lstm.hidden_size,
        "num_layers": model.lstm.num_layers,
    }


def run_flair(python: str, mode: str, job: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """Run this file's ``mode`` worker under ``python``; its JSON result, or None (and a message) on failure."""
    path = folder / f"flair_{mode}_job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run([python, __file__, mode, str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"flair failed ({python}):\n{done.stderr[-3000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Workers: run in the bench virtual environment.


def _build_tagger(job: dict[str, Any]) -> Any:
    import torch
    from flair.data import Dictionary
    from flair.embeddings import CharacterEmbeddings, OneHotEmbeddings, StackedEmbeddings
    from flair.models import SequenceTagger

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    words, chars = Dictionary(add_unk=True), Dictionary(add_unk=True)
    for word in job["words"]:
        words.add_item(word)
    for char in job["chars"]:
        chars.add_item(char)
    types = Dictionary(add_unk=False)
    types.span_labels = True
    for kind in job["types"]:
        types.add_item(kind)
    embeddings = StackedEmbeddings(
        [
            OneHotEmbeddings(words, embedding_length=job["word_dim"]),
            CharacterEmbeddings(chars, char_embedding_dim=job["char_dim"], hidden_size_char=job["char_out"] // 2),
        ]
    )
    return SequenceTagger(
        embeddings,
        types,
        "ner",
        hidden_size=job["hidden_size"],
        rnn_layers=job["num_layers"],
        use_crf=True,
        reproject_embeddings=False,
        tag_format="BIOES",
    )


def predict_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``SequenceTagger.predict`` on the job's token lists (building ``Sentence`` objects timed apart)."""
    from flair.data import Sentence

    tagger = _build_tagger(job)
    tagger.eval()
    tagger.predict(
        [Sentence(tokens) for tokens in job["sentences"][: job["warmup"]]], mini_batch_size=job["batch_size"]
    )
    started = time.perf_counter()
    sentences = [Sentence(tokens) for tokens in job["sentences"]]
    built = time.perf_counter()
    tagger.predict(sentences, mini_batch_size=job["batch_size"])
    predicted = time.perf_counter()
    tokens = sum(len(tokens) for tokens in job["sentences"])
    return {
        "tokens": tokens,
        "sentence_seconds": built - started,
        "predict_seconds": predicted - built,
        "predict_tokens_per_second": tokens / (predicted - built),
        "parameters": sum(p.numel() for p in tagger.parameters()),
    }


def train_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Time training passes as Flair's ``ModelTrainer`` makes them: shuffled mini-batches, ``forward_loss``,
    backward, gradient clipping at 5, an SGD step, the batch's embeddings dropped. ``job["sentences"]`` holds
    ``[tokens, spans]`` pairs, each span ``[start, end_exclusive, type]``."""
    import torch
    from flair.data import Sentence
    from flair.training_utils import store_embeddings

    tagger = _build_tagger(job)
    tagger.train()
    sentences = []
    for tokens, spans in job["sentences"]:
        sentence = Sentence(tokens)
        for start, end, kind in spans:
            sentence[start:end].add_label("ner", kind)
        sentences.append(sentence)
    optimizer = torch.optim.SGD(tagger.parameters(), lr=job["lr"], momentum=job["momentum"])
    rng = random.Random(0)

    def one_pass() -> float:
        order = sentences[:]
        rng.shuffle(order)
        started = time.perf_counter()
        for start in range(0, len(order), job["batch_size"]):
            batch = order[start : start + job["batch_size"]]
            optimizer.zero_grad()
            loss, count = tagger.forward_loss(batch)
            (loss / count).backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), 5.0)
            optimizer.step()
            store_embeddings(batch, "none")  # what ModelTrainer does: drop the batch's embeddings
        return time.perf_counter() - started

    one_pass()  # warm-up
    seconds = [one_pass() for _ in range(job["repeats"])]
    return {
        "sentences": len(sentences),
        "pass_seconds": seconds,
        "sentences_per_second": len(sentences) / statistics.median(seconds),
        "parameters": sum(p.numel() for p in tagger.parameters()),
    }


if __name__ == "__main__":
    mode, job_path = sys.argv[1], sys.argv[2]
    worker = {"predict": predict_worker, "train": train_worker}[mode]
    print(json.dumps(worker(json.loads(Path(job_path).read_text(encoding="utf-8")))))
