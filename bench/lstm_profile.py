"""Where our LSTM spends its time: torch.profiler over the cases of ``lstm_speed.py`` where torch is faster.

Profiles ``--calls`` training steps (batch 32) and batch-1 inference calls of ner.nn.LSTM (input 150, hidden
200, bidirectional, CoNLL-2003 lengths) and prints the operators by self CPU time, with their share.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/lstm_profile.py [--threads 2] [--calls 40]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lstm_speed import DEFAULT_DATA, make_batches, sentence_lengths  # noqa: E402

from ner.nn import LSTM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = sentence_lengths(DEFAULT_DATA)
    lstm = LSTM(150, 200, bidirectional=True)
    for case, batch, train in (("training step, batch 32", 32, True), ("inference, batch 1", 1, False)):
        batches = make_batches(lengths, batch, args.calls, 150, seed=1)

        def run(batches: list = batches, train: bool = train) -> None:
            for x, mask, _ in batches:
                if train:
                    x = x.requires_grad_()
                    lstm(x, mask)[0].sum().backward()
                else:
                    with torch.no_grad():
                        lstm(x, mask)

        run()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{case}: {args.calls} calls, {total / 1e3 / args.calls:.2f} ms of operator self time per call")
        for event in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]:
            share = 100 * event.self_cpu_time_total / total
            print(f"  {event.key:<40} {share:5.1f}%  {event.count / args.calls:6.1f} calls")


if __name__ == "__main__":
    main()
