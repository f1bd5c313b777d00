"""Pretraining throughput: a short run of ``ner pretrain-lm`` on the real text, in a temporary folder.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/pretrain_lm.py [--config CONFIG] [--steps N] [KEY=VALUE ...]

Runs ``--steps`` training steps of CONFIG (default configs/lm_reuters.yaml, KEY=VALUE overrides as for
``ner pretrain-lm``) and reports tokens/s (forward-LM
targets per second of training steps, excluding data loading and evaluation), seconds per step and the implied
hours per epoch. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from ner.elmo.pretrain import load_lm_config, pretrain_lm, read_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/lm_reuters.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            *args.overrides,
            f"training.max_steps={args.steps}",
            f"training.eval_every={args.steps}",
            "data.heldout_sentences=200",
            "training.progress=false",
            f"output_dir={tmp}",
        ]
        config = load_lm_config(args.config, overrides)
        result = pretrain_lm(config)
    train_tokens = sum(len(s) + 1 for s in read_sentences(Path(config.data.train)))
    hours_per_epoch = train_tokens / result["tokens_per_s"] / 3600
    params = _count_parameters(config)
    figures = {
        "config": args.config,
        "overrides": args.overrides,
        "threads": torch.get_num_threads(),
        "steps": result["step"],
        "tokens": result["tokens"],
        "tokens_per_s": result["tokens_per_s"],
        "seconds_per_step": round(result["train_seconds"] / result["step"], 3),
        "hours_per_epoch": round(hours_per_epoch, 2),
        "bilm_parameters": params,
        "train_loss": result["train_loss"],
    }
    print(
        f"{params / 1e6:.2f} M biLM parameters, {torch.get_num_threads()} threads: "
        f"{result['tokens_per_s']:.0f} tokens/s, {figures['seconds_per_step']} s/step, "
        f"{hours_per_epoch:.2f} h/epoch ({train_tokens} tokens)"
    )
    print("command: flock -x /tmp/ner-cpu.lock .venv/bin/python " + " ".join(sys.argv))
    print(json.dumps(figures))


def _count_parameters(config) -> int:
    from ner.elmo.bilm import BiLM

    return sum(p.numel() for p in BiLM(config.model.bilm_options()).parameters())


if __name__ == "__main__":
    main()
