"""Data-parallel training under ``torchrun``: the process group, this process's rank and device, each rank's
shard of a global batch, mixed precision, and errors that end every rank together.

``torchrun --standalone --nproc-per-node N train.py CONFIG`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in their environment; ``process_group`` joins them (NCCL on CUDA, one
GPU per process chosen by ``LOCAL_RANK``; gloo on CPU). Without those variables (or with ``WORLD_SIZE=1``) nothing
here touches ``torch.distributed`` and a run takes the single-process code path.

Every rank sees the same seeded sequence of global batches; ``shard`` gives each rank a disjoint part of each,
and the callers weight each rank's loss by its share of the batch so that DDP's average over ranks equals the
single-process gradient of the whole batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

from ner.errors import NerError
from ner.log import log

# Long enough for rank 0 to score dev (or checkpoint) while the other ranks wait at the next collective.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


class PeerError(NerError):
    """Raised on the ranks that did not fail when another rank did: rank 0 prints the failing rank's message,
    the others exit with the same status silently (``silent``)."""

    silent = True


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that evaluates, logs, shows progress and writes files."""
        return self.rank == 0


def from_environment() -> Context:
    """The rank, world size and local rank that ``torchrun`` sets; a single process without them."""
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(name, "")
        if text and not text.isdigit():
            raise NerError(f"environment: {name}={text!r}: expected a non-negative integer (as torchrun sets)")
        values[name] = int(text) if text else None
    world = values["WORLD_SIZE"] or 1
    rank = values["RANK"] or 0
    if world > 1 and values["RANK"] is None:
        raise NerError(f"environment: WORLD_SIZE={world} without RANK: start the processes with torchrun")
    if rank >= world:
        raise NerError(f"environment: RANK={rank} is not below WORLD_SIZE={world}")
    return Context(rank, world, values["LOCAL_RANK"] if values["LOCAL_RANK"] is not None else rank)


def select_device(name: str, context: Context) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error. A rank of a job
    takes the GPU of its ``LOCAL_RANK`` (and makes it the current one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NerError("training.device: cuda requested but no CUDA device is available (use auto or cpu)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if not context.distributed:
        return torch.device("cuda")
    if context.local_rank >= torch.cuda.device_count():
        raise NerError(
            f"LOCAL_RANK={context.local_rank}: this machine has {torch.cuda.device_count()} GPU(s); "
            f"start at most that many processes per node (--nproc-per-node)"
        )
    torch.cuda.set_device(context.local_rank)
    return torch.device("cuda", context.local_rank)


@contextmanager
def process_group(device_name: str) -> Iterator[tuple[Context, torch.device]]:
    """This process's context and device; under torchrun, inside the joined process group (left at the end)."""
    context = from_environment()
    device = select_device(device_name, context)
    if not context.distributed or torch.distributed.is_initialized():
        yield context, device
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        torch.distributed.init_process_group(
            backend, rank=context.rank, world_size=context.world_size, timeout=COLLECTIVE_TIMEOUT
        )
    except Exception as error:  # torch raises DistNetworkError, RuntimeError, ValueError from the store
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "EADDRINUSE" in str(error) or "address already in use" in str(error).lower():
            reason = "the port is already in use (choose another --master-port, or --standalone)"
        raise NerError(
            f"torch.distributed: rank {context.rank} cannot join the {backend} process group at {address}: {reason}"
        ) from None
    if not context.main:
        log.setLevel(logging.WARNING)  # rank 0 logs the job's progress; the others only their warnings
    try:
        yield context, device
        # Leave together: a gloo rank that tears its group down while rank 0 still scores and writes aborts the
        # job ("terminate called without an active exception"). On an error, torchrun's teardown ends the others.
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@contextmanager
def agreed(context: Context) -> Iterator[None]:
    """Run a phase (reading the data, checking the run directory) on every rank; if it raises ``NerError`` on
    any rank, every rank raises: rank 0 the lowest failing rank's message, the others a silent ``PeerError``.
    So a rank that cannot read its data ends the whole job with its error, before anything is written."""
    failure: NerError | None = None
    try:
        yield
    except NerError as error:
        if not context.distributed:
            raise
        failure = error
    if not context.distributed:
        return
    messages: list[str | None] = [None] * context.world_size
    torch.distributed.all_gather_object(messages, None if failure is None else str(failure))
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if not failed:
        return
    rank, message = failed[0]
    if context.main:
        if failure is not None and rank == 0:
            raise failure
        raise NerError(f"rank {rank}: {message}")
    raise PeerError(message)


def shard(groups: Sequence[Sequence[int]], context: Context) -> list[int]:
    """This rank's part of a global batch given as groups of sentence indices (single sentences, or whole
    documents that must stay together): disjoint across ranks, together the whole batch, the same on every
    rank whatever its own share. Sentences are dealt out in turn (a batch is sorted by length, so each rank gets
    a similar padded size); documents go to the rank with the fewest sentences so far."""
    if all(len(group) == 1 for group in groups):
        return [group[0] for group in groups[context.rank :: context.world_size]]
    counts = [0] * context.world_size
    mine: list[int] = []
    for group in groups:
        rank = counts.index(min(counts))
        counts[rank] += len(group)
        if rank == context.rank:
            mine.extend(group)
    return mine


class BatchShares:
    """``select`` of ``EncodedSentences.batches``: this rank's part of each global batch, and its loss weight.

    The single-process loss is the mean over the N sentences of a batch; DDP averages the gradients of the W
    ranks. A rank with n of the N sentences weights its own mean loss by W * n / N, so that the average over
    the ranks is the gradient of the whole batch's mean loss, however unevenly the batch splits (documents stay
    whole). A rank left without a sentence (fewer sentences or documents than ranks) computes one with
    weight 0, so that every rank takes part in every step.
    """

    def __init__(self, context: Context) -> None:
        self.context = context
        self.weight, self.size = 1.0, 0  # of the last batch handed out; size: its global sentence count

    def __call__(self, units: list[list[int]]) -> list[int]:
        mine = shard(units, self.context)
        self.size = sum(len(unit) for unit in units)
        self.weight = self.context.world_size * len(mine) / self.size
        return mine or units[0][:1]


class _Loss(nn.Module):
    """A loss computed by ``network`` as a module's ``forward``: DDP synchronises gradients through forward."""

    def __init__(self, network: nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self.loss = loss

    def forward(self, *inputs: object) -> torch.Tensor:
        return self.loss(*inputs)


def data_parallel(network: nn.Module, loss: Callable[..., object], find_unused_parameters: bool = False) -> nn.Module:
    """``loss`` (a function of a batch, computed by ``network``) as a DistributedDataParallel module: calling it
    runs the loss; its backward pass averages ``network``'s gradients over the ranks. Rank 0's weights are
    copied to every rank here. ``network`` is already on this rank's device (no ``device_ids``: DDP then
    leaves the inputs where they are; the loss moves them)."""
    module = network if loss is network else _Loss(network, loss)
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)


def all_sum(value: torch.Tensor, context: Context) -> torch.Tensor:
    """``value`` summed over the ranks (itself in a single process)."""
    if context.distributed:
        value = value.clone()
        torch.distributed.all_reduce(value)
    return value


def broadcast_flag(flag: bool, context: Context, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. early stopping, decided where dev is scored)."""
    if not context.distributed:
        return flag
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(value, src=0)
    return bool(value.item())


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """Autocast to bfloat16 for ``precision: bf16`` (matrix products in bf16, reductions in float32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def keep_float32(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> None:
    """Under autocast, run every ``kind`` submodule of ``model`` in float32: autocast off inside it, its float
    inputs cast up. For modules that work in one dtype only (our LSTM's recurrence, C++ or PyTorch loops;
    torch's adaptive softmax); outside autocast the hooks change nothing."""
    for module in model.modules():
        if isinstance(module, kind):
            module.register_forward_pre_hook(_enter_float32, with_kwargs=True)
            module.register_forward_hook(_leave_float32, always_call=True)


_SUSPENDED: list[str] = []  # per float32 module being run: the device type whose autocast it turned off, or ""


def _enter_float32(
    module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[tuple[object, ...], dict[str, object]] | None:
    tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
    kind = tensors[0].device.type if tensors else "cpu"
    if not torch.is_autocast_enabled(kind):
        _SUSPENDED.append("")
        return None
    torch.set_autocast_enabled(kind, False)
    _SUSPENDED.append(kind)

    def up(value: object) -> object:
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return tuple(up(value) for value in args), {key: up(value) for key, value in kwargs.items()}


def _leave_float32(module: nn.Module, args: tuple[object, ...], output: object) -> None:
    kind = _SUSPENDED.pop()
    if kind:
        torch.set_autocast_enabled(kind, True)


def rank_seed(seed: int, epoch: int, context: Context) -> int:
    """The seed of a rank's random draws (dropout) in an epoch: distinct across ranks, fixed by (seed, epoch,
    rank), so a resumed job draws what an uninterrupted one would, whatever it ran before."""
    return (seed * 1_000_003 + epoch) * 65_537 + context.rank
