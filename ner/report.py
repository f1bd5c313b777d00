"""``ner report RUN_DIR``: a self-contained ``report.html`` of a run, with plots (matplotlib: the ``report`` extra).

The page shows the loss and dev F1 per epoch (``metrics.jsonl``), then for dev and test the per-type precision,
recall and F1 and the entity-type confusion: each gold entity found with its type, found with another type, or
missed, and each predicted entity that is not there (spurious). Dev and test are the files named in the run's
``config.yaml``, tagged again by the best model; a split whose file is missing is skipped, and the page says so.
For a multi-seed run (``RUN/seed-N/`` run directories) every plot shows the seeds side by side, and a table gives
each seed's F1 with the mean and standard deviation.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ner.data.schemes import tags_to_spans
from ner.data.sources import check_unseen_tags, load_corpus
from ner.errors import NerError
from ner.evaluation import score_corpus
from ner.fileio import check_output, write_text_atomic
from ner.model import Tagger
from ner.rundir import is_multi_seed, seed_dirs

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ModuleNotFoundError as missing:
    raise NerError(
        f"`ner report` needs the report extra ({missing.name} is not installed): pip install 'ner[report]'"
    ) from None

REPORT_FILE = "report.html"
SPLITS = ("dev", "test")
NONE = "(none)"
"""The row of spurious entities (no gold entity there) and the column of missed ones (no prediction there)."""

Span = tuple[str, int, int]


@dataclass
class Confusion:
    """Entity-type confusion of one split: ``counts[gold, predicted]`` with ``NONE`` for a missing side (exact
    boundaries: a gold entity predicted with other boundaries counts as missed, and the prediction as spurious;
    ``boundary`` counts such missed entities that overlap a prediction)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    boundary: int = 0

    def add(self, gold: Sequence[Span], predicted: Sequence[Span]) -> None:
        """Count the entities of one sentence."""
        found = {(start, end): kind for kind, start, end in predicted}
        matched = set()
        for kind, start, end in gold:
            other = found.get((start, end))
            self.counts[kind, other or NONE] += 1
            if other is None:
                self.boundary += any(s < end and start < e for _, s, e in predicted)
            else:
                matched.add((start, end))
        for kind, start, end in predicted:
            if (start, end) not in matched:
                self.counts[NONE, kind] += 1

    def types(self) -> list[str]:
        return sorted({kind for pair in self.counts for kind in pair} - {NONE})

    def summary(self) -> dict[str, int]:
        """Totals: correct, wrong type, missed (of them overlapping a prediction: boundary), spurious."""
        right = sum(n for (gold, pred), n in self.counts.items() if gold == pred)
        return {
            "correct": right,
            "wrong type": sum(n for (g, p), n in self.counts.items() if NONE not in (g, p) and g != p),
            "missed": sum(n for (g, p), n in self.counts.items() if p == NONE),
            "of which boundary": self.boundary,
            "spurious": sum(n for (g, p), n in self.counts.items() if g == NONE),
        }


@dataclass
class SplitResult:
    """The best model's scores (``ner.evaluation.score``) and confusion on one split."""

    path: str
    scores: dict[str, Any]
    confusion: Confusion


@dataclass
class RunResult:
    """What the report shows of one run directory."""

    name: str
    epochs: list[dict[str, Any]]
    splits: dict[str, SplitResult]
    skipped: dict[str, str]  # split: why


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` (a run or a multi-seed run) to ``output`` (default ``RUN_DIR/report.html``);
    returns its path and says where it went on standard error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NerError(f"{run_dir}: no such run directory (expected the output.dir of `ner train`)")
    target = Path(output) if output else run_dir / REPORT_FILE
    check_output(target)
    if is_multi_seed(run_dir):
        seeds = {seed: path for seed, path in seed_dirs(run_dir).items() if (path / "model.pt").is_file()}
        for seed in sorted(seed_dirs(run_dir).keys() - seeds.keys()):
            print(f"{run_dir}: seed {seed} skipped: no model.pt yet", file=sys.stderr)
        if not seeds:
            raise NerError(f"{run_dir}: no seed has a model yet (expected seed-N/model.pt)")
        runs = [analyse(path, f"seed {seed}") for seed, path in seeds.items()]
    else:
        runs = [analyse(run_dir, run_dir.name)]
    write_text_atomic(target, render(run_dir, runs))
    print(f"report written to {target}", file=sys.stderr)
    return target


def analyse(run_dir: Path, name: str) -> RunResult:
    """Read the epochs of ``run_dir`` and tag its dev and test files with its best model."""
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        raise NerError(f"{run_dir}: no metrics.jsonl (expected a run directory written by `ner train`)")
    epochs = []
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            epochs.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise NerError(f"{log}:{number}: not a JSON record ({error.msg})") from None
    tagger = Tagger.load(run_dir)
    data = tagger.config.data
    splits, skipped = {}, {}
    for split in SPLITS:
        path = getattr(data, split) if data.source == "conll" else f"{data.hf_dataset} ({getattr(data, split)})"
        if data.source == "conll" and path is None:
            skipped[split] = "not set in config.yaml"
            continue
        if split == "dev" and tagger.config.training.train_with_dev:
            skipped[split] = "trained on (training.train_with_dev)"
            continue
        if data.source == "conll" and not Path(path).is_file():
            skipped[split] = f"{path}: no such file"
            continue
        print(f"{run_dir}: tagging {split} ({path})", file=sys.stderr)
        try:
            corpus = check_unseen_tags(load_corpus(data, split), tagger.tags.items, data.unseen_tags)
        except NerError as error:
            skipped[split] = str(error)
            continue
        scores, predicted = score_corpus(tagger, corpus)
        confusion = Confusion()
        for sentence, tags in zip(corpus.sentences, predicted):
            confusion.add(tags_to_spans(sentence.tags), tags_to_spans(tags))
        splits[split] = SplitResult(str(path), scores, confusion)
    for split, reason in skipped.items():
        print(f"{run_dir}: {split} skipped: {reason}", file=sys.stderr)
    return RunResult(name, epochs, splits, skipped)


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _png(figure: Figure) -> str:
    """The figure as an ``<img>`` with the PNG inline."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def curves_plot(runs: list[RunResult]) -> str:
    """Training loss and dev F1 per epoch, one line per run."""
    figure = Figure(figsize=(10, 3.4))
    loss_axes, f1_axes = figure.subplots(1, 2)
    for run in runs:
        epochs = [record["epoch"] for record in run.epochs]
        loss_axes.plot(epochs, [record["loss"] for record in run.epochs], marker=".", label=run.name)
        dev = [(record["epoch"], 100 * record["dev_f1"]) for record in run.epochs if "dev_f1" in record]
        if dev:
            f1_axes.plot(*zip(*dev), marker=".", label=run.name)
    loss_axes.set(title="training loss", xlabel="epoch")
    f1_axes.set(title="dev F1 (micro, %)", xlabel="epoch")
    for axes in (loss_axes, f1_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(runs) > 1 and axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    return _png(figure)


def bars_plot(types: list[str], series: dict[str, list[float]], title: str) -> str:
    """Grouped bars: for each entity type, one bar per series (e.g. P, R, F1; or one F1 per seed), in %."""
    figure = Figure(figsize=(max(5.0, 1.3 * len(types) + 2), 3.2))
    axes = figure.subplots()
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [t + (index - (len(series) - 1) / 2) * width for t in range(len(types))]
        axes.bar(positions, [100 * v for v in values], width, label=name)
    axes.set_xticks(range(len(types)), types)
    axes.set(title=title, ylim=(0, 100))
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def confusion_plot(confusion: Confusion, title: str) -> str:
    """A heat map of ``confusion``: gold types down, predicted types across, each cell's count written in it."""
    types = confusion.types()
    rows, columns = [*types, NONE], [*types, NONE]
    grid = [[confusion.counts.get((gold, pred), 0) for pred in columns] for gold in rows]
    grid[-1][-1] = 0  # no gold, no prediction: not counted
    figure = Figure(figsize=(1.0 * len(columns) + 1.6, 0.75 * len(rows) + 1.2))
    axes = figure.subplots()
    axes.imshow([[count**0.5 for count in row] for row in grid], cmap="Blues")  # square root: small counts show
    largest = max(map(max, grid)) or 1
    for r, row in enumerate(grid):
        for c, count in enumerate(row):
            if not (r == len(rows) - 1 and c == len(columns) - 1):
                axes.text(
                    c,
                    r,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if count**0.5 > 0.6 * largest**0.5 else "black",
                )
    axes.set_xticks(range(len(columns)), [*types, "missed"])
    axes.set_yticks(range(len(rows)), [*types, "spurious"])
    axes.set(xlabel="predicted", ylabel="gold", title=title)
    return _png(figure)


# ---------------------------------------------------------------------------------------------------------------
# The page


def render(run_dir: Path, runs: list[RunResult]) -> str:
    """The report page of ``runs`` (one, or one per seed)."""
    parts = [f"<h1>ner report: {html.escape(str(run_dir))}</h1>"]
    if len(runs) > 1:
        parts.append(_seed_table(runs))
    parts += ["<h2>Training</h2>", curves_plot(runs)]
    for run in runs:
        for split, reason in run.skipped.items():
            parts.append(f'<p class="skipped">{html.escape(run.name)}: {split} skipped: {html.escape(reason)}</p>')
    for split in SPLITS:
        results = {run.name: run.splits[split] for run in runs if split in run.splits}
        if results:
            parts.append(_split_section(split, results))
    style = (
        "body{font:14px/1.45 system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 1.5rem}"
        "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{padding:.2rem .7rem;text-align:right;"
        "border-bottom:1px solid #ddd}th:first-child,td:first-child{text-align:left}"
        ".row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.skipped{color:#a04000}"
        "img{max-width:100%}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>ner report</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _split_section(split: str, results: dict[str, SplitResult]) -> str:
    """Per-type scores and confusion of one split, for one run or side by side for several."""
    first = next(iter(results.values()))
    parts = [f"<h2>{split.capitalize()} <small>{html.escape(first.path)}</small></h2>"]
    types = sorted({t for result in results.values() for t in result.scores["default"] if t != "micro"})
    if len(results) == 1:
        report = first.scores["default"]
        series = {
            name: [report.get(t, {}).get(key, 0.0) for t in types]
            for name, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"))
        }
        parts.append(
            f'<div class="row">{bars_plot(types, series, f"{split}: per-type scores (%)")}'
            f"{_scores_table(report, types)}</div>"
        )
    else:
        series = {
            name: [result.scores["default"].get(t, {}).get("f1", 0.0) for t in types]
            for name, result in results.items()
        }
        parts.append(bars_plot(types, series, f"{split}: per-type F1 (%) by seed"))
    parts.append("<h3>Entity types: found, confused, missed, spurious</h3>")
    parts.append(
        '<div class="row">'
        + "".join(
            f"<div>{confusion_plot(result.confusion, f'{split}: {name}')}{_summary_table(result.confusion)}</div>"
            for name, result in results.items()
        )
        + "</div>"
    )
    return "\n".join(parts)


def _scores_table(report: dict[str, dict[str, float]], types: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{report[t]['support']}</td>"
        + "".join(f"<td>{100 * report[t][k]:.2f}</td>" for k in ("precision", "recall", "f1"))
        + "</tr>"
        for t in [*types, "micro"]
        if t in report
    )
    return "<table><tr><th>type</th><th>support</th><th>P</th><th>R</th><th>F1</th></tr>" + rows + "</table>"


def _summary_table(confusion: Confusion) -> str:
    rows = "".join(f"<tr><td>{name}</td><td>{count}</td></tr>" for name, count in confusion.summary().items())
    return f"<table>{rows}</table>"


def _seed_table(runs: list[RunResult]) -> str:
    """Each seed's micro F1 on dev and test, with the mean and sample standard deviation."""
    header = "<tr><th>seed</th><th>epochs</th>" + "".join(f"<th>{s} F1</th>" for s in SPLITS) + "</tr>"
    columns: dict[str, list[float]] = {split: [] for split in SPLITS}
    rows = []
    for run in runs:
        cells = []
        for split in SPLITS:
            result = run.splits.get(split)
            if result is None:
                cells.append("<td>n/a</td>")
                continue
            f1 = 100 * result.scores["default"]["micro"]["f1"]
            columns[split].append(f1)
            cells.append(f"<td>{f1:.2f}</td>")
        rows.append(f"<tr><td>{html.escape(run.name)}</td><td>{len(run.epochs)}</td>{''.join(cells)}</tr>")
    summary = "".join(
        f"<td>{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}</td>"
        if values
        else "<td>n/a</td>"
        for values in columns.values()
    )
    rows.append(f"<tr><th>mean ± std</th><td></td>{summary}</tr>")
    return f"<table>{header}{''.join(rows)}</table>"
