"""Speed of our LSTM (ner.nn.LSTM) against torch.nn.LSTM with the same weights, in one process.

CoNLL-like shapes: input 150, hidden 200, bidirectional, sentence lengths sampled from the CoNLL-2003 training
file. Cases: a training step (forward + backward, batch 32) and inference (no grad) at batch 1 and 64, plus the
ELMo-style projected cell (LSTMP 128/512, unidirectional, with a mask; torch has no clipping, so cost only) as
a training step. torch runs on padded input ("torch padded": its backward direction then reads padding first)
and on packed sequences ("torch packed": correct). Each figure is the median over calls (each call a different
batch, the implementations interleaved batch by batch); ratio = ours / the faster of torch's two ways. Ours runs
the C++ kernel where it could be built (``ner.nn.lstm_kernel``; ``NER_LSTM_KERNEL=0`` measures the PyTorch path),
as the header says.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/lstm_speed.py [--data PATH] [--threads 2] [--calls 60]
        [--clock wall|cpu]

``--clock cpu`` times each call by the process's CPU time instead of the wall clock: with one thread on a machine
that other jobs load, it leaves out the time the process waits for a core (with several threads it would count
their spinning). After the table, one summary line per case; the last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ner.nn import LSTM, lstm_kernel  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003" / "train.txt"


def sentence_lengths(path: Path) -> list[int]:
    """Token counts of the sentences of a CoNLL file (blank-line separated, -DOCSTART- lines skipped)."""
    lengths, count = [], 0
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if count:
                lengths.append(count)
            count = 0
        elif not line.startswith("-DOCSTART-"):
            count += 1
    return lengths


def make_batches(lengths: list[int], batch: int, count: int, size: int, seed: int) -> list[tuple]:
    """``count`` batches (x (batch, T, size), mask (batch, T), lengths) with lengths drawn from ``lengths``."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        drawn = torch.tensor([rng.choice(lengths) for _ in range(batch)])
        mask = torch.arange(int(drawn.max())) < drawn[:, None]
        x = torch.randn(batch, mask.shape[1], size, generator=generator) * mask[..., None]
        batches.append((x, mask, drawn))
    return batches


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(function: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    function()
    return clock() - start


def torch_call(reference: torch.nn.LSTM, packed: bool) -> Callable:
    """torch.nn.LSTM on padded or packed input, returning the padded output."""

    def call(x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not packed:
            return reference(x)[0]
        sequences = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(reference(sequences)[0], batch_first=True, total_length=x.shape[1])[0]

    return call


def ours_call(ours: LSTM) -> Callable:
    def call(x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return ours(x, mask)[0]

    return call


def measure(
    calls: dict[str, Callable], batches: list[tuple], train: bool, repeats: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median seconds per call of each implementation, calls interleaved batch by batch."""
    times: dict[str, list[float]] = {name: [] for name in calls}

    def step(call: Callable, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> None:
        if train:
            x = x.detach().requires_grad_()
            call(x, mask, lengths).sum().backward()
        else:
            with torch.no_grad():
                call(x, mask, lengths)

    for call in calls.values():  # warm-up
        for x, mask, lengths in batches[:3]:
            step(call, x, mask, lengths)
    for _ in range(repeats):
        for x, mask, lengths in batches:
            for name, call in calls.items():
                times[name].append(
                    timed(lambda call=call, x=x, mask=mask, lengths=lengths: step(call, x, mask, lengths), clock)
                )
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL file to sample lengths from")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=60, help="batches per case (each timed once per repeat)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall clock, or the process's CPU time (1 thread on a loaded machine)",
    )
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    torch.manual_seed(args.seed)
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (pass --data PATH to a CoNLL-2003 training file)")
    lengths = sentence_lengths(args.data)
    print(
        f"{len(lengths)} sentences from {args.data}: mean length {statistics.mean(lengths):.1f}, "
        f"max {max(lengths)}; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock"
    )
    path = "C++ kernel" if lstm_kernel.available() else "PyTorch path (kernel not built or NER_LSTM_KERNEL=0)"
    print(f"ours: {path}")

    ours = LSTM(150, 200, bidirectional=True)
    reference = torch.nn.LSTM(150, 200, bidirectional=True, batch_first=True)
    reference.load_state_dict(ours.state_dict())
    elmo = LSTM(128, 512, proj_size=128, cell_clip=3.0, proj_clip=3.0)
    elmo_reference = torch.nn.LSTM(128, 512, proj_size=128, batch_first=True)  # no clipping in torch: cost only
    elmo_reference.load_state_dict(elmo.state_dict())

    cases = {
        "train_b32": (ours, reference, 32, True),
        "infer_b1": (ours, reference, 1, False),
        "infer_b64": (ours, reference, 64, False),
        "elmo_lstmp_train_b32": (elmo, elmo_reference, 32, True),
    }
    results = {}
    print(
        f"{'case':<22}{'ours ms':>10}{'torch padded':>14}{'torch packed':>14}{'ours/padded':>13}"
        f"{'ours/packed':>13}{'ratio':>8}"
    )
    for index, (case, (module, torch_module, batch, train)) in enumerate(cases.items()):
        calls = args.calls if case != "elmo_lstmp_train_b32" else max(5, args.calls // 4)  # the slow case
        batches = make_batches(lengths, batch, calls, module.input_size, args.seed + index)
        implementations = {
            "ours": ours_call(module),
            "torch_padded": torch_call(torch_module, packed=False),
            "torch_packed": torch_call(torch_module, packed=True),
        }
        medians = measure(implementations, batches, train, args.repeats, CLOCKS[args.clock])
        result = {f"{name}_ms": round(seconds * 1e3, 3) for name, seconds in medians.items()}
        result["ratio"] = round(medians["ours"] / min(medians["torch_padded"], medians["torch_packed"]), 3)
        result["ratio_padded"] = round(medians["ours"] / medians["torch_padded"], 3)
        result["ratio_packed"] = round(medians["ours"] / medians["torch_packed"], 3)
        results[case] = result
        print(
            f"{case:<22}{result['ours_ms']:>10.2f}{result['torch_padded_ms']:>14.2f}"
            f"{result['torch_packed_ms']:>14.2f}{result['ratio_padded']:>13.3f}{result['ratio_packed']:>13.3f}"
            f"{result['ratio']:>8.3f}"
        )
    for case, result in results.items():
        faster = min(("padded", "packed"), key=lambda way: result[f"torch_{way}_ms"])
        print(
            f"{case}: ours {result['ours_ms']:.2f} ms, faster torch path {faster} "
            f"{result[f'torch_{faster}_ms']:.2f} ms, ratio {result['ratio']:.3f} "
            f"({'within' if result['ratio'] <= 0.9 else 'above'} the 0.9 target)"
        )
    print(
        json.dumps(
            {
                "benchmark": "lstm_speed",
                "threads": args.threads,
                "calls": args.calls,
                "clock": args.clock,
                "kernel": lstm_kernel.available(),
                "torch": torch.__version__,
                "cases": results,
            }
        )
    )


if __name__ == "__main__":
    main()
