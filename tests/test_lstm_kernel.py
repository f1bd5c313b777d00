"""The fused C++ LSTM recurrence (ner.nn.lstm_kernel) against the PyTorch path and torch.nn.LSTM, and its fallback."""

from __future__ import annotations

import os

import pytest
import test_lstm
import torch
from test_lstm import LENGTHS, assert_all_close, flat, gradients, make_input, make_state, mask_of

import ner.nn.lstm as lstm_module
import ner.nn.products as products
from ner.nn import LSTM, kernels, lstm_kernel
from ner.nn.lstm_kernel import KernelRecurrence

# CI installs a compiler and ninja (.ci/run) and builds the kernel at setup (Makefile): there it must be available.
KERNEL = kernels.available()
needs_kernel = pytest.mark.skipif(not KERNEL and not os.environ.get("CI"), reason="the LSTM kernel could not be built")
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
# Twelve sentences: steps with more rows than the kernel takes in its fused pass (8) and steps with fewer.
MANY = [9, 1, 6, 9, 3, 7, 2, 5, 8, 4, 9, 6]

CONFIGS = {
    "plain": dict(num_layers=2, bidirectional=True),
    "one-way": dict(num_layers=1),
    "cell-clip": dict(num_layers=2, bidirectional=True, cell_clip=0.3),
    "projection": dict(num_layers=2, bidirectional=True, proj_size=3),
    "projection-clips": dict(num_layers=2, bidirectional=True, proj_size=3, cell_clip=0.5, proj_clip=0.1),
    "elmo": dict(num_layers=1, proj_size=3, cell_clip=0.5, proj_clip=0.1),
    "wide": dict(num_layers=1, bidirectional=True, hidden_size=40),  # a full block of 32 units, then 8
}


@pytest.fixture
def kernel_calls(monkeypatch) -> dict[str, int]:
    """Counts the layers run by the kernel, at inference and in training."""
    calls = {"inference": 0, "training": 0}
    steps = lstm_module.kernel_steps

    def counted_steps(*args):
        calls["inference"] += 1
        return steps(*args)

    class CountedRecurrence:
        @staticmethod
        def apply(*args):
            calls["training"] += 1
            return KernelRecurrence.apply(*args)

    monkeypatch.setattr(lstm_module, "kernel_steps", counted_steps)
    monkeypatch.setattr(lstm_module, "KernelRecurrence", CountedRecurrence)
    return calls


def run_both_ways(module: LSTM, x: torch.Tensor, lengths: list[int], state, kernel: bool) -> list[torch.Tensor]:
    """Outputs, gradients (of x, the state and every parameter) and inference outputs, on one path."""
    previous, kernels._loaded = kernels._loaded, kernel
    try:
        mask = mask_of(lengths, x.shape[1])
        results = flat(module(x, mask, state))
        inputs = [x, *state, *module.parameters()]
        grads = gradients(results, inputs)
        with torch.no_grad():
            inference = flat(module(x, mask, state))
    finally:
        kernels._loaded = previous
    return [*results, *grads, *inference]


def make_module(name: str, dtype: torch.dtype) -> LSTM:
    """Config ``name``; in float64 with larger-than-init weights, so that gates saturate and the clips bite (in
    float32, sums taken in another order then differ by ~1e-4: float32 keeps torch's initial weights)."""
    torch.manual_seed(0)
    options = dict(CONFIGS[name])
    module = LSTM(3, options.pop("hidden_size", 6), **options).to(dtype)
    if dtype == torch.float64:
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter))
    return module


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", CONFIGS)
def test_kernel_equals_pytorch_path(name, dtype, kernel_calls) -> None:
    module = make_module(name, dtype)
    x = make_input(MANY, 3, dtype, time=max(MANY))
    state = make_state(module, len(MANY))
    expected = run_both_ways(module, x, MANY, state, kernel=False)
    assert kernel_calls == {"inference": 0, "training": 0}
    results = run_both_ways(module, x, MANY, state, kernel=True)
    layers = module.num_layers
    assert kernel_calls == {"inference": layers, "training": layers}
    assert_all_close(results, expected, TOLERANCE[dtype])


@needs_kernel
@pytest.mark.parametrize("proj_size", [0, 4])
def test_kernel_equals_torch(proj_size, kernel_calls) -> None:
    """float32, 24 sentences of 1-8 tokens (steps of many rows and of few), 40 units (a block of 32 and one of 8):
    the kernel's numbers are torch's."""
    torch.manual_seed(0)
    lengths = torch.randint(1, 9, (24,)).tolist()
    ours = LSTM(3, 40, 2, bidirectional=True, proj_size=proj_size)
    reference = torch.nn.LSTM(3, 40, 2, bidirectional=True, batch_first=True, proj_size=proj_size)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(len(lengths), 8, 3, requires_grad=True)
    results = flat(ours(x, lengths=lengths))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    output, states = reference(packed)
    expected = [torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=8)[0], *states]
    assert_all_close(results, expected, 1e-5)
    assert_all_close(
        gradients(results, [x, *ours.parameters()]), gradients(expected, [x, *reference.parameters()]), 1e-5
    )
    assert kernel_calls["training"] == 2


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_pytorch_path_equals_torch(dtype, with_state, monkeypatch, kernel_calls) -> None:
    """The fallback, with the kernel off, still gives torch's numbers (tests/test_lstm.py runs the kernel)."""
    monkeypatch.setattr(kernels, "_loaded", False)
    test_lstm.test_equals_torch((LSTM, torch.nn.LSTM), 2, True, dtype, with_state)
    assert kernel_calls == {"inference": 0, "training": 0}


@pytest.mark.skipif(not products._ONEDNN, reason="torch's oneDNN linear op is not available")
def test_pytorch_path_on_onednn_equals_torch(monkeypatch, kernel_calls) -> None:
    monkeypatch.setattr(kernels, "_loaded", False)
    for proj_size in (0, 8):
        test_lstm.test_onednn_route_equals_torch(proj_size)
    assert kernel_calls == {"inference": 0, "training": 0}


def test_falls_back_when_the_kernel_cannot_be_built(monkeypatch, tmp_path, kernel_calls) -> None:
    """No compiler: available() says False (no exception, nothing printed) and the PyTorch path gives the numbers."""
    module = make_module("projection-clips", torch.float64)
    x = make_input(LENGTHS, 3, torch.float64)
    state = make_state(module, len(LENGTHS))
    expected = run_both_ways(module, x, LENGTHS, state, kernel=False)
    monkeypatch.setenv("NER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_loaded", None)
    assert kernels.available() is False
    mask = mask_of(LENGTHS)
    results = flat(module(x, mask, state))
    results += gradients(results, [x, *state, *module.parameters()])
    with torch.no_grad():
        results += flat(module(x, mask, state))
    assert_all_close(results, expected, 0)
    assert kernel_calls == {"inference": 0, "training": 0}


@needs_kernel
def test_a_cached_build_is_loaded_as_it_is(monkeypatch) -> None:
    """A build stamped with this source and these flags is loaded without cpp_extension (no ninja run)."""
    from torch.utils import cpp_extension

    def load(*args, **kwargs) -> None:
        raise AssertionError("the cached build should have been loaded as it is")

    assert (kernels.build_directory() / "source.sha256").read_text() == kernels._source_hash()
    monkeypatch.setattr(cpp_extension, "load", load)
    kernels.build()  # loads the library again: the same file, so the same ops


def test_switched_off_by_the_environment(monkeypatch) -> None:
    def build(verbose: bool = False) -> None:
        raise AssertionError("NER_LSTM_KERNEL=0 must not build the kernel")

    monkeypatch.setenv("NER_LSTM_KERNEL", "0")
    monkeypatch.setattr(kernels, "build", build)
    monkeypatch.setattr(kernels, "_loaded", None)
    assert kernels.available() is False


def test_other_cells_and_devices_take_the_pytorch_path(kernel_calls) -> None:
    for options in (dict(variant="peephole"), dict(variant="coupled"), dict(layer_norm=True)):
        module = LSTM(3, 4, bidirectional=True, **options).double()
        x = make_input(LENGTHS, 3, torch.float64)
        module(x, mask_of(LENGTHS))[0].sum().backward()
        with torch.no_grad():
            module(x, mask_of(LENGTHS))
    assert not lstm_kernel.supports(LSTM(3, 4).spec, torch.zeros(1, dtype=torch.float16))
    assert not lstm_kernel.supports(LSTM(3, 4).spec, torch.zeros(1, device="meta"))
    assert kernel_calls == {"inference": 0, "training": 0}
