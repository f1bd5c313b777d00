"""ner.optim against torch.optim: the same weights after every step, torch's state dicts resumed exactly,
clear errors on a state dict of other parameters, no torch._dynamo import; gradient clipping as torch clips."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ner import optim

REPO = Path(__file__).resolve().parents[1]

# (ours, torch's namesake, keyword arguments shared by both)
CASES = [
    (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    (optim.SGD, torch.optim.SGD, {"lr": 0.05}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
    (optim.Adagrad, torch.optim.Adagrad, {"lr": 0.2, "initial_accumulator_value": 1.0}),
]


def make_params(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    return [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]


def run_steps(optimizer: object, params: list[torch.Tensor], steps: range, lr_for: Callable[[int], float]) -> None:
    """Steps with seeded gradients (some parameters without one now and then) and a changing learning rate."""
    for step in steps:
        generator = torch.Generator().manual_seed(100 + step)
        optimizer.param_groups[0]["lr"] = lr_for(step)  # type: ignore[attr-defined]
        for i, param in enumerate(params):
            param.grad = None if (step + i) % 4 == 3 else torch.randn(param.shape, generator=generator)
        optimizer.step()  # type: ignore[attr-defined]


def lr_schedule(base: float) -> Callable[[int], float]:
    return lambda step: base * (1.0 / (1.0 + 0.05 * step))


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES)
def test_every_step_equals_torch_optim(ours: type, theirs: type, kwargs: dict) -> None:
    mine, reference = make_params(), make_params()
    ours_optimizer, torch_optimizer = ours(mine, **kwargs), theirs(reference, **kwargs)
    for step in range(6):
        run_steps(ours_optimizer, mine, range(step, step + 1), lr_schedule(kwargs["lr"]))
        run_steps(torch_optimizer, reference, range(step, step + 1), lr_schedule(kwargs["lr"]))
        for a, b in zip(mine, reference, strict=True):
            assert torch.equal(a, b), f"step {step}"


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES)
def test_state_dicts_of_torch_and_ours_resume_exactly(ours: type, theirs: type, kwargs: dict) -> None:
    """Three steps by torch (a checkpoint of an earlier version) or ours, its state dict into ours, three more:
    as six steps by torch alone."""
    lrs = lr_schedule(kwargs["lr"])
    reference = make_params()
    run_steps(theirs(reference, **kwargs), reference, range(6), lrs)
    for first, second in ((theirs, ours), (ours, ours)):
        params = make_params()
        before = first(params, **kwargs)
        run_steps(before, params, range(3), lrs)
        after = second(params, **kwargs)
        after.load_state_dict(before.state_dict())
        run_steps(after, params, range(3, 6), lrs)
        for a, b in zip(params, reference, strict=True):
            assert torch.equal(a, b), f"{first.__module__} -> {second.__module__}"


def test_a_state_dict_of_other_parameters_is_refused() -> None:
    params = make_params()
    sgd = optim.SGD(params, lr=0.1, momentum=0.9)
    run_steps(sgd, params, range(2), lr_schedule(0.1))
    saved = sgd.state_dict()
    with pytest.raises(ValueError, match="does not hold this optimizer's parameters"):
        optim.SGD(params[:2], lr=0.1, momentum=0.9).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"parameter 0: state \['momentum_buffer'\], expected \['exp_avg'"):
        optim.Adam(params).load_state_dict(saved)
    saved["state"][0]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"parameter 0: state of another shape than \(7, 5\)"):
        optim.SGD(params, lr=0.1, momentum=0.9).load_state_dict(saved)
    adam = optim.Adam(params)
    run_steps(adam, params, range(1), lr_schedule(0.1))
    saved = adam.state_dict()
    saved["state"][0]["step"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"parameter 0: state of another shape than \(7, 5\)"):
        optim.Adam(params).load_state_dict(saved)


def test_training_does_not_import_the_compiler(tmp_path: Path) -> None:
    """torch.optim's optimizers import torch._dynamo and sympy (60-70 MB resident) when created."""
    script = (
        "import sys\n"
        "from ner.config import load_config\n"
        "from ner.training import train\n"
        f"config = load_config({str(REPO / 'configs/sample.yaml')!r}, ['training.epochs=1', "
        "'output.progress=false', 'training.threads=1'])\n"
        f"train(config, __import__('pathlib').Path({str(tmp_path / 'run')!r}))\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("kind", [optim.SGD, optim.Adam])
def test_moving_average_of_the_weights_against_a_hand_computation(kind: type) -> None:
    params, plain = make_params(), make_params()
    averaged, reference = kind(params, lr=0.05, average=0.9), kind(plain, lr=0.05)
    expected: list[torch.Tensor] = []
    for step in range(5):
        run_steps(averaged, params, range(step, step + 1), lr_schedule(0.05))
        run_steps(reference, plain, range(step, step + 1), lr_schedule(0.05))
        current = [p.detach().clone() for p in plain]
        expected = current if not expected else [0.9 * m + 0.1 * p for m, p in zip(expected, current)]
        assert all(torch.equal(a, b) for a, b in zip(params, plain))  # averaging leaves training alone
    raw = [p.detach().clone() for p in params]
    with averaged.averaged_weights():
        for param, mean in zip(params, expected):
            torch.testing.assert_close(param, mean, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(p, r) for p, r in zip(params, raw))  # the raw weights are back


def test_moving_average_resumes_exactly_and_bad_averages_are_refused() -> None:
    unbroken_params, resumed_params = make_params(), make_params()
    unbroken = optim.SGD(unbroken_params, lr=0.05, momentum=0.9, average=0.99)
    run_steps(unbroken, unbroken_params, range(0, 3), lr_schedule(0.05))
    saved = unbroken.state_dict()
    with torch.no_grad():
        for param, value in zip(resumed_params, unbroken_params):
            param.copy_(value)
    resumed = optim.SGD(resumed_params, lr=0.05, momentum=0.9, average=0.99)
    resumed.load_state_dict(saved)
    run_steps(unbroken, unbroken_params, range(3, 6), lr_schedule(0.05))
    run_steps(resumed, resumed_params, range(3, 6), lr_schedule(0.05))
    assert all(torch.equal(a, b) for a, b in zip(unbroken.averages, resumed.averages))
    with pytest.raises(ValueError, match="moving averages saved, but this optimizer keeps none"):
        optim.SGD(make_params(), lr=0.05, momentum=0.9).load_state_dict(saved)
    wrong = {**saved, "averages": [mean.reshape(-1) for mean in saved["averages"]]}
    with pytest.raises(ValueError, match="moving averages: not of the parameters' shapes"):
        optim.SGD(make_params(), lr=0.05, momentum=0.9, average=0.99).load_state_dict(wrong)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, math.inf, math.nan], ids=["within", "near", "above", "inf", "nan"])
def test_clip_gradients_equals_torch(scale: float) -> None:
    """Gradients of several shapes (one missing) clipped to norm 5: bit for bit torch's clip_grad_norm_, whether
    the norm is within the bound (torch multiplies by 1), above it, or not finite."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 3), (11,), (2, 2, 2)]
    grads = [torch.randn(shape, generator=generator) * scale for shape in shapes]
    if not math.isfinite(scale):
        grads[0] = torch.randn(shapes[0], generator=generator)
        grads[1][3] = scale
    ours = [torch.zeros(shape, requires_grad=True) for shape in shapes] + [torch.zeros(2, requires_grad=True)]
    theirs = [torch.zeros(shape, requires_grad=True) for shape in shapes] + [torch.zeros(2, requires_grad=True)]
    for a, b, grad in zip(ours, theirs, grads):
        a.grad, b.grad = grad.clone(), grad.clone()
    optim.clip_gradients(ours, 5.0)
    torch.nn.utils.clip_grad_norm_(theirs, 5.0)
    for a, b in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, equal_nan=True)
    assert ours[3].grad is None
