"""Data-parallel scaling on CPU: pretraining tokens/s and tagger training sentences/s, 1 process x 1 thread
against N processes x 1 thread under ``torchrun`` (gloo), side by side, at the same global batch.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/ddp_scaling.py [--processes 2] [--lm-steps 30] \\
        [--lm-config configs/lm_reuters.yaml] [--train-config configs/conll2003.yaml] [--train-sentences 1500] \\
        [--data-dir ../shared/data/conll2003]

Pretraining runs ``--lm-steps`` steps of ``ner pretrain-lm`` (tokens/s of training steps, as the run reports it on
rank 0: the whole job's tokens over rank 0's step time); training runs one epoch of ``ner train`` on the first
``--train-sentences`` sentences (whole documents) of the config's training file (sentences/s of the epoch, dev
scoring excluded). Also printed: each model's trainable parameters and the bytes DDP all-reduces per step (one
float32 gradient per parameter; a ring all-reduce sends 2 (N - 1) / N of that from each process). The last line
is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ner.config import load_config  # noqa: E402
from ner.elmo.pretrain_config import load_lm_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--lm-config", default=str(REPO / "configs" / "lm_reuters.yaml"))
    parser.add_argument("--lm-steps", type=int, default=30)
    parser.add_argument("--train-config", default=str(REPO / "configs" / "conll2003.yaml"))
    parser.add_argument("--train-sentences", type=int, default=1500)
    parser.add_argument("--data-dir", help="a folder with train.txt and dev.txt instead of the config's files")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {"pretrain_tokens_per_s": {}, "train_sentences_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train_file, dev_file = _subset(args.train_config, args.data_dir, args.train_sentences, Path(tmp))
        for processes in (1, args.processes):
            out = Path(tmp) / f"lm{processes}"
            _run(
                processes,
                [
                    "pretrain-lm",
                    args.lm_config,
                    f"output_dir={out}",
                    f"training.max_steps={args.lm_steps}",
                    f"training.eval_every={args.lm_steps}",
                    "data.heldout_sentences=200",
                    "training.progress=false",
                    "training.threads=1",
                    "training.device=cpu",
                ],
            )
            history = json.loads((out / "metrics.json").read_text())["history"]
            results["pretrain_tokens_per_s"][str(processes)] = history[-1]["tokens_per_s"]
            out = Path(tmp) / f"tagger{processes}"
            _run(
                processes,
                [
                    "train",
                    args.train_config,
                    f"output.dir={out}",
                    f"data.train={train_file}",
                    f"data.dev={dev_file}",
                    "data.test=",
                    "training.epochs=1",
                    "training.threads=1",
                    "training.device=cpu",
                    "output.progress=false",
                ],
            )
            epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            results["train_sentences_per_s"][str(processes)] = round(epochs[-1]["sentences_per_second"], 1)
            print(
                f"{processes} process(es): {json.dumps({k: v[str(processes)] for k, v in results.items()})}", flush=True
            )
        sizes = _parameters(args.lm_config, args.train_config, train_file)
    n = args.processes
    for name, key in (
        ("pretraining tokens/s", "pretrain_tokens_per_s"),
        ("training sentences/s", "train_sentences_per_s"),
    ):
        one, many = results[key]["1"], results[key][str(n)]
        results[key]["speedup"] = round(many / one, 2)
        print(f"{name:22s} 1 x 1 thread: {one:9.1f}   {n} x 1 thread: {many:9.1f}   x{many / one:.2f}")
    for name, count in sizes.items():
        print(
            f"{name}: {count:,} trainable parameters, {4 * count / 2**20:.1f} MiB of float32 gradients "
            f"all-reduced per step ({2 * (n - 1) / n * 4 * count / 2**20:.1f} MiB sent per process in a ring)"
        )
    print("command: flock -x /tmp/ner-cpu.lock .venv/bin/python " + shlex.join(sys.argv))
    print(
        json.dumps(
            {
                "processes": n,
                **results,
                "parameters": sizes,
                "lm_steps": args.lm_steps,
                "train_sentences": args.train_sentences,
            }
        )
    )


def _run(processes: int, argv: list[str]) -> None:
    """``ner ARGV`` in one process, or under ``torchrun --standalone`` in ``processes``, one thread each."""
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "ner.cli",
        ]
        if processes > 1
        else [sys.executable, "-m", "ner.cli"]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    job = subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True)
    if job.returncode != 0:
        sys.exit(f"{shlex.join(argv)} failed:\n{job.stderr[-3000:]}")


def _subset(config_path: str, data_dir: str | None, sentences: int, folder: Path) -> tuple[Path, Path]:
    """The first ``sentences`` sentences of the training file (whole documents: cut at a ``-DOCSTART-`` line
    past the count) and the first 200 of the dev file, the config's or ``data_dir``'s."""
    data = load_config(config_path).data
    if data_dir is not None:
        data.train, data.dev = str(Path(data_dir) / "train.txt"), str(Path(data_dir) / "dev.txt")
    paths = []
    for source, count, name in ((data.train, sentences, "train.txt"), (data.dev, 200, "dev.txt")):
        if source is None:
            sys.exit(f"{config_path}: data.train and data.dev are needed")
        kept, seen = [], 0
        for line in Path(source).read_text(encoding="utf-8").splitlines():
            if seen >= count and (line.startswith("-DOCSTART-") or (name == "dev.txt" and not line.strip())):
                break
            kept.append(line)
            seen += not line.strip()
        paths.append(folder / name)
        paths[-1].write_text("\n".join(kept) + "\n", encoding="utf-8")
    return paths[0], paths[1]


def _parameters(lm_config: str, train_config: str, train_file: Path) -> dict[str, int]:
    """Trainable parameters of the biLM with its softmax (vocabulary as the run builds it) and of the tagger."""
    from ner.data.sources import load_splits
    from ner.elmo.pretrain_data import build_vocab, read_sentences
    from ner.elmo.pretrain_model import BiLanguageModel
    from ner.model import Tagger

    lm = load_lm_config(lm_config)
    vocab = build_vocab(read_sentences(Path(lm.data.train), lm.data.format), lm.data.min_count, lm.data.max_vocab)
    bilm = BiLanguageModel(lm.model, len(vocab))
    config = load_config(train_config, [f"data.train={train_file}", "data.dev=", "data.test="])
    tagger = Tagger.build(config, load_splits(config.data)["train"])
    return {
        "biLM + softmax": sum(p.numel() for p in bilm.parameters()),
        "tagger": sum(p.numel() for p in tagger.model.parameters() if p.requires_grad),
    }


if __name__ == "__main__":
    main()
