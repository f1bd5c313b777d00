"""Tokens/s of `ner tag --engine ray` (Ray Data actors, local mode) against `ner tag --workers N` on the same text.

The text is the first ``--lines`` lines of the Reuters-21578 file in ``../shared/data/unlabeled`` detokenized into
raw text (``bench/tokenizer_agreement.py``; not timed), or ``data/sample/raw.txt`` repeated to ``--lines`` lines
where the shared data is missing. ``ner tag``'s side runs ``ner.tagging.tag_files`` with ``--workers`` processes of
one thread each, its model loaded before the clock starts. The Ray side starts a local Ray with ``--workers``
CPUs (timed apart: ``ray_init_seconds``), then runs ``ner.ray_tagging.tag_files_on_ray`` with ``--workers``
actors: its time includes starting the actors and loading the model in each, so ``ray_seconds_to_first_record``
says how much of it is start-up, and ``ray_steady_tokens_per_second`` is the rate after the first record (an
upper bound: records may arrive in bursts). The two outputs are compared byte for byte.

    .venv/bin/python bench/ray_tag_speed.py RUN_DIR [--lines 20000] [--workers 2]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NER_SHARED_DIR", REPO.parent / "shared"))
REUTERS = SHARED / "data" / "unlabeled" / "reuters21578.txt"


def raw_text(lines: int, out: Path) -> str:
    """Write ``lines`` lines of raw text to ``out``; returns where they came from."""
    if REUTERS.is_file():
        sys.path.insert(0, str(REPO / "bench"))
        from tokenizer_agreement import detokenize

        with open(REUTERS, encoding="utf-8") as source, open(out, "w", encoding="utf-8") as sink:
            for line in itertools.islice(source, lines):
                sink.write(detokenize(line.split())[0] + "\n")
        return f"{REUTERS.name}, first {lines} lines, detokenized"
    sample = (REPO / "data" / "sample" / "raw.txt").read_text(encoding="utf-8").splitlines()
    out.write_text("".join(line + "\n" for line in itertools.islice(itertools.cycle(sample), lines)), encoding="utf-8")
    return f"data/sample/raw.txt repeated to {lines} lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    from ner.model import Tagger
    from ner.ray_tagging import LOCAL_RAY, tag_files_on_ray
    from ner.tagging import tag_files

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "raw.txt"
        source = raw_text(args.lines, text)
        local_out, ray_out = Path(tmp) / "local.jsonl", Path(tmp) / "ray.jsonl"
        tagger = Tagger.load(args.run_dir, device="cpu")
        local = tag_files(tagger, [str(text)], output=str(local_out), workers=args.workers)
        clock = time.perf_counter()
        ray.init(
            num_cpus=args.workers, include_dashboard=False, logging_level="WARNING", _system_config=LOCAL_RAY
        )  # as ner tag --engine ray starts it
        init_seconds = time.perf_counter() - clock
        try:
            on_ray = tag_files_on_ray(args.run_dir, [str(text)], output=str(ray_out), workers=args.workers)
        finally:
            ray.shutdown()
        same = local_out.read_bytes() == ray_out.read_bytes()
    to_first = on_ray["seconds_to_first_record"]
    steady = on_ray["seconds"] - to_first
    figures = {
        "text": source,
        "tokens": int(local["tokens"]),
        "workers": args.workers,
        "local_tokens_per_second": round(local["tokens_per_second"], 1),
        "local_seconds": round(local["seconds"], 2),
        "ray_init_seconds": round(init_seconds, 2),
        "ray_seconds": round(on_ray["seconds"], 2),
        "ray_tokens_per_second": round(on_ray["tokens_per_second"], 1),
        "ray_seconds_to_first_record": round(to_first, 2),
        "ray_steady_tokens_per_second": round(on_ray["tokens"] / steady, 1) if steady > 0 else None,
        "identical_output": same,
    }
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"text: {source}, {figures['tokens']:,} tokens")
    print(
        f"ner tag --workers {args.workers}: {figures['local_tokens_per_second']:,.0f} tokens/s "
        f"({figures['local_seconds']} s, model loaded before)"
    )
    print(
        f"ner tag --engine ray --workers {args.workers}: {figures['ray_tokens_per_second']:,.0f} tokens/s "
        f"({figures['ray_seconds']} s, of which {figures['ray_seconds_to_first_record']} s to the first record: "
        f"actors started, model loaded in each; after it {figures['ray_steady_tokens_per_second']} tokens/s); "
        f"ray.init {figures['ray_init_seconds']} s apart"
    )
    print(f"identical output: {same}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
