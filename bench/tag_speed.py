"""Tokens/s of `ner tag` (read, split, tokenize, tag, write JSONL) against Flair's SequenceTagger.predict.

The text is the first ``--lines`` lines of the Reuters-21578 file (one tokenized sentence per line), detokenized
into plain raw text with ``bench/tokenizer_agreement.py``'s detokenizer (that step is not timed). Our side runs
``ner.tagging.tag_files`` on it, the whole pipeline, with ``--threads`` worker processes of one thread each
(``ner tag --workers``), and reports the share of the work in each stage. Flair's side, with ``--threads``
torch threads, gets the very same token lists (our tokenizer's output) and times only
``SequenceTagger.predict`` (building its ``Sentence`` objects is timed apart), with the same sizes
(``flair_side.py`` says how they map), in float32 (ours in ``--precision``). Flair's weights are untrained:
speed does not depend on them. Flair runs in its own virtual environment (``python3 -m venv .bench-venv &&
.bench-venv/bin/pip install -c constraints.txt flair``) in a subprocess.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/tag_speed.py RUN_DIR [--lines 20000] [--batch-size 64] \\
        [--threads 2] [--precision bf16] [--flair-python .bench-venv/bin/python | --no-flair]
    # without a trained run: a fresh, untrained model of the config's sizes (speed does not depend on training)
    ... bench/tag_speed.py --untrained configs/conll2003.yaml data.train=../shared/data/conll2003/train.txt \\
        data.dev=../shared/data/conll2003/dev.txt data.test=../shared/data/conll2003/test.txt

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NER_SHARED_DIR", REPO.parent / "shared"))
STAGES = ("read", "split", "tag", "write")


def load_tagger(args: argparse.Namespace):
    """The tagger of RUN_DIR, or an untrained one built from ``--untrained CONFIG [KEY=VALUE ...]``."""
    from ner.model import Tagger

    if args.untrained:
        from ner.config import load_config
        from ner.data.sources import load_corpus

        config = load_config(args.untrained, args.overrides)
        tagger = Tagger.build(config, load_corpus(config.data, "train"), device="cpu")
        tagger.model.eval()
        tagger.model.set_inference_precision(args.precision)
        return tagger
    return Tagger.load(args.run_dir, device="cpu", precision=args.precision)


def raw_text(path: Path, lines: int, out: Path) -> int:
    """Write the first ``lines`` lines of ``path`` detokenized to ``out``; returns the number of lines."""
    from tokenizer_agreement import detokenize

    count = 0
    with open(path, encoding="utf-8") as source, open(out, "w", encoding="utf-8") as sink:
        for line in source:
            if count == lines:
                break
            sink.write(detokenize(line.split())[0] + "\n")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", help="run directory of a trained model")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for --untrained")
    parser.add_argument("--untrained", metavar="CONFIG", help="time a fresh model built from this config instead")
    parser.add_argument("--text", default=str(SHARED / "data" / "unlabeled" / "reuters21578.txt"))
    parser.add_argument("--lines", type=int, default=20_000, help="lines of --text to tag")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="cores: our worker processes, Flair's threads")
    parser.add_argument(
        "--precision", choices=["float32", "bf16"], default="float32", help="ours (`ner tag --precision`)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="sentences tagged before timing, on both sides")
    parser.add_argument("--flair-python", default=str(REPO / ".bench-venv" / "bin" / "python"))
    parser.add_argument("--no-flair", action="store_true")
    args = parser.parse_args()
    if args.untrained and args.run_dir:  # with --untrained every positional is an override
        args.overrides.insert(0, args.run_dir)
    elif not args.untrained and not args.run_dir:
        parser.error("give RUN_DIR or --untrained CONFIG")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from flair_side import model_sizes, run_flair

    from ner.data.text import split_sentences
    from ner.entities import tag_text
    from ner.tagging import tag_files

    torch.set_num_threads(args.threads)
    tagger = load_tagger(args)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.txt"
        lines = raw_text(Path(args.text), args.lines, raw)
        texts = raw.read_text(encoding="utf-8").splitlines()
        tag_text(tagger, "\n".join(texts[: args.warmup]))
        stats = tag_files(
            tagger, [str(raw)], output=str(Path(folder) / "out.jsonl"), batch_size=args.batch_size, workers=args.threads
        )
        ours = stats["tokens_per_second"]
        work = sum(stats[f"{stage}_seconds"] for stage in STAGES)  # summed over the worker processes
        shares = {stage: stats[f"{stage}_seconds"] / work for stage in STAGES}
        print(
            f"ours: {lines} lines, {stats['sentences']:.0f} sentences, {stats['tokens']:.0f} tokens in "
            f"{stats['seconds']:.2f} s with {args.threads} worker processes: {ours:,.0f} tokens/s (tagging stage "
            f"alone {stats['tokens'] / stats['tag_seconds']:,.0f} tokens/s per worker)"
        )
        print("  share of the work: " + ", ".join(f"{stage} {100 * share:.1f}%" for stage, share in shares.items()))
        parameters = sum(p.numel() for p in tagger.model.parameters())
        print(f"  ours: {parameters:,} parameters")
        result = {
            "lines": lines,
            "tokens": stats["tokens"],
            "threads": args.threads,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "ours_parameters": parameters,
            "ours_tokens_per_second": round(ours),
            "ours_seconds": round(stats["seconds"], 3),
            "ours_tag_stage_tokens_per_second": round(stats["tokens"] / stats["tag_seconds"]),
            "stage_shares": {stage: round(share, 4) for stage, share in shares.items()},
        }
        if not args.no_flair:
            sentences = [[token.text for token in sentence] for text in texts for sentence in split_sentences(text)]
            flair = run_flair(
                args.flair_python,
                "predict",
                {
                    **model_sizes(tagger),
                    "sentences": sentences,
                    "threads": args.threads,
                    "batch_size": args.batch_size,
                    "warmup": args.warmup,
                },
                Path(folder),
            )
            if flair is None:
                result["flair"] = None
            else:
                speed_up = ours / flair["predict_tokens_per_second"]
                print(
                    f"flair SequenceTagger.predict: {flair['tokens']} tokens in {flair['predict_seconds']:.2f} s: "
                    f"{flair['predict_tokens_per_second']:,.0f} tokens/s (building Sentence objects "
                    f"{flair['sentence_seconds']:.2f} s more; {flair['parameters']:,} parameters)"
                )
                print(f"ours (whole pipeline) / flair (predict only): {speed_up:.1f}x")
                result["flair_predict_tokens_per_second"] = round(flair["predict_tokens_per_second"])
                result["flair_sentence_seconds"] = round(flair["sentence_seconds"], 3)
                result["speed_up"] = round(speed_up, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
