"""`ner serve`: the API through FastAPI's test client, the micro-batcher, a real server over loopback HTTP, and
the page in headless chromium (skipped where chromium is not installed, never in CI)."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

if os.environ.get("CI") != "true":  # CI installs the extra: there a missing one fails
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
    pytest.importorskip("httpx", reason="the serve extra is not installed (pip install -e '.[serve]')")

from fastapi.testclient import TestClient
from test_training import FAST
from test_web import Marks, browser_dom, needs_chromium

from ner.cli import main
from ner.model import Tagger
from ner.serve.app import create_app
from ner.serve.batcher import Busy, MicroBatcher
from ner.serve.limits import Limits
from ner.tagging import tag_files

REPO = Path(__file__).resolve().parents[1]
LINES = (REPO / "data" / "sample" / "raw.txt").read_text(encoding="utf-8").splitlines()[:8] + [
    "x \U0001f44d\U0001f3fd Maren Quist met Oskar Velde in Caravel & <Palmaro>."
]
TIMEOUT = 30  # seconds, for every request and server start


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "sample"
    assert main(["train", str(REPO / "configs" / "sample.yaml"), *FAST, f"output.dir={out}"]) == 0
    return out


@pytest.fixture(scope="module")
def tagger(run_dir: Path) -> Tagger:
    return Tagger.load(run_dir)


@pytest.fixture(scope="module")
def client(tagger: Tagger) -> Iterator[TestClient]:
    with TestClient(create_app(tagger, name="sample")) as test_client:
        yield test_client


def tag_command_records(tagger: Tagger, tmp_path: Path, lines: list[str]) -> list[dict]:
    """What `ner tag` writes for these lines, without the line numbers."""
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tag_files(tagger, [str(tmp_path / "in.txt")], output=str(tmp_path / "out.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{"text": record["text"], "entities": record["entities"]} for record in records]


def test_records_are_those_of_ner_tag(client: TestClient, tagger: Tagger, tmp_path: Path) -> None:
    expected = tag_command_records(tagger, tmp_path, LINES)
    assert sum(len(record["entities"]) for record in expected) >= 5  # the model finds entities at all
    response = client.post("/tag", json={"texts": LINES})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"records": expected}
    for record in expected:
        assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["entities"])
    single = client.post("/tag", json={"text": LINES[-1]}).json()
    assert single == expected[-1]


def test_min_score_drops_the_less_certain(client: TestClient) -> None:
    everything = client.post("/tag", json={"text": LINES[0]}).json()["entities"]
    threshold = sorted(e["score"] for e in everything)[len(everything) // 2]
    kept = client.post("/tag", json={"text": LINES[0], "min_score": threshold}).json()["entities"]
    assert kept == [e for e in everything if e["score"] >= threshold] and 0 < len(kept) < len(everything)


def test_empty_texts(client: TestClient) -> None:
    assert client.post("/tag", json={"texts": []}).json() == {"records": []}
    assert client.post("/tag", json={"text": ""}).json() == {"text": "", "entities": []}


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"text": ', 400, "malformed JSON: Expecting value: line 1 column 10 (char 9)"),
        (b"\xff\xfe{}", 400, "malformed JSON: not UTF-8 (byte 0: invalid start byte)"),
        (b'{"text": "\xe9t\xe9"}', 400, "malformed JSON: not UTF-8 (byte 10: invalid continuation byte)"),
        (b"[" * 100_000, 400, "malformed JSON: nested too deeply"),
        (b'["a"]', 422, 'expected a JSON object {"text": "..."} or {"texts": ["...", ...]}, got an array'),
        (b"{}", 422, 'expected exactly one of "text" (a string) and "texts" (a list of strings)'),
        (
            b'{"text": "a", "texts": ["b"]}',
            422,
            'expected exactly one of "text" (a string) and "texts" (a list of strings)',
        ),
        (b'{"text": "a", "lang": "en"}', 422, "unknown key 'lang': expected text or texts, and optionally min_score"),
        (b'{"text": 3}', 422, "text: expected a string, got a number"),
        (b'{"texts": "a"}', 422, "texts: expected an array of strings, got a string"),
        (b'{"texts": ["a", null]}', 422, "texts[1]: expected a string, got null"),
        (b'{"text": "ok \\ud800"}', 422, "text: lone surrogate '\\ud800' at offset 3 (not a Unicode character)"),
        (b'{"text": "a", "min_score": 2}', 422, "min_score: expected a number in [0, 1], got 2"),
        (b'{"text": "a", "min_score": "high"}', 422, 'min_score: expected a number in [0, 1], got "high"'),
    ],
)
def test_bad_requests_get_a_status_and_one_line(client: TestClient, body: bytes, status: int, detail: str) -> None:
    response = client.post("/tag", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert client.get("/health").json()["status"] == "ok"


def test_limits_give_413(tagger: Tagger) -> None:
    limits = Limits(max_body_bytes=200, max_texts=2, max_text_chars=10)
    with TestClient(create_app(tagger, limits)) as small:
        cases = [
            ({"text": "x" * 300}, "request body of 311 bytes: the limit is 200 bytes"),
            ({"texts": ["a", "b", "c"]}, "texts: 3 texts, more than the limit of 2 a request"),
            ({"texts": ["a", "Maren Quist"]}, "texts[1]: 11 characters, more than the limit of 10"),
            ({"text": "Maren Quist"}, "text: 11 characters, more than the limit of 10"),
        ]
        for payload, detail in cases:
            response = small.post("/tag", json=payload)
            assert (response.status_code, response.json()) == (413, {"detail": detail})
        chunked = small.post("/tag", content=iter([b'{"text": "', b"x" * 150, b"y" * 150, b'"}']))
        assert (chunked.status_code, chunked.json()) == (
            413,
            {"detail": "request body over 200 bytes: the limit is 200 bytes"},
        )
        assert small.post("/tag", json={"texts": ["Anna", "Bob"]}).status_code == 200


def test_a_failing_model_is_500_for_its_requests_only(
    client: TestClient, tagger: Tagger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(tagger, "predict_spans", broken)
        response = client.post("/tag", json={"text": LINES[0]})
    assert (response.status_code, response.json()) == (500, {"detail": "tagging failed: RuntimeError: out of memory"})
    assert client.post("/tag", json={"text": LINES[0]}).status_code == 200


def test_health_and_page(client: TestClient) -> None:
    health = client.get("/health").json()
    assert {key: health[key] for key in ("status", "model", "types")} == {
        "status": "ok",
        "model": "sample",
        "types": ["LOC", "MISC", "ORG", "PER"],
    }
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<textarea id="text" name="text"' in page.text and "const NerHighlight" in page.text
    assert client.get("/nowhere").status_code == 404 and client.get("/tag").status_code == 405


# ---------------------------------------------------------------------------------------------------------------
# The micro-batcher, with a fake tagging function


def run_batcher(tag_batch, requests: list[list[str]], **options: object) -> tuple[list, MicroBatcher]:
    """Submit ``requests`` concurrently; (each request's results or exception, the batcher)."""

    async def go() -> tuple[list, MicroBatcher]:
        batcher = MicroBatcher(tag_batch, **options)
        await batcher.start()
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(batcher.submit(texts) for texts in requests), return_exceptions=True), TIMEOUT
            )
        finally:
            await batcher.stop()
        return results, batcher

    return asyncio.run(go())


def test_concurrent_requests_are_batched_up_to_max_texts() -> None:
    batches: list[list[str]] = []

    def upper(texts: list[str]) -> list[str]:
        batches.append(texts)
        time.sleep(0.02)
        return [text.upper() for text in texts]

    requests = [[f"r{i}a", f"r{i}b"] if i % 3 == 0 else [f"r{i}"] for i in range(12)]
    results, batcher = run_batcher(upper, requests, max_texts=5, max_wait=0.05)
    assert results == [[text.upper() for text in texts] for texts in requests]
    assert all(len(batch) <= 5 for batch in batches) and len(batches) < len(requests)
    assert sorted(text for batch in batches for text in batch) == sorted(t for texts in requests for t in texts)
    assert (batcher.batches, batcher.texts) == (len(batches), 16)


def test_a_request_larger_than_a_batch_is_tagged_alone() -> None:
    batches: list[list[str]] = []
    results, _ = run_batcher(
        lambda texts: batches.append(texts) or texts, [["a"], list("bcdefg"), ["h"]], max_texts=3, max_wait=0.05
    )
    assert results == [["a"], list("bcdefg"), ["h"]]
    assert list("bcdefg") in batches


def test_a_failing_batch_answers_its_requests_and_the_batcher_goes_on() -> None:
    def fragile(texts: list[str]) -> list[str]:
        if "boom" in texts:
            raise RuntimeError("tagger broke")
        return texts

    async def go() -> list:
        batcher = MicroBatcher(fragile, max_wait=0.0)
        await batcher.start()
        try:
            failed = await asyncio.gather(batcher.submit(["boom"]), return_exceptions=True)
            return [*failed, await asyncio.wait_for(batcher.submit(["fine"]), TIMEOUT)]
        finally:
            await batcher.stop()

    failed, fine = asyncio.run(go())
    assert isinstance(failed, RuntimeError) and str(failed) == "tagger broke" and fine == ["fine"]
    [wrong] = run_batcher(lambda texts: texts[:-1], [["a", "b"]])[0]
    assert isinstance(wrong, RuntimeError) and str(wrong) == "tagging 2 texts gave 1 results"


def test_a_full_queue_is_busy() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(texts: list[str]) -> list[str]:
        started.set()
        release.wait(TIMEOUT)
        return texts

    async def until(condition) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def go() -> list:
        batcher = MicroBatcher(slow, max_wait=0.0, max_queue=1)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(["1"]))
            await until(started.is_set)  # the worker is tagging the first request
            second = asyncio.ensure_future(batcher.submit(["2"]))
            await until(lambda: batcher.waiting == 1)  # the queue is full
            with pytest.raises(Busy, match=r"^the queue of waiting requests is full \(max-queue 1\)$"):
                await batcher.submit(["3"])
            release.set()
            return await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        finally:
            release.set()
            await batcher.stop()

    assert asyncio.run(go()) == [["1"], ["2"]]


# ---------------------------------------------------------------------------------------------------------------
# A real server on a free loopback port


class Server:
    """`ner serve RUN --port 0` in a subprocess: its URL (from the line it prints) and the rest of its standard
    error (read by a thread, so the pipe never fills)."""

    def __init__(self, run_dir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ner.cli",
                "serve",
                str(run_dir),
                "--port",
                "0",
                "--threads",
                "1",
                "--batch-wait-ms",
                "20",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stderr, selectors.EVENT_READ)
            ready = selector.select(TIMEOUT)
        first = self.process.stderr.readline().strip() if ready else f"nothing in {TIMEOUT} s"
        assert first.startswith(f"serving {run_dir.name} on http://127.0.0.1:"), first
        self.url = first.split(" on ")[1].split("/ ")[0]
        self.stderr: list[str] = []
        self.reader = threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True)
        self.reader.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)
        self.reader.join(TIMEOUT)


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[Server]:
    started = Server(run_dir)
    try:
        yield started
    finally:
        started.stop()


def http(url: str, payload: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send bytes to the server as they are and return its first answer."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    with socket.create_connection((host, port), timeout=TIMEOUT) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def test_real_server_over_loopback_http(server: Server, tagger: Tagger, tmp_path: Path) -> None:
    url = server.url
    expected = tag_command_records(tagger, tmp_path, LINES)
    assert http(url + "/tag", {"texts": LINES}) == (200, {"records": expected})
    with ThreadPoolExecutor(8) as pool:  # concurrent clients, each its own text
        answers = list(pool.map(lambda line: http(url + "/tag", {"text": line}), LINES * 2))
    assert answers == [(200, record) for record in expected * 2]
    # Bad input of every kind, then the service still answers
    assert http(url + "/tag", raw=b'{"texts": [1]}') == (422, {"detail": "texts[0]: expected a string, got a number"})
    assert raw_exchange(url, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    oversize = (
        b"POST /tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n100001\r\n" + b"x" * 0x100001 + b"\r\n0\r\n\r\n"
    )
    assert raw_exchange(url, oversize).startswith(b"HTTP/1.1 413")
    status, health = http(url + "/health")
    assert status == 200 and health["status"] == "ok" and server.process.poll() is None
    assert health["texts"] == 2 * len(LINES) + len(LINES) and health["batches"] < health["texts"]


@needs_chromium
def test_page_highlights_the_entities_in_a_browser(server: Server, tmp_path: Path) -> None:
    url = server.url
    text = LINES[-1]
    _, expected = http(url + "/tag", {"text": text})
    page = Marks(browser_dom(f"{url}/?text={urllib.parse.quote(text)}", tmp_path / "profile"))
    [line] = page.lines
    assert line["text"] == text
    assert [(m["type"], m["text"], float(m["score"])) for m in line["marks"]] == [
        (e["type"], e["text"], e["score"]) for e in expected["entities"]
    ]
    assert all(m["coloured"] and m["title"] == f"{m['type']} {m['score']}" for m in line["marks"])
    types = sorted({e["type"] for e in expected["entities"]})
    counts = [str(sum(e["type"] == t for e in expected["entities"])) for t in types]
    assert page.legend == [item for pair in zip(types, counts) for item in pair]


def test_a_taken_port_is_one_line_and_exit_2(server: Server, run_dir: Path) -> None:
    port = urllib.parse.urlsplit(server.url).port
    result = subprocess.run(
        [sys.executable, "-m", "ner.cli", "serve", str(run_dir), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: 127.0.0.1:{port}: cannot listen there: Address already in use\n"


def test_ctrl_c_stops_the_server(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(TIMEOUT) == 130
    server.reader.join(TIMEOUT)
    assert server.stderr[-1] == "interrupted\n"
