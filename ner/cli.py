"""The ``ner`` command: train | evaluate | tag | export | serve | report | pretrain-lm.

Each subcommand only parses its arguments and calls a library function; a ``NerError`` from the library becomes
one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from ner.errors import NerError
from ner.fileio import check_output
from ner.log import setup_logging
from ner.serve.limits import Limits

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
    setup_logging()
    try:
        args.run(args)
    except NerError as error:
        if not getattr(error, "silent", False):  # under torchrun, the other ranks of a failed job stay silent
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a file that cannot be read or written (permissions, a full disk): one line too
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _add(commands, "train", "train a tagger from a YAML config", _train)
    train.add_argument("config", nargs="?", help="YAML config, e.g. configs/sample.yaml (optional with --resume)")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. training.epochs=3 model.lstm.hidden_size=64",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--seeds", metavar="1,2,3", help="one run per seed in RUN/seed-N, then RUN/summary.json")
    train.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="with --seeds: train N seeds side by side, one thread each"
    )

    evaluate = _add(commands, "evaluate", "score a trained tagger on a labelled CoNLL file", _evaluate)
    evaluate.add_argument("run_dir", help="run directory written by `ner train` (of a multi-seed run: every seed)")
    evaluate.add_argument("data_file", help="CoNLL file with gold tags")
    evaluate.add_argument("--output", metavar="PRED_FILE", help="also write token, gold and predicted tag columns")
    _add_precision(evaluate)

    tag = _add(commands, "tag", "find entities in raw text files", _tag)
    tag.add_argument("run_dir", help="run directory written by `ner train` (with --backend onnx: of `ner export`)")
    tag.add_argument("inputs", nargs="+", metavar="INPUT", help="text files, directories of *.txt, or - for stdin")
    tag.add_argument("-o", "--output", help="output file (default: standard output)")
    tag.add_argument(
        "--format",
        choices=["jsonl", "conll", "inline", "html"],
        default="jsonl",
        help="html: a self-contained page, entities highlighted as on the page of `ner serve`",
    )
    tag.add_argument("--batch-size", type=int, default=64)
    tag.add_argument("--min-score", type=float, default=0.0, help="drop entities below this probability")
    tag.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that tag side by side, one thread each (e.g. the number of cores)",
    )
    tag.add_argument(
        "--backend",
        choices=["pytorch", "onnx"],
        default="pytorch",
        help="onnx: run a `ner export` directory with onnxruntime (the onnx extra)",
    )
    _add_precision(tag)
    tag.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: tag in Ray actors (--workers of them), JSONL only (the ray extra)",
    )
    tag.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: a running Ray cluster (HOST:PORT of its "
        "head, or auto); default: a Ray started on this machine",
    )

    export = _add(commands, "export", "export a trained tagger as ONNX graphs + CRF for onnxruntime", _export)
    export.add_argument("run_dir", help="run directory written by `ner train`")
    export.add_argument("out_dir", help="new directory to write (refused if it exists and is not empty)")

    serve = _add(commands, "serve", "serve a tagger over HTTP: POST /tag, GET /health, a page at /", _serve)
    serve.add_argument("run_dir", help="run directory written by `ner train`")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for every interface)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0: any free port)")
    serve.add_argument("--threads", type=int, help="torch threads for tagging (default: torch's choice)")
    _add_precision(serve)
    for field in dataclasses.fields(Limits):
        serve.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type == "int" else float,
            default=field.default,
            metavar="N",
            help=field.metadata["help"] + " (default: %(default)s)",
        )

    report = _add(
        commands,
        "report",
        "write RUN_DIR/report.html: training curves, per-type scores, entity-type confusion on dev/test",
        _report,
    )
    report.add_argument("run_dir", help="run directory written by `ner train` (or a multi-seed run's folder)")
    report.add_argument("-o", "--output", help="where to write the page (default: RUN_DIR/report.html)")

    pretrain = _add(commands, "pretrain-lm", "pretrain the ELMo biLM on unlabelled text", _pretrain_lm)
    pretrain.add_argument("config", help="YAML config, e.g. configs/lm_reuters.yaml")
    pretrain.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    pretrain.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")
    return parser


def _add(
    commands: argparse._SubParsersAction, name: str, help_text: str, run: Callable[[argparse.Namespace], None]
) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(run=run)
    return sub


def _add_precision(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--precision",
        choices=["float32", "bf16"],
        default="float32",
        help="bf16: the BiLSTM's products in bfloat16 with float32 sums on CPUs that have them "
        "(AVX512-BF16), float32 elsewhere; faster, F1 unchanged on CoNLL-2003 (BENCHMARKS.md)",
    )


def _train(args: argparse.Namespace) -> None:
    from ner.seeds import train_command

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]  # `ner train --resume RUN key=value`: no config file
    train_command(config, overrides, resume=args.resume, seeds=args.seeds, parallel=args.parallel)


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ner.evaluation import evaluate_run
    from ner.rundir import is_multi_seed
    from ner.seeds import evaluate_seeds

    if is_multi_seed(Path(args.run_dir)):
        if args.output:
            raise NerError(
                f"--output: {args.run_dir} holds several seeds; give one seed's folder "
                f"({args.run_dir}/seed-N) to write its predictions"
            )
        evaluate_seeds(Path(args.run_dir), args.data_file, verbose=True, precision=args.precision)
        return
    evaluate_run(args.run_dir, args.data_file, predictions_path=args.output, verbose=True, precision=args.precision)


def _tag(args: argparse.Namespace) -> None:
    from ner.model import Tagger
    from ner.tagging import freeze_long_lived, tag_files

    if args.batch_size < 1:
        raise NerError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if args.output:
        check_output(args.output, inputs=args.inputs)  # before loading the model
    if args.engine == "ray":
        _tag_on_ray(args)
        return
    if args.address:
        raise NerError("--address: only with --engine ray")
    if args.backend == "onnx":
        from ner.runtime import OnnxTagger

        if args.precision != "float32":
            raise NerError(f"--precision {args.precision}: only with --backend pytorch")
        tagger = OnnxTagger.load(args.run_dir, threads=1 if args.workers > 1 else None)
    else:
        tagger = Tagger.load(args.run_dir, precision=args.precision)
    freeze_long_lived()
    tag_files(
        tagger,
        args.inputs,
        output=args.output,
        fmt=args.format,
        batch_size=args.batch_size,
        min_score=args.min_score,
        progress=True,
        workers=args.workers,
    )


def _tag_on_ray(args: argparse.Namespace) -> None:
    from ner.ray_tagging import tag_files_on_ray

    if args.precision != "float32":
        raise NerError(f"--precision {args.precision}: only with --engine local")
    if args.format != "jsonl" or args.backend != "pytorch":
        raise NerError(
            f"--engine ray: writes --format jsonl with --backend pytorch, got --format {args.format} "
            f"--backend {args.backend}"
        )
    tag_files_on_ray(
        args.run_dir,
        args.inputs,
        output=args.output,
        batch_size=args.batch_size,
        min_score=args.min_score,
        workers=args.workers,
        address=args.address,
        progress=True,
    )


def _export(args: argparse.Namespace) -> None:
    from ner.export.onnx import export_onnx

    meta = export_onnx(args.run_dir, args.out_dir)
    graphs = ", ".join(name for name in meta["graphs"].values() if name)
    print(
        f"exported {args.run_dir} to {args.out_dir}: {graphs}, {meta['crf']}, vocabularies; onnxruntime's "
        f"emissions within {meta['check']['max_abs_emission_difference']:.1e} of PyTorch's on "
        f"{meta['check']['sentences']} check sentences"
    )


def _serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ner.model import Tagger
    from ner.serve.app import listen, run_server

    limits = Limits(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Limits)})
    if args.threads is not None and args.threads < 1:
        raise NerError(f"--threads: expected an integer >= 1, got {args.threads}")
    listener = listen(args.host, args.port)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    run_server(
        Tagger.load(args.run_dir, precision=args.precision), listener, limits, name=Path(args.run_dir).resolve().name
    )


def _report(args: argparse.Namespace) -> None:
    from ner.report import write_report

    write_report(args.run_dir, args.output)


def _pretrain_lm(args: argparse.Namespace) -> None:
    from ner.elmo.pretrain import pretrain_lm

    pretrain_lm(args.config, args.overrides, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
