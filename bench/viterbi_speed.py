"""Speed of ner.nn.crf against pytorch-crf: Viterbi decoding, and the training loss (forward + backward).

CoNLL-like shapes: K = 17 tags (BIOES for PER, LOC, ORG, MISC, and O), sentence lengths drawn from the
CoNLL-2003 training file when ``../shared/data/conll2003/train.txt`` (or ``$NER_SHARED_DIR``) exists, else
uniform on 1..40; batch sizes 32 and 64; batches either drawn at random (padded to their longest sentence) or
bucketed by length (sorted, as ``ner.data.batching`` groups them). Our CRF carries the BIOES constraints; the
pytorch-crf module gets the same effective scores (-1e4 written into the disallowed entries), so both must
return the same paths, which is checked on every batch. Our decode time includes ``.tolist()`` of the (B, T)
result, since pytorch-crf returns lists.

    flock -x /tmp/ner-cpu.lock .venv/bin/python bench/viterbi_speed.py [--threads 2] [--batches 100] [--rounds 5]

Prints per-batch medians (ms), the speed-up (pytorch-crf time / ours) and sentences/s; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torchcrf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ner.nn.crf import CRF, allowed_transitions  # noqa: E402

TAGS = ["O"] + [f"{prefix}-{kind}" for kind in ("PER", "LOC", "ORG", "MISC") for prefix in "BIES"]


def train_lengths() -> tuple[list[int], str]:
    """Sentence lengths of the CoNLL-2003 training file, or uniform 1..40 when it is absent."""
    shared = Path(os.environ.get("NER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "data" / "conll2003" / "train.txt"
    if not path.exists():
        generator = random.Random(0)
        return [generator.randint(1, 40) for _ in range(14041)], "uniform 1..40"
    lengths, length = [], 0
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            length += 1
        elif length:
            lengths.append(length)
            length = 0
    return lengths, str(path)


def make_batches(lengths: list[int], batch_size: int, count: int, bucketed: bool, seed: int) -> list:
    """``count`` (emissions (B, T, K), mask (B, T)) batches with emissions ~ N(0, 3^2)."""
    generator = random.Random(seed)
    if bucketed:  # consecutive slices of the length-sorted corpus, as length-grouped batching yields
        ordered = sorted(lengths)
        starts = [generator.randrange(len(ordered) - batch_size) for _ in range(count)]
        chosen = [ordered[start : start + batch_size] for start in starts]
    else:
        chosen = [generator.sample(lengths, batch_size) for _ in range(count)]
    torch.manual_seed(seed)
    batches = []
    for batch_lengths in chosen:
        batch_lengths = sorted(batch_lengths, reverse=True)
        mask = torch.arange(batch_lengths[0]) < torch.tensor(batch_lengths).unsqueeze(1)  # (B, T)
        batches.append((3 * torch.randn(batch_size, batch_lengths[0], len(TAGS)), mask))
    return batches


def median_ms(functions: dict, batches: list, rounds: int) -> dict[str, list[float]]:
    """Per-batch median over ``rounds`` of the wall time of each ``function(emissions, mask, tags)``, in ms.

    The functions run one after another on each batch, so a change of machine load hits them alike.
    """
    times = {name: [[] for _ in batches] for name in functions}
    for _ in range(rounds):
        for index, batch in enumerate(batches):
            for name, function in functions.items():
                begin = time.perf_counter()
                function(*batch)
                times[name][index].append((time.perf_counter() - begin) * 1000)
    return {name: [statistics.median(batch_times) for batch_times in per_batch] for name, per_batch in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100, help="batches per setting")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the batches")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), flush=True)
    lengths, source = train_lengths()
    print(
        f"torch {torch.__version__}, pytorch-crf {torchcrf.__version__}, threads {args.threads}, K {len(TAGS)}, "
        f"lengths from {source} ({len(lengths)} sentences, mean {statistics.mean(lengths):.1f}, max {max(lengths)}), "
        f"load average {os.getloadavg()[0]:.2f} (other processes skew timings)"
    )

    torch.manual_seed(0)
    ours = CRF(len(TAGS), allowed_transitions(TAGS, "BIOES"))
    theirs = torchcrf.CRF(len(TAGS), batch_first=True)
    with torch.no_grad():  # the same effective scores in both
        for name, value in zip(("start_transitions", "transitions", "end_transitions"), ours.effective_scores()):
            getattr(theirs, name).copy_(value)

    def our_decode(emissions, mask, tags):
        return ours.decode(emissions, mask).tolist()

    def their_decode(emissions, mask, tags):
        return theirs.decode(emissions, mask)

    def our_loss(emissions, mask, tags):
        ours.neg_log_likelihood(emissions.requires_grad_(True), tags, mask, reduction="sum").backward()

    def their_loss(emissions, mask, tags):
        (-theirs(emissions.requires_grad_(True), tags, mask, reduction="sum")).backward()

    results = {}
    for batch_size in (32, 64):
        for bucketed in (False, True):
            setting = f"batch{batch_size}_{'bucketed' if bucketed else 'random'}"
            batches = []  # (emissions, mask, gold tags for the loss timing: the decoded, well-formed paths)
            seed = batch_size + bucketed
            for emissions, mask in make_batches(lengths, batch_size, args.batches, bucketed, seed):
                path = ours.decode(emissions, mask)
                trimmed = [row[:n] for row, n in zip(path.tolist(), mask.sum(1).tolist())]
                assert trimmed == theirs.decode(emissions, mask), "paths differ from pytorch-crf's"
                batches.append((emissions, mask, path))
            decode_ms = median_ms({"ours": our_decode, "theirs": their_decode}, batches, args.rounds)
            loss_ms = median_ms({"ours": our_loss, "theirs": their_loss}, batches, args.rounds)
            ours_ms, theirs_ms, ours_loss_ms, theirs_loss_ms = (
                decode_ms["ours"],
                decode_ms["theirs"],
                loss_ms["ours"],
                loss_ms["theirs"],
            )
            mean_time = statistics.mean(int(mask.size(1)) for _, mask, _ in batches)
            row = {
                "decode_ours_ms": statistics.median(ours_ms),
                "decode_torchcrf_ms": statistics.median(theirs_ms),
                "decode_speedup": sum(theirs_ms) / sum(ours_ms),
                "decode_ours_sent_per_s": batch_size * len(batches) / (sum(ours_ms) / 1000),
                "decode_torchcrf_sent_per_s": batch_size * len(batches) / (sum(theirs_ms) / 1000),
                "loss_ours_ms": statistics.median(ours_loss_ms),
                "loss_torchcrf_ms": statistics.median(theirs_loss_ms),
                "loss_speedup": sum(theirs_loss_ms) / sum(ours_loss_ms),
                "mean_padded_time": mean_time,
            }
            results[setting] = {key: round(value, 3) for key, value in row.items()}
            print(
                f"{setting:22s} T~{mean_time:5.1f}  decode: ours {row['decode_ours_ms']:.2f} ms, pytorch-crf "
                f"{row['decode_torchcrf_ms']:.2f} ms (median/batch), speed-up {row['decode_speedup']:.2f}x, "
                f"{row['decode_ours_sent_per_s']:.0f} vs {row['decode_torchcrf_sent_per_s']:.0f} sent/s | "
                f"loss fwd+bwd: ours {row['loss_ours_ms']:.2f} ms, pytorch-crf {row['loss_torchcrf_ms']:.2f} ms, "
                f"speed-up {row['loss_speedup']:.2f}x",
                flush=True,
            )
    print(
        json.dumps(
            {
                "bench": "viterbi_speed",
                "threads": args.threads,
                "num_tags": len(TAGS),
                "load_average_end": round(os.getloadavg()[0], 2),
                "lengths": source,
                "batches": args.batches,
                "rounds": args.rounds,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
