"""Data-parallel training under torchrun (two gloo processes on loopback) against one process at the same
global batch: per-epoch losses and weights, resume with another world size, an error on one rank; the shares of
a global batch; CUDA and bf16 where a GPU is present.

Tolerance: the two ranks compute their shares at other padded lengths and DDP sums their gradients, so float32
additions happen in another order than in one process's batch mean (each rounding about 6e-8 relative). SGD
carries these differences forward without amplifying them much over a few epochs: we see at most 1e-6 on
weights of size ~4, and allow 2e-5 absolute + 1e-4 relative. (Adam would not do: it divides by the root of a
gradient's square, so a component that is ~0 in both runs can still step by +-lr in one and not the other.)
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ner.config import load_config
from ner.data.sources import load_splits
from ner.distributed import BatchShares, Context, autocast, keep_float32, shard
from ner.elmo.pretrain import pretrain_lm
from ner.model import Tagger
from ner.nn.lstm import LSTM
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
# Dropout off: with it on, each rank draws its masks from its own stream, so a job is statistically, not
# numerically, the one-process run. Document context on: batches hold whole documents, split between ranks.
TINY = [
    "model.embeddings.dim=16",
    "model.embeddings.document_casing_dim=4",
    "model.char_cnn.dim=8",
    "model.char_cnn.filters=[[3, 8]]",
    "model.lstm.hidden_size=16",
    "model.dropout=0",
    "model.word_dropout=0",
    "model.document_context=true",
    "training.optimizer=sgd",
    "training.lr=0.05",
    "training.batch_size=16",
    "training.threads=1",
    "output.progress=false",
]
TOLERANCE = {"atol": 2e-5, "rtol": 1e-4}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _torchrun(tmp_path: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone`` (a free loopback port) with one thread per process."""
    env = {
        "GLOO_SOCKET_IFNAME": "lo",
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }  # gloo on loopback, whatever the host name resolves to
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _losses(run: Path) -> list[float]:
    return [yaml.safe_load(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **TOLERANCE, msg=key)


def test_two_gloo_processes_train_as_one_and_a_job_resumes_with_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = str(REPO / "configs" / "sample.yaml")
    at_epoch_2: dict[str, torch.Tensor] = {}

    def keep_epoch_2(epoch: int) -> None:
        if epoch == 2:
            at_epoch_2.update(torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"])

    train_from_config(config, [*TINY, "training.epochs=3", f"output.dir={tmp_path / 'one'}"], on_epoch_end=keep_epoch_2)
    job = _torchrun(tmp_path, str(REPO / "train.py"), config, *TINY, "training.epochs=2", "output.dir=two")
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stderr.count("training on 400 sentences") == 1  # rank 0 alone logs
    one, two = tmp_path / "one", tmp_path / "two"
    assert _losses(two) == pytest.approx(_losses(one)[:2], rel=1e-5)
    _assert_same_weights(torch.load(two / "checkpoint.pt", weights_only=True)["model"], at_epoch_2)
    assert torch.load(two / "checkpoint.pt", weights_only=True)["world_size"] == 2

    # The job's checkpoint, continued for a third epoch by a single process: the one-process run's numbers.
    saved = yaml.safe_load((two / "config.yaml").read_text())
    saved["training"]["epochs"] = 3
    (two / "config.yaml").write_text(yaml.safe_dump(saved))
    train_from_config(None, resume=two)
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-5)
    _assert_same_weights(
        torch.load(two / "model.pt", weights_only=True), torch.load(one / "model.pt", weights_only=True)
    )


def test_two_steps_of_pretraining_on_two_processes_equal_one(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = random.Random(1)
    words = ["Reuters", "said", "the", "bank", "expects", "20", "mln", "dlrs", "in", "March", "April", "."]
    (tmp_path / "text.txt").write_text(
        "".join(" ".join(rng.choices(words, k=rng.randint(3, 12))) + "\n" for _ in range(160))
    )
    # adagrad (bilm-tf's optimiser): its first steps are nearly linear in the gradient, see the module docstring
    lm = {
        "data": {"train": "text.txt", "heldout_sentences": 20, "min_count": 1},
        "model": {
            "filters": [[1, 4], [2, 4]],
            "char_dim": 4,
            "highway_layers": 1,
            "projection_dim": 8,
            "lstm_dim": 16,
            "num_layers": 1,
            "dropout": 0.0,
            "softmax_cutoffs": [6],
        },
        "training": {
            "max_steps": 2,
            "batch_tokens": 150,
            "bptt": 5,
            "optimizer": "adagrad",
            "lr": 0.2,
            "eval_every": 1,
            "progress": False,
            "threads": 1,
            "device": "cpu",
        },
    }
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**lm, "output_dir": name}))
    one = pretrain_lm(tmp_path / "one.yaml")
    job = _torchrun(tmp_path, "-m", "ner.cli", "pretrain-lm", "two.yaml")
    assert job.returncode == 0, job.stderr[-3000:]
    history = [
        yaml.safe_load(path.read_text())["history"]
        for path in (tmp_path / "one" / "metrics.json", tmp_path / "two" / "metrics.json")
    ]
    assert [h["train_loss"] for h in history[1]] == pytest.approx([h["train_loss"] for h in history[0]], rel=1e-4)
    assert history[1][-1]["tokens"] == one["tokens"]  # the whole batch's tokens counted once
    _assert_same_weights(
        *(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"] for name in ("two", "one"))
    )


def test_a_rank_that_cannot_read_the_data_ends_the_job_with_its_error_and_writes_nothing(tmp_path: Path) -> None:
    script = tmp_path / "rank1_fails.py"
    script.write_text(
        "import os, sys\n"
        "import ner.training\n"
        "from ner.errors import DataError\n"
        "def unreadable(data):\n"
        "    raise DataError(f'{data.train}: cannot read: Permission denied')\n"
        "if os.environ['RANK'] == '1':\n"
        "    ner.training.load_splits = unreadable\n"
        "from ner.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    job = _torchrun(tmp_path, str(script), "train", str(REPO / "configs" / "sample.yaml"), *TINY, "output.dir=run")
    assert job.returncode != 0
    errors = [line for line in job.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: rank 1: {REPO / 'data' / 'sample' / 'train.txt'}: cannot read: Permission denied"]
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(taken.getsockname()[1]),
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "GLOO_SOCKET_IFNAME": "lo",
        }
        job = subprocess.run(
            [
                sys.executable,
                str(REPO / "train.py"),
                str(REPO / "configs" / "sample.yaml"),
                "output.dir=run",
                "training.device=cpu",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert job.returncode == 2
    assert job.stderr.strip().splitlines()[-1] == (
        f"error: torch.distributed: rank 0 cannot join the gloo process group at 127.0.0.1:"
        f"{env['MASTER_PORT']}: the port is already in use (choose another --master-port, or --standalone)"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("units", [[[5], [3], [9], [1], [7]], [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9]], [[4, 5, 6]]])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shares_split_a_batch_and_weight_ranks_to_the_whole_batch_gradient(units: list[list[int]], world: int) -> None:
    parts = [shard(units, Context(rank, world)) for rank in range(world)]
    assert sorted(i for part in parts for i in part) == sorted(i for unit in units for i in unit)
    for part in parts:  # documents stay whole
        assert all(set(unit) <= set(part) or not set(unit) & set(part) for unit in units)
    weights = []
    for rank in range(world):
        shares = BatchShares(Context(rank, world))
        taken = shares(units)
        assert taken == (parts[rank] or units[0][:1]) and shares.size == len(parts[rank]) + sum(
            len(p) for r, p in enumerate(parts) if r != rank
        )
        weights.append(shares.weight / world)  # DDP averages: rank r contributes weight_r / world
    assert weights == pytest.approx([len(part) / shares.size for part in parts])
    assert sum(weights) == pytest.approx(1.0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_bf16_autocast_loss_is_the_float32_loss_within_bf16_rounding_and_the_lstm_stays_float32(device: str) -> None:
    torch.set_num_threads(1)
    config = load_config(REPO / "configs" / "sample.yaml", [*TINY, "model.document_context=false"])
    corpus = load_splits(config.data)["train"]
    torch.manual_seed(1)
    tagger = Tagger.build(config, corpus, device=device)
    keep_float32(tagger.model, LSTM)
    item = next(tagger.encode_corpus(corpus).batches(16))
    seen: list[torch.dtype] = []
    for module in tagger.model.modules():
        if isinstance(module, LSTM):
            module.register_forward_hook(lambda module, args, output: seen.append(output[0].dtype))
    exact = tagger.loss(item)
    with autocast("bf16", torch.device(device)):
        assert tagger.emissions(item).dtype == torch.bfloat16  # the layers after the LSTM do run in bf16
        rounded = tagger.loss(item)
    rounded.backward()
    assert seen == [torch.float32] * 3
    assert rounded.dtype == torch.float32 and abs(rounded.item() - exact.item()) < 0.02 * exact.item()
    assert all(torch.isfinite(p.grad).all() for p in tagger.model.parameters() if p.grad is not None)


@CUDA
def test_training_on_cuda_matches_cpu_and_bf16_learns(tmp_path: Path) -> None:
    config = str(REPO / "configs" / "sample.yaml")
    runs = {}
    for name, extra in (
        ("cpu", ["training.device=cpu"]),
        ("cuda", ["training.device=auto"]),
        ("bf16", ["training.device=cuda", "training.precision=bf16"]),
    ):
        runs[name] = train_from_config(config, [*TINY, "training.epochs=2", f"output.dir={tmp_path / name}", *extra])
    assert _losses(tmp_path / "cuda") == pytest.approx(_losses(tmp_path / "cpu"), rel=1e-4)
    _assert_same_weights(
        torch.load(tmp_path / "cuda" / "model.pt", weights_only=True, map_location="cpu"),
        torch.load(tmp_path / "cpu" / "model.pt", weights_only=True),
    )
    losses = _losses(tmp_path / "bf16")
    assert (
        losses[1] < losses[0]
        and runs["bf16"]["dev"]["default"]["micro"]["f1"] > 0.5 * runs["cpu"]["dev"]["default"]["micro"]["f1"]
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (NCCL, one per process)")
def test_two_nccl_processes_train_as_one(tmp_path: Path) -> None:
    config = str(REPO / "configs" / "sample.yaml")
    train_from_config(config, [*TINY, "training.epochs=2", f"output.dir={tmp_path / 'one'}"])
    job = _torchrun(tmp_path, str(REPO / "train.py"), config, *TINY, "training.epochs=2", "output.dir=two")
    assert job.returncode == 0, job.stderr[-3000:]
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-4)
