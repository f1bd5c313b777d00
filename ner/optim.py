"""SGD with momentum, Adam and Adagrad, step for step the arithmetic of ``torch.optim``'s single-tensor (CPU)
paths, reading its state dicts (so runs checkpointed by earlier versions resume) and writing that layout.

Why not ``torch.optim``: its optimizers import ``torch._dynamo`` and sympy when they are created (their methods
are wrapped to disable the compiler, which imports it), 60-70 MB of resident memory for three loops of tensor
arithmetic (BENCHMARKS.md, "Memory"). tests/test_optim.py checks every step against ``torch.optim``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor


def clip_gradients(parameters: Iterable[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, with its numbers, without its multiplication of every gradient by 1
    when their norm is within ``max_norm``: on CPU that pass over the gradients (the word embeddings' whole table
    included) is 5 % of a CoNLL-2003 step, and checking costs no device sync; elsewhere torch's own."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or any(grad.device.type != "cpu" for grad in grads):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    total = torch.nn.utils.get_total_norm(grads)
    if not float(max_norm / (total + 1e-6)) >= 1.0:  # torch's factor, min(that, 1): 1 multiplies by 1; NaN clips
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)


class Optimizer:
    """One group of parameters, its hyper-parameters (``param_groups[0]``, ``lr`` may be changed between steps)
    and per-parameter state.

    With ``average`` (a decay in (0, 1)) it also keeps an exponential moving average of every parameter, updated
    after each step (``average * mean + (1 - average) * param``, starting from the first step's weights), for
    ``averaged_weights``: the averaged model is scored and saved, the raw weights go on training.
    """

    state_keys: tuple[str, ...] = ()  # the tensors each parameter's state holds

    def __init__(self, params: Iterable[Tensor], average: float = 0.0, **hyper: Any) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{"params": params, **hyper}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self.average = average
        self.averages: list[Tensor] = []  # one per parameter once the first step is done

    @property
    def params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        for param in self.params:
            if param.grad is not None:
                self._update(param, param.grad, self.state.setdefault(param, {}), group)
        if not self.average:
            return
        if not self.averages:
            self.averages = [param.detach().clone() for param in self.params]
            return
        for mean, param in zip(self.averages, self.params):
            mean.lerp_(param, 1 - self.average)

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Inside, the parameters hold their moving averages (as they are without ``average``, or before the
        first step); the raw weights come back on leaving."""
        if not self.averages:
            yield
            return
        raw = [param.detach().clone() for param in self.params]
        with torch.no_grad():
            for param, mean in zip(self.params, self.averages):
                param.copy_(mean)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, weights in zip(self.params, raw):
                    param.copy_(weights)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: tensor}}, "param_groups": [{hyper..., "params": [indices]}]}``, as torch."""
        index = {id(param): i for i, param in enumerate(self.params)}
        group = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        saved = {
            "state": {index[id(param)]: dict(state) for param, state in self.state.items()},
            "param_groups": [{**group, "params": list(range(len(self.params)))}],
        }
        if self.averages:
            saved["averages"] = list(self.averages)
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this optimizer or of its ``torch.optim`` namesake over the same parameters;
        raises ValueError when it does not fit them."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("loaded state dict does not hold this optimizer's parameters")
        saved = {i: state_dict["state"][i] for i in groups[0]["params"] if i in state_dict["state"]}
        self.state = {}
        for position, param in enumerate(self.params):
            entry = saved.get(groups[0]["params"][position])
            if entry is None:
                continue
            if set(entry) != set(self.state_keys) or not all(isinstance(v, Tensor) for v in entry.values()):
                raise ValueError(f"parameter {position}: state {sorted(entry)}, expected {sorted(self.state_keys)}")
            if any(value.shape != (() if name == "step" else param.shape) for name, value in entry.items()):
                raise ValueError(f"parameter {position}: state of another shape than {tuple(param.shape)}")
            self.state[param] = {
                name: value.to(torch.float32) if name == "step" else value.to(param.device, param.dtype)
                for name, value in entry.items()
            }
        for key in self.param_groups[0]:
            if key != "params" and key in groups[0]:
                self.param_groups[0][key] = groups[0][key]
        self.averages = self._loaded_averages(state_dict.get("averages"))

    def _loaded_averages(self, averages: Any) -> list[Tensor]:
        """The saved moving averages, checked against the parameters ([] when none were kept yet)."""
        if not self.average:
            if averages is not None:
                raise ValueError("moving averages saved, but this optimizer keeps none")
            return []
        if averages is None:
            return []
        if not isinstance(averages, list) or len(averages) != len(self.params):
            raise ValueError("moving averages: not one per parameter")
        if any(not isinstance(mean, Tensor) or mean.shape != param.shape for mean, param in zip(averages, self.params)):
            raise ValueError("moving averages: not of the parameters' shapes")
        return [mean.to(param.device, param.dtype) for mean, param in zip(averages, self.params)]


class SGD(Optimizer):
    """``torch.optim.SGD`` without dampening or Nesterov: weight decay into the gradient, then momentum."""

    state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        average: float = 0.0,
    ) -> None:
        super().__init__(params, average, lr=lr, momentum=momentum, weight_decay=weight_decay)
        if momentum == 0:
            self.state_keys = ()

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> None:
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.detach().clone()
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
            grad = state["momentum_buffer"]
        param.add_(grad, alpha=-group["lr"])


class Adam(Optimizer):
    """``torch.optim.Adam`` (L2 weight decay into the gradient, no AMSGrad); the step count is kept as a
    float32 tensor, as torch keeps it."""

    state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        average: float = 0.0,
    ) -> None:
        super().__init__(params, average, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> None:
        if not state:
            state.update(
                step=torch.tensor(0.0),
                exp_avg=torch.zeros_like(param, memory_format=torch.preserve_format),
                exp_avg_sq=torch.zeros_like(param, memory_format=torch.preserve_format),
            )
        beta1, beta2 = group["betas"]
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        step_size = group["lr"] / (1 - beta1**step)
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-step_size)


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` without learning-rate decay or weight decay (bilm-tf's optimiser)."""

    state_keys = ("step", "sum")

    def __init__(
        self, params: Iterable[Tensor], lr: float = 0.01, initial_accumulator_value: float = 0.0, eps: float = 1e-10
    ) -> None:
        super().__init__(params, lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps)
        for param in self.params:  # torch creates the state with the optimizer, not at the first step
            self.state[param] = {
                "step": torch.tensor(0.0),
                "sum": torch.full_like(param, initial_accumulator_value, memory_format=torch.preserve_format),
            }

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> None:
        state["step"] += 1
        state["sum"].addcmul_(grad, grad, value=1)
        std = state["sum"].sqrt().add_(group["eps"])
        param.addcdiv_(grad, std, value=-group["lr"])
