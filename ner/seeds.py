"""Multi-seed runs: one training run per seed in ``RUN/seed-N/``, then ``RUN/summary.json`` and a table.

``ner train CONFIG --seeds 1,2,3 [--parallel N]`` (or ``training.seeds`` in the YAML file) trains the seeds one
after another, or N at a time in separate processes of one thread each. ``RUN/config.yaml`` keeps the resolved
config, so ``ner train --resume RUN`` continues every unfinished seed where it stopped and skips the finished.
The summary holds, for dev and test, each seed's micro and per-type F1 and their mean and sample standard
deviation; ``best_seed`` is the seed with the best dev F1 (the one ``ner tag RUN`` and ``Tagger.load`` use).
``evaluate_seeds`` scores every seed of such a run on a labelled file, with the mean.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ner.checkpoints import CHECKPOINT_FILE, METRICS_FILE, METRICS_LOG
from ner.config import Config, config_from_dict, config_to_dict, load_config, save_config
from ner.distributed import from_environment
from ner.errors import NerError
from ner.evaluation import evaluate_run
from ner.fileio import refuse_links_out, write_json_atomic
from ner.log import log, setup_logging
from ner.rundir import ROOT_CONFIG, SEED_PREFIX, SUMMARY_FILE, seed_dir, seed_dirs
from ner.training import train, train_from_config
from ner.yaml_config import read_yaml


def train_seeds(config: Config, run_dir: Path, parallel: int = 1, resume: bool = False) -> dict[str, Any]:
    """Train one run per seed of ``config.training.seeds`` (``parallel`` at a time) and write the summary."""
    seeds = config.training.seeds
    if parallel < 1:
        raise NerError(f"--parallel: expected an integer >= 1, got {parallel}")
    if from_environment().distributed:
        raise NerError("--seeds: a torchrun job trains one seed (start one job per seed, each with its output.dir)")
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise NerError(
                f"{run_dir}: not empty; continue its seeds with --resume {run_dir} or choose another output.dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / ROOT_CONFIG)
    jobs = [(config_to_dict(_seed_config(config, seed, parallel > 1)), seed) for seed in seeds]
    if parallel == 1 or len(seeds) == 1:
        for job in jobs:
            _train_one(*job)
    else:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited thread pools
        with ProcessPoolExecutor(max_workers=min(parallel, len(seeds)), mp_context=context) as pool:
            failures = []
            for seed, future in zip(seeds, [pool.submit(_train_one, *job) for job in jobs]):
                try:
                    future.result()
                except NerError as error:
                    failures.append(f"seed {seed}: {error}")
            if failures:
                raise NerError("; ".join(failures))
    summary = summarize(run_dir, seeds)
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    log.info(
        "seeds %s:\n%s\nsummary written to %s (plots: ner report %s)",
        ", ".join(map(str, seeds)),
        format_summary(summary),
        run_dir / SUMMARY_FILE,
        run_dir,
    )
    return summary


def resume_seeds(run_dir: Path, parallel: int = 1) -> dict[str, Any]:
    """Continue the multi-seed run in ``run_dir`` from its saved config: unfinished seeds resume, finished stay."""
    config = config_from_dict(read_yaml(run_dir / ROOT_CONFIG), run_dir, str(run_dir / ROOT_CONFIG))
    if not config.training.seeds:
        raise NerError(f"{run_dir / ROOT_CONFIG}: training.seeds is empty: not a multi-seed run")
    return train_seeds(config, run_dir, parallel, resume=True)


def _seed_config(config: Config, seed: int, side_by_side: bool) -> Config:
    """The config of one seed's run: its seed and folder; one thread and no progress bars when side by side."""
    single = copy.deepcopy(config)
    single.training.seed, single.training.seeds = seed, []
    single.output.dir = str(seed_dir(Path(config.output.dir or "."), seed))
    if side_by_side:
        single.training.threads, single.output.progress = 1, False
    return single


def _train_one(raw_config: dict[str, Any], seed: int) -> None:
    """Train (or resume, or skip if finished) one seed's run; runs in a worker process when side by side."""
    setup_logging(prefix=f"seed {seed}: ")
    try:
        config = config_from_dict(raw_config, Path.cwd(), f"seed {seed}")
        run_dir = Path(config.output.dir or ".")
        if (run_dir / METRICS_FILE).is_file():
            log.info("finished before: %s", run_dir)
        elif (run_dir / CHECKPOINT_FILE).is_file():
            train_from_config(None, resume=run_dir)
        else:
            train(config, run_dir)
    finally:
        setup_logging()  # back to unprefixed lines (one process trains the seeds in turn without --parallel)


def summarize(run_dir: Path, seeds: list[int]) -> dict[str, Any]:
    """Per seed: best epoch, epochs, training minutes, dev and test F1 (micro and per type); then the mean and
    sample standard deviation (null for one seed) of each F1 over the seeds; ``best_seed`` by dev F1."""
    runs: dict[str, Any] = {}
    for seed in seeds:
        path = seed_dir(run_dir, seed)
        try:
            metrics = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))
            epochs = [json.loads(line) for line in (path / METRICS_LOG).read_text(encoding="utf-8").splitlines()]
        except (OSError, ValueError) as error:
            raise NerError(f"{path}: cannot read the seed's metrics: {error}") from None
        runs[str(seed)] = {
            "best_epoch": metrics["best_epoch"],
            "epochs": metrics["epochs"],
            "train_minutes": round(sum(e["seconds"] for e in epochs) / 60, 1),
            **{split: _f1s(metrics[split]) for split in ("dev", "test") if split in metrics},
        }
    summary: dict[str, Any] = {"seeds": seeds, "runs": runs}
    for split in ("dev", "test"):
        per_seed = [run[split] for run in runs.values() if split in run]
        if len(per_seed) == len(seeds):
            summary[split] = {name: _mean_std([f1s[name] for f1s in per_seed]) for name in per_seed[0]}
    if "dev" in summary:
        summary["best_seed"] = max(seeds, key=lambda seed: (runs[str(seed)]["dev"]["micro"], -seed))
    return summary


def _f1s(scores: dict[str, Any]) -> dict[str, float]:
    """Micro and per-type F1 (default mode) of a ``score`` result."""
    return {name: row["f1"] for name, row in scores["default"].items()}


def _mean_std(values: list[float]) -> dict[str, float | None]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a table: one row per seed, then mean +- std; per entity type below."""
    lines = [f"{'seed':>6} | {'dev F1':>7} | {'test F1':>7} | best epoch / epochs | minutes"]
    for seed, run in summary["runs"].items():
        dev, test = run.get("dev", {}).get("micro"), run.get("test", {}).get("micro")
        lines.append(
            f"{seed:>6} | {_pct(dev):>7} | {_pct(test):>7} | {run['best_epoch']:>10} / {run['epochs']:<6} |"
            f" {run['train_minutes']:>7}"
        )
    lines.append(
        f"{'mean':>6} | {_pm(summary.get('dev', {}).get('micro'))} | "
        f"{_pm(summary.get('test', {}).get('micro'))}   (mean +- sample std)"
    )
    for split in ("dev", "test"):
        if split in summary:
            types = [name for name in summary[split] if name != "micro"]
            lines.append(f"{split} F1 per type: " + ", ".join(f"{name} {_pm(summary[split][name])}" for name in types))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _pm(stats: dict[str, float | None] | None) -> str:
    if not stats:
        return "n/a"
    std = stats["std"]
    return f"{100 * stats['mean']:.2f} +- {'n/a' if std is None else f'{100 * std:.2f}'}"


def evaluate_seeds(
    run_dir: Path, data_file: str | Path, verbose: bool = False, precision: str = "float32"
) -> dict[str, Any]:
    """Score every finished seed of a multi-seed run on a labelled file (``evaluate_run``); writes and returns the
    per-seed F1s with their mean and std (``RUN/evaluate/<file stem>/summary.json``)."""
    scores = {
        seed: evaluate_run(path, data_file, precision=precision)
        for seed, path in seed_dirs(run_dir).items()
        if (path / METRICS_FILE).is_file()
    }
    if not scores:
        raise NerError(f"{run_dir}: no seed has finished training (expected {SEED_PREFIX}N/{METRICS_FILE})")
    per_seed = {str(seed): _f1s(result) for seed, result in scores.items()}
    names = next(iter(per_seed.values())).keys()
    result = {
        "data": str(data_file),
        "seeds": per_seed,
        "mean": {name: _mean_std([f1s.get(name, math.nan) for f1s in per_seed.values()]) for name in names},
    }
    out = run_dir / "evaluate" / Path(data_file).stem
    refuse_links_out(run_dir, [out / SUMMARY_FILE])
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SUMMARY_FILE, result)
    if verbose:
        for seed, f1s in per_seed.items():
            print(f"seed {seed}: F1 {100 * f1s['micro']:.2f}")
        print(
            f"mean over {len(per_seed)} seeds: F1 {_pm(result['mean']['micro'])}; per type: "
            + ", ".join(f"{name} {_pm(stats)}" for name, stats in result["mean"].items() if name != "micro")
        )
        print(f"written to {out / SUMMARY_FILE}")
    return result


def train_command(
    config_path: str | None,
    overrides: list[str],
    resume: str | None = None,
    seeds: str | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """``ner train``: one run, or one per seed (``--seeds 1,2,3`` or ``training.seeds``), or a resumed run of
    either kind (then the config file is optional: the run has its own)."""
    setup_logging()
    if resume is not None and config_path is not None:
        log.warning("%s: not read: a resumed run continues with its own config", config_path)
    if resume is not None:
        if seeds is not None:
            raise NerError("--seeds: a resumed run keeps the seeds it was started with")
        run_dir = Path(resume)
        if (
            (run_dir / ROOT_CONFIG).is_file()
            and not (run_dir / CHECKPOINT_FILE).exists()
            and any(run_dir.glob(f"{SEED_PREFIX}*"))
        ):
            return resume_seeds(run_dir, parallel)
        return train_from_config(None, overrides, resume=run_dir)
    if config_path is None:
        raise NerError("train: a config file is required unless --resume is given")
    if seeds is not None:
        overrides = [*overrides, f"training.seeds=[{_seed_list(seeds)}]"]
    config = load_config(config_path, overrides)
    if config.training.seeds:
        return train_seeds(config, Path(config.output.dir or "."), parallel)
    if parallel != 1:
        raise NerError("--parallel: runs seeds side by side; give --seeds 1,2,3 (or training.seeds) too")
    return train_from_config(config_path, overrides)


def _seed_list(text: str) -> str:
    parts = [part.strip() for part in text.split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        raise NerError(f"--seeds: expected comma-separated integers such as 1,2,3, got {text!r}")
    return ", ".join(parts)
