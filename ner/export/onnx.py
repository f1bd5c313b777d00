"""``ner export RUN_DIR OUT_DIR``: a trained tagger as ONNX graphs up to the emissions, plus its CRF and vocabularies,
for ``ner.runtime`` (onnxruntime + numpy; ``ner tag OUT_DIR ... --backend onnx``).

As DeLFT does for its BiLSTM-CRF, the graph stops at the emission scores and the CRF is decoded outside it. The
graph ``model.onnx`` takes a batch as its V distinct words (``ner.runtime.encoding`` documents the inputs:
``word_ids``, ``casing_ids``, ``document_casing_ids``, ``char_ids`` per distinct word, ``rows`` (B, T) and
``lengths`` (B,)), with dynamic V, W, B and T. Inside: the embedder of ``ner.network.Embedder`` (word vectors, with a
pretrained table as an initializer; casing; document casing; character CNN), the rows gathered into (B, T, D), our
BiLSTM as the ONNX ``LSTM``/``GRU`` operator per layer (reading each sentence within its length, zeros at padding;
weights reordered to ONNX's gate order; the coupled cell as ONNX's ``input_forget``), then the emission layer.
With ``model.document_context`` it outputs the BiLSTM states (B, T, 2H) instead: the runtime averages each
token's other mentions in its document across all the batches of a call, in numpy, and ``emissions.onnx`` maps
states and that context to emissions, as ``TaggerModel.emit_with_context``.

Not exported (a one-line NerError says why): ELMo models (the biLM's LSTM projects and clips its states, which the
ONNX LSTM operator cannot express) and ``model.lstm.layer_norm`` (the operator has no gate normalisation).
OUT_DIR is written under a temporary name and renamed when complete, after onnxruntime's emissions have been
checked against PyTorch's on a few sentences; an existing non-empty OUT_DIR, or the run directory, is refused.
The graphs use the TorchScript-based exporter (``dynamo=False``), which supports the operator-level symbolic.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import ner
from ner.data.features import DOCUMENT_CASING_CLASSES
from ner.data.vocab import save_vocabularies
from ner.errors import NerError
from ner.fileio import write_json_atomic, write_text_atomic
from ner.model import Tagger
from ner.network import TaggerModel
from ner.runtime.tagger import (
    CRF_FILE,
    EXPORT_FORMAT,
    HEAD_GRAPH,
    META_FILE,
    MODEL_GRAPH,
    TABLE_INDEX_FILE,
    OnnxTagger,
    import_onnxruntime,
)
from ner.tagger_files import CONFIG_FILE

OPSET = 17
MAX_WORD_LENGTH = 50  # characters of a word the character CNN reads, as ``Tagger.encode``
CHECK_TOLERANCE = 1e-3  # largest |onnxruntime - PyTorch| emission difference an export may show on its check
_MAX_GRAPH_BYTES = 2_000_000_000  # protobuf's limit on one ONNX file (less a margin)


class _Recurrence(torch.autograd.Function):
    """One bidirectional layer as the ONNX ``LSTM``/``GRU`` operator, for export only: x (T, B, I), lengths (B,)
    -> (T, 2, B, H). Its forward gives only the output's shape; the values come from onnxruntime."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        lengths: torch.Tensor,
        h0: torch.Tensor,
        weights: tuple,
        op: str,
        hidden: int,
        attributes: dict,
    ) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 2, x.shape[1], hidden)

    @staticmethod
    def symbolic(g: Any, x: Any, lengths: Any, h0: Any, weights: tuple, op: str, hidden: int, attributes: dict) -> Any:
        w, r, b, peephole = (None if t is None else g.op("Constant", value_t=t) for t in weights)
        lengths = g.op("Cast", lengths, to_i=6)  # TensorProto.INT32
        inputs = [x, w, r, b, lengths, h0]  # initial_h = 0
        if op == "LSTM":
            inputs += [h0] if peephole is None else [h0, peephole]  # initial_c = 0, P
        outputs = g.op(
            op, *inputs, direction_s="bidirectional", hidden_size_i=hidden, outputs=2 + (op == "LSTM"), **attributes
        )
        return outputs[0]


def _layer_weights(encoder: nn.Module, layer: int) -> tuple[str, tuple, dict]:
    """ONNX's operator, (W, R, B, P) and attributes for one layer of our LSTM/GRU (torch's gate layout).

    ONNX orders LSTM gates i, o, f, c (ours: i, f, g, o), peepholes i, o, f (ours: i, f, o) and GRU gates z, r, h
    (ours: r, z, n; torch's GRU is ONNX's with ``linear_before_reset``). The coupled cell (gates f, g, o, with
    i = 1 - f) is ONNX's ``input_forget`` (f = 1 - i) with ONNX's i gate given -f's weights: sigmoid(-x) = 1 -
    sigmoid(x), so ONNX's f is our f and its i our 1 - f.
    """
    variant = encoder.spec.variant

    def stacked(kind: str) -> torch.Tensor | None:
        names = [f"{kind}_l{layer}", f"{kind}_l{layer}_reverse"]
        if not hasattr(encoder, names[0]):
            return None
        return torch.stack([getattr(encoder, name).detach() for name in names]).float()  # (2, ...)

    def reordered(t: torch.Tensor) -> torch.Tensor:  # (2, K * H, ...) in ONNX's gate order
        if variant == "gru":
            r_gate, z_gate, n_gate = t.chunk(3, 1)
            return torch.cat([z_gate, r_gate, n_gate], 1)
        if variant == "coupled":
            f_gate, g_gate, o_gate = t.chunk(3, 1)
            return torch.cat([-f_gate, o_gate, torch.zeros_like(f_gate), g_gate], 1)
        i_gate, f_gate, g_gate, o_gate = t.chunk(4, 1)
        return torch.cat([i_gate, o_gate, f_gate, g_gate], 1)

    w, r = reordered(stacked("weight_ih")), reordered(stacked("weight_hh"))  # (2, 4H or 3H, I or H)
    biases = [stacked("bias_ih"), stacked("bias_hh")]
    b = torch.cat([torch.zeros(2, w.shape[1]) if bias is None else reordered(bias) for bias in biases], 1)
    if variant == "gru":
        return "GRU", (w, r, b, None), {"linear_before_reset_i": 1}
    peephole = stacked("weight_peephole")  # (2, 3H): c -> i, f, o
    if peephole is not None:
        i_gate, f_gate, o_gate = peephole.chunk(3, 1)
        peephole = torch.cat([i_gate, o_gate, f_gate], 1)
    return "LSTM", (w, r, b, peephole), {"input_forget_i": 1} if variant == "coupled" else {}


class _ModelGraph(nn.Module):
    """What ``model.onnx`` computes (see the module docstring); ``forward`` takes the inputs named ``inputs``."""

    def __init__(self, model: TaggerModel, inputs: Sequence[str]) -> None:
        super().__init__()
        self.model, self.inputs = model, list(inputs)
        encoder = model.encoder
        self.hidden, self.residual = encoder.hidden_size, encoder.residual
        self.layers = [_layer_weights(encoder, layer) for layer in range(encoder.num_layers)]

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.inputs, tensors))
        word_ids, rows, lengths = given["word_ids"], given["rows"], given["lengths"]
        columns = {
            name: given[name][:, None] if name in given else None
            for name in ("casing_ids", "document_casing_ids", "char_ids")
        }  # (V, 1), (V, 1, W)
        features = self.model.embedder(
            word_ids[:, None],
            columns["casing_ids"],
            columns["char_ids"],
            document_casing_ids=columns["document_casing_ids"],
        )[:, 0]  # (V, D)
        x = features[rows].transpose(0, 1)  # (T, B, D)
        for layer, (op, weights, attributes) in enumerate(self.layers):
            h0 = x.new_zeros(2, x.shape[1], self.hidden)  # (2, B, H)
            y = _Recurrence.apply(x, lengths, h0, weights, op, self.hidden, attributes)  # (T, 2, B, H)
            y = y.permute(0, 2, 1, 3).flatten(2)  # (T, B, 2H): [forward; backward]
            x = y + x if self.residual and layer > 0 else y
        hidden = x.transpose(0, 1)  # (B, T, 2H)
        return hidden if self.model.document_context else self.model.emit_with_context(hidden, None)  # (B, T, K)


class _HeadGraph(nn.Module):
    """What ``emissions.onnx`` computes: states and document context (B, T, 2H) -> emissions (B, T, K)."""

    def __init__(self, model: TaggerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.model.emit_with_context(states, context)


def export_onnx(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Export the tagger of ``run_dir`` into the new directory ``out_dir``; returns what ``export.json`` says."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == run_dir.resolve():
        raise NerError(f"{out_dir}: is the run directory itself; choose a new OUT_DIR for the export")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise NerError(
            f"{out_dir}: exists and is not an empty directory; choose a new OUT_DIR (nothing is overwritten)"
        )
    import_onnxruntime()
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise NerError('ner export needs the onnx package: pip install -e ".[onnx]"') from None
    tagger = Tagger.load(run_dir, device="cpu")
    _check_exportable(tagger, run_dir)
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        meta = _write(tagger, run_dir, temporary)
        meta["check"] = _check(tagger, temporary, out_dir)
        write_json_atomic(temporary / META_FILE, meta)
        os.replace(temporary, target)  # an empty out_dir is replaced whole
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return meta


def _check_exportable(tagger: Tagger, run_dir: Path) -> None:
    model = tagger.model
    if model.elmo is not None:
        raise NerError(
            f"{run_dir}: ELMo models cannot be exported to ONNX: the biLM's LSTM projects and clips its "
            f"states, which the ONNX LSTM operator cannot express"
        )
    if model.encoder.layer_norm:
        raise NerError(
            f"{run_dir}: model.lstm.layer_norm is on, and the ONNX LSTM operator has no layer "
            f"normalisation of the gates: this model cannot be exported"
        )
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    if size > _MAX_GRAPH_BYTES:
        raise NerError(
            f"{run_dir}: the model holds {size / 1e9:.1f} GB of weights and tables, more than one ONNX file can (2 GB)"
        )


def _write(tagger: Tagger, run_dir: Path, out: Path) -> dict[str, Any]:
    """Write the graphs, CRF, vocabularies and metadata of ``tagger`` into ``out``; returns the metadata."""
    config = tagger.config.model
    inputs = (
        ["word_ids"]
        + ["casing_ids"] * bool(config.embeddings.casing_dim)
        + ["document_casing_ids"] * bool(config.embeddings.document_casing_dim)
        + ["char_ids"] * bool(config.char_cnn.dim)
        + ["rows", "lengths"]
    )
    model = tagger.model.eval()
    output = "states" if config.document_context else "emissions"
    probe = _trace_inputs(tagger)
    axes = {
        "word_ids": {0: "words"},
        "casing_ids": {0: "words"},
        "document_casing_ids": {0: "words"},
        "char_ids": {0: "words", 1: "chars"},
        "rows": {0: "batch", 1: "time"},
        "lengths": {0: "batch"},
        output: {0: "batch", 1: "time"},
    }
    _export(_ModelGraph(model, inputs), tuple(probe[name] for name in inputs), out / MODEL_GRAPH, inputs, output, axes)
    if config.document_context:
        states = torch.zeros(2, 3, 2 * config.lstm.hidden_size)
        _export(
            _HeadGraph(model),
            (states, states),
            out / HEAD_GRAPH,
            ["states", "context"],
            "emissions",
            {name: {0: "batch", 1: "time"} for name in ("states", "context", "emissions")},
        )
    save_vocabularies(out, tagger.words, tagger.chars, tagger.tags)
    table_index = None
    if tagger.vectors is not None:
        table_index = TABLE_INDEX_FILE
        write_text_atomic(out / TABLE_INDEX_FILE, json.dumps(tagger.vectors.index, ensure_ascii=False) + "\n")
    crf = model.crf
    parameters = {
        "start": crf.crf.start_transitions,
        "transitions": crf.crf.transitions,
        "end": crf.crf.end_transitions,
        "start_allowed": crf.start_allowed,
        "transitions_allowed": crf.transitions_allowed,
        "end_allowed": crf.end_allowed,
    }
    crf_data = {
        "tags": tagger.tags.items,
        "dtype": str(crf.crf.transitions.dtype).removeprefix("torch."),
        **{name: value.detach().cpu().tolist() for name, value in parameters.items()},
    }
    write_text_atomic(out / CRF_FILE, json.dumps(crf_data) + "\n")
    write_text_atomic(out / CONFIG_FILE, (run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    meta = {
        "format": EXPORT_FORMAT,
        "exported_from": str(run_dir.resolve()),
        "ner_version": ner.__version__,
        "torch_version": torch.__version__,
        "onnx_opset": OPSET,
        "data_scheme": tagger.data_scheme,
        "model_scheme": config.scheme,
        "graphs": {"model": MODEL_GRAPH, "emissions": HEAD_GRAPH if config.document_context else None},
        "inputs": inputs,
        "model_output": output,
        "word_lookup": {
            "vocabulary": "words.json",
            "lowercase": tagger.words.lowercase,
            "table_index": table_index,
            "table_first_id": len(tagger.words) if table_index else None,
            "how": "word_ids: a word's id in words.json (lowercased first if lowercase; 1 = <unk>); with a "
            "pretrained table, a word missing there but in table_index gets table_first_id + its row, "
            "which model.onnx looks up in the table it holds as an initializer",
        },
        "chars": {
            "vocabulary": "chars.json",
            "max_word_length": MAX_WORD_LENGTH,
            "min_width": max((w for w, _ in config.char_cnn.filters), default=1),
        },
        "document_context": config.document_context,
        "document_context_how": "model.onnx gives states (B, T, 2H); each token's context is the mean state of "
        "the other tokens of its lowercased spelling in its document, over all batches "
        "of a call (zeros if none); emissions.onnx maps states and context to emissions"
        if config.document_context
        else None,
        "propagate_entities": config.propagate_entities,
        "crf": CRF_FILE,
        "tags": "tags.json",
        "config": CONFIG_FILE,
    }
    write_json_atomic(out / META_FILE, meta)
    return meta


def _trace_inputs(tagger: Tagger) -> dict[str, torch.Tensor]:
    """Example inputs for tracing: 4 distinct words (one from the pretrained table, if any, so that the embedder's
    table branch is the one traced), 2 sentences."""
    table_word = len(tagger.words) if tagger.vectors is not None else 1  # the table's first row
    word_ids = torch.tensor([1, 2, 3, table_word]).clamp(max=len(tagger.word_lookup) - 1)
    width = max(4, max((w for w, _ in tagger.config.model.char_cnn.filters), default=1))
    char_ids = torch.arange(1, 4 * width + 1).view(4, width) % max(len(tagger.chars) - 1, 1) + 1
    char_ids[0, 2:] = 0
    return {
        "word_ids": word_ids,
        "casing_ids": torch.tensor([1, 2, 3, 1]),
        "document_casing_ids": torch.tensor([1, 2, 3, 4]) % len(DOCUMENT_CASING_CLASSES),
        "char_ids": char_ids,
        "rows": torch.tensor([[0, 1, 2], [3, 0, 0]]),
        "lengths": torch.tensor([3, 1]),
    }


def _export(
    graph: nn.Module, args: tuple, path: Path, inputs: list[str], output: str, axes: dict[str, dict[int, str]]
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer warnings
        try:
            torch.onnx.export(
                graph.eval(),
                args,
                str(path),
                dynamo=False,
                input_names=inputs,
                output_names=[output],
                dynamic_axes={name: axes[name] for name in [*inputs, output]},
                opset_version=OPSET,
            )
        except (torch.onnx.errors.OnnxExporterError, RuntimeError) as error:
            raise NerError(f"{path.name}: torch.onnx.export failed: {str(error).strip().splitlines()[0]}") from None


def pytorch_emissions(
    tagger: Tagger, sentences: Sequence[Sequence[str]], batch_size: int = 64, document_ids: Sequence[int] | None = None
) -> list[np.ndarray]:
    """The PyTorch tagger's emission scores (T_i, K) of each (non-empty) sentence, in input order."""
    result: list[np.ndarray] = [np.empty(0)] * len(sentences)
    encoded = tagger.encode(sentences, document_ids=document_ids)
    for batch, emissions in tagger.inference_emissions(encoded, batch_size):
        for index, length, scores in zip(batch.indices, batch.lengths.tolist(), emissions.cpu().numpy()):
            result[index] = scores[:length]
    return result


def _check(tagger: Tagger, directory: Path, out_dir: Path) -> dict[str, Any]:
    """Compare onnxruntime's emissions with PyTorch's on sentences made of the vocabulary's words (in two
    documents, batches of 3); a NerError beyond ``CHECK_TOLERANCE``."""
    words = tagger.words.items[2:50] or ["x"]
    extra = ["Zqxw-17", "y" * (MAX_WORD_LENGTH + 10)]
    if tagger.vectors is not None:
        extra += [w for w in list(tagger.vectors.index)[:200] if w not in tagger.words.index][:3]
    pool = [w.capitalize() if i % 3 == 0 else w for i, w in enumerate(words + extra + words[:10])]
    sentences, start = [], 0
    for length in (1, 4, 9, 2, 13, 6, 1, 7):
        sentences.append([pool[(start + i) % len(pool)] for i in range(length)])
        start += length
    document_ids = [0] * 4 + [1] * 4
    expected = pytorch_emissions(tagger, sentences, 3, document_ids)
    found = OnnxTagger.load(directory, threads=1).emissions(sentences, 3, document_ids)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(expected, found))
    if not difference <= CHECK_TOLERANCE:
        raise NerError(
            f"{out_dir}: onnxruntime's emissions differ from PyTorch's by {difference:.3g} on the check "
            f"sentences (tolerance {CHECK_TOLERANCE}); nothing was written"
        )
    return {"sentences": len(sentences), "max_abs_emission_difference": difference}
