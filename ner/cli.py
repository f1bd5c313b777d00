"""The ``ner`` command: train | evaluate | tag | pretrain-lm.

Each subcommand only parses its arguments and calls a library function; a ``NerError`` from the library becomes
one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from ner.errors import NerError

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ner`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow an option (``CONFIG --resume a.b=1``), which argparse leaves over
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.run(args)
    except NerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _add(commands, "train", "train a tagger from a YAML config", _train)
    train.add_argument("config", help="YAML config, e.g. configs/sample.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. training.epochs=3 model.lstm.hidden_size=64")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")

    evaluate = _add(commands, "evaluate", "score a trained tagger on a labelled CoNLL file", _evaluate)
    evaluate.add_argument("run_dir", help="run directory written by `ner train`")
    evaluate.add_argument("data_file", help="CoNLL file with gold tags")
    evaluate.add_argument("--output", metavar="PRED_FILE", help="also write token, gold and predicted tag columns")

    tag = _add(commands, "tag", "find entities in raw text files", _tag)
    tag.add_argument("run_dir", help="run directory written by `ner train`")
    tag.add_argument("inputs", nargs="+", metavar="INPUT", help="text files, directories of *.txt, or - for stdin")
    tag.add_argument("-o", "--output", help="output file (default: standard output)")
    tag.add_argument("--format", choices=["jsonl", "conll", "inline"], default="jsonl")
    tag.add_argument("--batch-size", type=int, default=64)
    tag.add_argument("--min-score", type=float, default=0.0, help="drop entities below this probability")
    tag.add_argument("--workers", type=int, default=1,
                     help="processes that tag side by side, one thread each (e.g. the number of cores)")

    pretrain = _add(commands, "pretrain-lm", "pretrain the ELMo biLM on unlabelled text", _pretrain_lm)
    pretrain.add_argument("config", help="YAML config, e.g. configs/lm_reuters.yaml")
    pretrain.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    pretrain.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")
    return parser


def _add(commands: argparse._SubParsersAction, name: str, help_text: str,
         run: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(run=run)
    return sub


def _train(args: argparse.Namespace) -> None:
    from ner.training import train_from_config

    train_from_config(args.config, args.overrides, resume=args.resume)


def _evaluate(args: argparse.Namespace) -> None:
    from ner.evaluation import evaluate_run

    evaluate_run(args.run_dir, args.data_file, predictions_path=args.output, verbose=True)


def _tag(args: argparse.Namespace) -> None:
    from ner.model import Tagger
    from ner.tagging import tag_files

    if args.batch_size < 1:
        raise NerError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    tagger = Tagger.load(args.run_dir)
    tag_files(tagger, args.inputs, output=args.output, fmt=args.format, batch_size=args.batch_size,
              min_score=args.min_score, progress=True, workers=args.workers)


def _pretrain_lm(args: argparse.Namespace) -> None:
    from ner.elmo.pretrain import pretrain_lm

    pretrain_lm(args.config, args.overrides, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
