"""Load on `ner serve`: K concurrent clients on loopback for T seconds, against `ner tag` on the same texts.

Starts ``ner serve RUN_DIR --port 0`` (loopback only) with ``--threads`` torch threads, then runs ``--clients``
clients (asyncio, one keep-alive connection each) that each POST ``{"text": ...}`` for one line of ``--texts`` after
another, for ``--seconds`` seconds (both bounded: at most 256 clients, 300 s). Reports requests/s, p50 and p99
latency, errors (anything but 200, or no answer within 60 s), tokens/s and the mean batch the service formed;
then the tokens/s of ``ner tag`` (``ner.tagging.tag_files``, one process with the same threads) on the same texts.
The clients run in this process, beside the server: on a small machine they take CPU from it.

    .venv/bin/python bench/serve_load.py RUN_DIR [--clients 8] [--seconds 20] [--texts data/sample/raw.txt] \\
        [--threads 1] [--batch-wait-ms 5]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import selectors
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT = 60.0


@contextmanager
def served(run_dir: str, *options: str, timeout: float = 120.0) -> Iterator[str]:
    """Run ``ner serve RUN_DIR --port 0 OPTIONS`` and yield its URL; stop it (SIGINT, then kill) afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ner.cli", "serve", run_dir, "--port", "0", *options], stderr=subprocess.PIPE, text=True
    )
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            line = process.stderr.readline() if selector.select(timeout) else ""
        if " on http://127.0.0.1:" not in line:
            raise SystemExit(f"ner serve did not start in {timeout:.0f} s: {line.strip() or process.poll()}")
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe from filling
        yield line.split(" on ")[1].split("/ ")[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (a general client costs more CPU per request
    than the server's own work here, and the clients share the machine with it)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), await self.reader.readexactly(int(headers["content-length"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(url: str, texts: list[str], tokens: list[int], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` concurrent loops of POST /tag for ``seconds``; latency percentiles, rates and errors."""
    latencies: list[float] = []
    errors, done_tokens = 0, 0
    bodies = [json.dumps({"text": text}).encode() for text in texts]
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal errors, done_tokens
        connection, index = Connection(url), number * 7919  # clients start at different texts
        while time.perf_counter() < deadline:
            text_index = index % len(texts)
            index += 1
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(
                    connection.request("POST", "/tag", bodies[text_index]), REQUEST_TIMEOUT
                )
                ok = status == 200 and "entities" in json.loads(body)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError):
                ok = False
                connection.close()
            latencies.append(time.perf_counter() - started)
            if ok:
                done_tokens += tokens[text_index]
            else:
                errors += 1
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(clients)))
    elapsed = time.perf_counter() - started
    probe = Connection(url)
    health = json.loads((await probe.request("GET", "/health"))[1])
    probe.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "errors": errors,
        "tokens_per_second": round(done_tokens / elapsed),
        "mean_batch_texts": round(health["texts"] / max(health["batches"], 1), 2),
    }


def tag_command_speed(run_dir: str, texts: list[str], threads: int, repeat: int) -> float:
    """Tokens/s of ``ner tag`` (one process, ``threads`` torch threads) on ``texts`` repeated ``repeat`` times."""
    import torch

    from ner.model import Tagger
    from ner.tagging import tag_files

    torch.set_num_threads(threads)
    tagger = Tagger.load(run_dir, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "texts.txt"
        source.write_text("\n".join(texts * repeat) + "\n", encoding="utf-8")
        tag_files(tagger, [str(source)], output=str(Path(folder) / "out.jsonl"))  # warm up
        return tag_files(tagger, [str(source)], output=str(Path(folder) / "out.jsonl"))["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--texts", default=str(REPO / "data" / "sample" / "raw.txt"), help="one text per line")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of `ner tag`")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 300):
        parser.error("expected 1 <= --clients <= 256 and 0 < --seconds <= 300")
    sys.path.insert(0, str(REPO))
    from ner.data.text import split_sentences

    texts = [line for line in Path(args.texts).read_text(encoding="utf-8").splitlines() if line.strip()]
    tokens = [sum(len(sentence) for sentence in split_sentences(text)) for text in texts]
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{len(texts)} texts of {statistics.mean(tokens):.1f} tokens on average, from {args.texts}")
    with served(args.run_dir, "--threads", str(args.threads), "--batch-wait-ms", str(args.batch_wait_ms)) as url:
        figures = asyncio.run(load(url, texts, tokens, args.clients, args.seconds))
    figures["tag_command_tokens_per_second"] = round(
        tag_command_speed(args.run_dir, texts, args.threads, repeat=max(1, 20_000 // max(sum(tokens), 1)))
    )
    print(
        f"ner serve, {args.clients} clients for {figures['seconds']} s: {figures['requests']} requests, "
        f"{figures['requests_per_second']} requests/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
        f"{figures['errors']} errors, {figures['tokens_per_second']} tokens/s "
        f"(mean batch {figures['mean_batch_texts']} texts)"
    )
    print(f"ner tag on the same texts: {figures['tag_command_tokens_per_second']} tokens/s")
    print(
        json.dumps({"clients": args.clients, "threads": args.threads, "batch_wait_ms": args.batch_wait_ms, **figures})
    )


if __name__ == "__main__":
    main()
