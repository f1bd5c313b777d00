"""Training throughput (sentences/s): our tagger, the same with frozen ELMo (cached), and Flair's SequenceTagger.

All three train on the same sample of CoNLL-2003 training documents (seeded, whole documents up to
``--sentences`` sentences, so that the document features and context see real documents) with the batch size
and SGD settings of ``--config``. Ours runs ``ner.training.train_epoch`` (batches as ``ner train``
makes them); the ELMo tagger is ``--elmo-config`` (the same tagger plus the biLM), its layers cached once beforehand
(the build is timed apart), and its passes alternate with the plain tagger's so both see the same machine.
Flair trains as its ``ModelTrainer`` does (shuffled mini-batches, ``forward_loss``, backward, clipping, step),
with our sizes (``flair_side.py`` maps them), in ``.bench-venv`` (``python3 -m venv .bench-venv &&
.bench-venv/bin/pip install -c constraints.txt flair``), in a subprocess after ours. Each side makes a warm-up
pass, then ``--repeats`` timed passes; the figure is the median pass.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/train_speed.py [--config configs/conll2003.yaml] \\
        [--elmo-config configs/conll2003_elmo.yaml | --no-elmo] [--sentences 2000] [--repeats 3] [--threads 2] \\
        [--flair-python .bench-venv/bin/python | --no-flair]

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
from ner.data.conll import Corpus, Sentence  # noqa: E402
from ner.data.features import document_ranges  # noqa: E402
from ner.data.schemes import convert_tags, tags_to_spans  # noqa: E402
from ner.data.sources import load_corpus  # noqa: E402
from ner.encoding import EncodedSentences  # noqa: E402
from ner.model import Tagger  # noqa: E402
from ner.training import make_optimizer, train_epoch  # noqa: E402


class Trainee:
    """One of our taggers, built from a config, with its encoded sample and optimiser."""

    def __init__(
        self,
        config_path: str,
        train: str,
        corpus: Corpus,
        sample: list[Sentence],
        document_ids: list[int],
        cache_dir: Path | None = None,
    ) -> None:
        self.config = load_config(
            config_path, [f"data.train={train}", "data.dev=null", "data.test=null", "output.progress=false"]
        )
        torch.manual_seed(self.config.training.seed)
        self.tagger = Tagger.build(self.config, corpus, device="cpu")
        started = time.perf_counter()
        scheme = self.config.model.scheme
        self.data: EncodedSentences = self.tagger.encode(
            [s.tokens for s in sample],
            [convert_tags(s.tags, corpus.scheme, scheme) for s in sample],
            cache_dir,
            document_ids,
        )
        self.encode_seconds = time.perf_counter() - started
        self.tagger.count_training_words(corpus)
        self.optimizer = make_optimizer(self.tagger.model, self.config.training)
        self.seconds: list[float] = []

    def one_pass(self) -> None:
        started = time.perf_counter()
        train_epoch(self.tagger, self.data, self.optimizer, self.config.training, len(self.seconds) + 1, progress=False)
        self.seconds.append(time.perf_counter() - started)

    def sentences_per_second(self) -> float:
        return len(self.data) / statistics.median(self.seconds[1:])  # the first pass warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "conll2003.yaml"))
    parser.add_argument("--elmo-config", default=str(REPO / "configs" / "conll2003_elmo.yaml"))
    parser.add_argument("--no-elmo", action="store_true")
    parser.add_argument("--train", default=str(REPO.parent / "shared" / "data" / "conll2003" / "train.txt"))
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flair-python", default=str(REPO / ".bench-venv" / "bin" / "python"))
    parser.add_argument("--no-flair", action="store_true")
    args = parser.parse_args()
    print(f"command: python {shlex.join(sys.argv)}")
    torch.set_num_threads(args.threads)

    corpus = load_corpus(load_config(args.config, [f"data.train={args.train}"]).data, "train")
    documents = document_ranges(len(corpus.sentences), corpus.document_ids())
    random.Random(0).shuffle(documents)
    chosen: list[range] = []
    taken = 0  # sentences in the chosen documents
    while documents and taken + len(documents[-1]) <= args.sentences:
        chosen.append(documents.pop())
        taken += len(chosen[-1])
    sample = [corpus.sentences[i] for document in chosen for i in document]
    document_ids = [number for number, document in enumerate(chosen) for _ in document]
    tokens = sum(len(s.tokens) for s in sample)
    result: dict[str, object] = {"sentences": len(sample), "tokens": tokens, "threads": args.threads}
    with tempfile.TemporaryDirectory() as folder:
        plain = Trainee(args.config, args.train, corpus, sample, document_ids)
        trainees = [plain]
        if not args.no_elmo:
            elmo = Trainee(args.elmo_config, args.train, corpus, sample, document_ids, Path(folder) / "elmo_cache")
            trainees.append(elmo)
            print(
                f"ELMo cache of the sample built in {elmo.encode_seconds:.1f} s "
                f"({tokens / elmo.encode_seconds:,.0f} tokens/s)"
            )
        for _ in range(args.repeats + 1):
            for trainee in trainees:  # interleaved, so both see the same machine
                trainee.one_pass()
        ours = plain.sentences_per_second()
        print(
            f"ours: {len(sample)} sentences ({tokens} tokens), batch {plain.config.training.batch_size}, passes "
            f"{', '.join(f'{s:.2f}' for s in plain.seconds[1:])} s: {ours:,.1f} sentences/s"
        )
        result.update(batch_size=plain.config.training.batch_size, ours_sentences_per_second=round(ours, 1))
        if not args.no_elmo:
            with_elmo = elmo.sentences_per_second()
            print(
                f"ours + ELMo (cached): passes {', '.join(f'{s:.2f}' for s in elmo.seconds[1:])} s: "
                f"{with_elmo:,.1f} sentences/s; ELMo epoch / plain epoch: {ours / with_elmo:.2f}"
            )
            result.update(elmo_sentences_per_second=round(with_elmo, 1), elmo_epoch_ratio=round(ours / with_elmo, 3))

        if not args.no_flair:
            spans = [[[start, end, kind] for kind, start, end in tags_to_spans(s.tags)] for s in sample]
            train_cfg = plain.config.training
            flair = run_flair(
                args.flair_python,
                "train",
                {
                    **model_sizes(plain.tagger),
                    "sentences": [[s.tokens, sp] for s, sp in zip(sample, spans)],
                    "threads": args.threads,
                    "batch_size": train_cfg.batch_size,
                    "lr": train_cfg.lr,
                    "momentum": train_cfg.momentum,
                    "repeats": args.repeats,
                },
                Path(folder),
            )
            if flair is not None:
                print(
                    f"flair: passes {', '.join(f'{s:.2f}' for s in flair['pass_seconds'])} s: "
                    f"{flair['sentences_per_second']:,.1f} sentences/s"
                )
                print(f"ours / flair (training sentences/s): {ours / flair['sentences_per_second']:.2f}x")
                result.update(
                    flair_sentences_per_second=round(flair["sentences_per_second"], 1),
                    speed_up=round(ours / flair["sentences_per_second"], 2),
                )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
