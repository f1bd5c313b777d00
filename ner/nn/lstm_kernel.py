"""The fused C++ recurrence of the plain LSTM cell (``lstm_kernel.cpp``): building, loading, and its autograd function.

The kernel runs a layer's whole step loop in C++, forward and the hand-written backward: a step's product is an
ATen matmul (or, for steps of few rows, part of its gate pass) and its gate arithmetic one pass over the rows,
where the PyTorch path (``ner.nn.recurrence``) dispatches a dozen ops per step from Python. It covers torch's
LSTM cell with the options cell clipping, projection and projection clipping, on CPU in float32 and float64, with
the numbers of the PyTorch path. That path remains for everything else (other cells, layer norm, other devices)
and wherever the kernel cannot be built (no C++ compiler or ninja) or ``NER_LSTM_KERNEL=0`` is set.

It is compiled once with torch.utils.cpp_extension (g++ and ninja; about a minute on 2 busy cores) into a
cache folder, ``$NER_CACHE_DIR`` or ``~/.cache/ner``, one per torch version, Python version and CPU; later
processes load the cached library directly (its stamp says which source and flags it was built from).
``make setup`` builds it ahead (``ner.nn.lstm_kernel.main``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ner.nn.packing import Plan
from ner.nn.products import matmul_nt, weight_gradient
from ner.nn.recurrence import Spec
from ner.nn.recurrence_backward import input_gradients

SOURCE = Path(__file__).with_name("lstm_kernel.cpp")
HEADERS = [Path(__file__).with_name("lstm_bf16.h")]  # included by SOURCE
_CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]  # fast-math: vectorised exp (glibc's libmvec)
_LDFLAGS = ["-fopenmp", "-lmvec"]  # libgomp: the one torch has loaded already (same soname)
_log = logging.getLogger(__name__)
# Inference reuses a layer's prepared weights while its parameters are unchanged (ner.nn.lstm): the forms of
# their recurrent weight that the kernel reads (its transpose for steps of few rows, its bfloat16 pairs) are kept
# for as long as it lives.
_derived: dict[tuple[int, str], tuple[weakref.ref, Tensor]] = {}  # (id(w_hh), form) -> (a weak reference, the form)
FUSED_MAX_ROWS = 8  # lstm_kernel.cpp's kFusedMaxRows: steps of at most this many rows read the transposed w_hh
_loaded: bool | None = None  # None until the first use tries to load (or build) the kernel


def build_directory() -> Path:
    """Where the compiled kernel is cached: one folder per torch version, Python version and CPU (it is compiled
    for the CPU it runs on, -march=native)."""
    root = Path(os.environ.get("NER_CACHE_DIR") or Path.home() / ".cache" / "ner")
    version = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    return root / "lstm_kernel" / f"{version}-{_cpu_signature()}".replace("+", "_")


def _cpu_signature() -> str:
    """A short hash of the CPU's model and feature flags (Linux), or of the platform elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        text = "".join(line for line in lines if line.startswith(("model name", "flags")))
    except OSError:
        text = platform.platform()
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def build(verbose: bool = False) -> None:
    """Compile the kernel if its cached build is missing or stale, and load it (raises if either fails)."""
    directory = build_directory()
    library, stamp = directory / "ner_lstm_kernel.so", directory / "source.sha256"
    if library.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == _source_hash():
        torch.ops.load_library(str(library))  # built from this very source: no need to ask ninja (~0.5 s)
        return
    from torch.utils import cpp_extension  # imported here: it pulls in setuptools

    directory.mkdir(parents=True, exist_ok=True)
    if not library.exists():
        _log.info("compiling the LSTM kernel into %s (once, about a minute)", directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. cpp_extension's note on the compiler's ABI
        cpp_extension.load(
            name="ner_lstm_kernel",
            sources=[str(SOURCE)],
            extra_cflags=list(_CFLAGS),
            extra_ldflags=list(_LDFLAGS),
            build_directory=str(directory),
            is_python_module=False,
            verbose=verbose,
        )  # copies: load() appends to the lists it is given
    partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    partial.write_text(_source_hash(), encoding="utf-8")
    partial.replace(stamp)


def _source_hash() -> str:
    """What a build is made of: the source and the flags."""
    code = b"".join(path.read_bytes() for path in [SOURCE, *HEADERS])
    return hashlib.sha256(code + " ".join(_CFLAGS + _LDFLAGS).encode()).hexdigest()


def available() -> bool:
    """Whether the kernel is loaded, loading or building it on the first call; False wherever that fails."""
    global _loaded
    if _loaded is None:
        _loaded = False
        if os.environ.get("NER_LSTM_KERNEL", "1") != "0":
            try:
                build()
                _loaded = True
            except Exception:  # no compiler, no ninja, a failed build: the PyTorch path
                pass
    return _loaded


def supports(spec: Spec, like: Tensor) -> bool:
    """Whether the kernel runs the cell ``spec`` on tensors like ``like``."""
    return (
        spec.variant == "lstm"
        and not spec.layer_norm
        and like.device.type == "cpu"
        and like.dtype in (torch.float32, torch.float64)
        and available()
    )


def native_bf16() -> bool:
    """Whether the kernel takes bfloat16 recurrent products natively (built for a CPU with AVX512-BF16)."""
    return available() and bool(torch.ops.ner_lstm.native_bf16())


def _transposed(w_hh: Tensor) -> Tensor:
    """w_hh (D, 4H, R) transposed and contiguous (D, R, 4H), as the fused steps read it."""
    return w_hh.transpose(1, 2).contiguous()


def _bf16_pairs(w_hh: Tensor) -> Tensor:
    """w_hh (D, 4H, R) as bfloat16 pairs of inputs (D, ceil(R / 2), 4H, 2), as ``lstm_bf16.h`` reads it."""
    directions, gates, recurrent = w_hh.shape
    pairs = (recurrent + 1) // 2
    padded = torch.nn.functional.pad(w_hh, (0, 2 * pairs - recurrent))  # (D, 4H, 2P)
    return padded.reshape(directions, gates, pairs, 2).transpose(1, 2).contiguous().to(torch.bfloat16)


def _derived_form(w_hh: Tensor, make: Callable[[Tensor], Tensor]) -> Tensor:
    """``make(w_hh)``, computed once and kept while w_hh lives."""
    key = (id(w_hh), make.__name__)
    entry = _derived.get(key)
    if entry is not None and entry[0]() is w_hh:
        return entry[1]
    form = make(w_hh)
    _derived[key] = (weakref.ref(w_hh, lambda _: _derived.pop(key, None)), form)
    return form


def kernel_steps(
    spec: Spec,
    plan: Plan,
    gx: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    bf16_products: bool = False,
) -> tuple[Tensor, Tensor]:
    """Inference over one layer: gx (D, N, 4H) the packed input projections (overwritten), h0 (D, B, R) and
    c0 (D, B, H) sorted. Returns the outputs (D, N, R) and the final cells (D, B, H) in sorted order.

    With ``bf16_products``, where the kernel has them natively (``native_bf16``), the recurrent products of
    steps of many rows take the previous state and w_hh rounded to bfloat16 and sum in float32 (float32
    inputs, no projection, H a multiple of 4; anything else stays float32)."""
    w_hh_t = _derived_form(w_hh, _transposed) if plan.batch_sizes[-1] <= FUSED_MAX_ROWS else None  # fused steps
    bf16 = bf16_products and w_hr is None and gx.dtype == torch.float32 and spec.hidden_size % 4 == 0
    pairs = _derived_form(w_hh, _bf16_pairs) if bf16 and native_bf16() else None
    out, c_n = torch.ops.ner_lstm.forward(
        gx.contiguous(), h0, c0, w_hh, w_hh_t, w_hr, plan.batch_sizes, spec.cell_clip, spec.proj_clip, False, pairs
    )
    return out, c_n


class KernelRecurrence(torch.autograd.Function):
    """``ner.nn.recurrence_backward.Recurrence`` for the plain LSTM cell, its step loops in C++.

    Inputs: x (D, N, I), w_ih (D, 4H, I), bias (D, 4H) or None, h0 (D, B, R), c0 (D, B, H), w_hh (D, 4H, R),
    w_hr (D, R, H) or None, the candidate's rows doubled. Outputs: (D, N, R) and the final cells (D, B, H), sorted.
    """

    @staticmethod
    def forward(
        ctx,
        spec: Spec,
        plan: Plan,
        x: Tensor,
        w_ih: Tensor,
        bias: Tensor | None,
        h0: Tensor,
        c0: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
    ):
        gx = matmul_nt(x, w_ih, bias, packed_rows=True).contiguous()  # (D, N, 4H)
        out, c_n, act, c_raw, tanh_c, h_raw = torch.ops.ner_lstm.forward(
            gx, h0, c0, w_hh, None, w_hr, plan.batch_sizes, spec.cell_clip, spec.proj_clip, True
        )
        ctx.spec, ctx.plan, ctx.has_bias = spec, plan, bias is not None
        ctx.save_for_backward(x, w_ih, h0, c0, w_hh, w_hr, out, act, c_raw, tanh_c, h_raw)
        return out, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_c_n: Tensor):
        spec, plan = ctx.spec, ctx.plan
        x, w_ih, h0, c0, w_hh, w_hr, out, act, c_raw, tanh_c, h_raw = ctx.saved_tensors
        d_gx, d_h0, d_c0, h_prev, d_h_raw = torch.ops.ner_lstm.backward(
            d_out,
            d_c_n,
            h0,
            c0,
            out,
            act,
            c_raw,
            tanh_c,
            h_raw if h_raw.numel() else None,
            w_hh,
            w_hr,
            plan.batch_sizes,
            spec.cell_clip,
            spec.proj_clip,
        )
        d_w_hh = weight_gradient(d_gx, h_prev)  # (D, 4H, R)
        d_w_hr = None
        if w_hr is not None:
            m = act[:, :, 3 * spec.hidden_size :] * tanh_c  # (D, N, H) o * tanh(c), the projection's input
            d_w_hr = weight_gradient(d_h_raw, m)  # (D, R, H)
        d_x, d_w_ih, d_bias = input_gradients(d_gx, x, w_ih, ctx.needs_input_grad[2], ctx.has_bias)
        return None, None, d_x, d_w_ih, d_bias, d_h0, d_c0, d_w_hh, d_w_hr


def main() -> None:
    """Build the kernel ahead of use (``make setup``): prints where and how long, or why not (exit 0 either way)."""
    start = time.perf_counter()
    try:
        build()
    except Exception as error:  # reported: the PyTorch path will be used
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"LSTM kernel not built ({first_line}); the PyTorch path will be used")
        return
    print(f"LSTM kernel ready in {build_directory()} ({time.perf_counter() - start:.1f} s)")
