"""ONNX export and the numpy runtime (ner.export.onnx, ner.runtime): the numpy CRF against the torch CRF and brute
force, onnxruntime's emissions against PyTorch's, `ner tag --backend onnx` against the PyTorch backend, and the
one-line errors of bad export directories."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason='the onnx extra is not installed: pip install -e ".[onnx]"')
pytest.importorskip("onnx", reason='the onnx extra is not installed: pip install -e ".[onnx]"')

from ner.cli import main
from ner.data.conll import read_conll
from ner.data.schemes import tags_to_spans
from ner.elmo import BiLM, BiLMOptions, Elmo
from ner.errors import NerError
from ner.export import onnx as export_module
from ner.export.onnx import pytorch_emissions
from ner.model import Tagger
from ner.nn.crf import CRF, allowed_transitions
from ner.runtime import OnnxTagger
from ner.runtime.crf import CrfScores, span_probabilities, viterbi
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
RAW = REPO / "data" / "sample" / "raw.txt"
FAST = ["training.epochs=2", "model.lstm.hidden_size=16", "model.embeddings.dim=24", "output.progress=false"]
RUNS = {
    "plain": [],
    # document context + document casing + propagation; two residual layers of peephole cells, a highway layer
    "document": [
        "model.document_context=true",
        "model.embeddings.document_casing_dim=4",
        "model.propagate_entities=true",
        "model.lstm.variant=peephole",
        "model.lstm.num_layers=2",
        "model.lstm.residual=true",
        "model.char_cnn.highway=1",
    ],
    # a pretrained table (words beyond the vocabulary), GRU, no casing feature
    "vectors": ["model.lstm.variant=gru", "model.embeddings.casing_dim=0"],
    "coupled": ["model.lstm.variant=coupled", "training.epochs=1"],
}
TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
IOB2_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def sample_test_sentences() -> list[list[str]]:
    return [s.tokens for s in read_conll(REPO / "data" / "sample" / "test.txt").sentences]


def write_vectors(path: Path) -> Path:
    """A text table: half the sample's training words and every word of raw.txt, seeded random vectors."""
    train = sorted({t.lower() for s in read_conll(REPO / "data/sample/train.txt").sentences for t in s.tokens})
    raw = sorted({w.lower() for line in RAW.read_text().split("\n") for w in line.split()})
    words = list(dict.fromkeys(train[::2] + raw))
    rng = np.random.default_rng(0)
    path.write_text("".join(f"{w} {' '.join(f'{x:.5f}' for x in rng.normal(0, 0.5, 24))}\n" for w in words))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (run directory, export directory) of each model in RUNS, trained on the sample."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("onnx")
    result = {}
    for name, extra in RUNS.items():
        if name == "vectors":
            extra = [*extra, f"model.embeddings.pretrained={write_vectors(root / 'vectors.txt')}"]
        run, out = root / name, root / f"{name}-onnx"
        train_from_config(SAMPLE, [*FAST, *extra, f"output.dir={run}"])
        assert main(["export", str(run), str(out)]) == 0
        result[name] = (run, out)
    return result


# ------------------------------------------------------------------------------------------- numpy CRF


def random_crf(tags: list[str], scheme: str, seed: int) -> tuple[CRF, CrfScores]:
    torch.manual_seed(seed)
    crf = CRF(len(tags), allowed_transitions(tags, scheme))
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_(0, 1)
    start, transitions, end = (t.detach().numpy() for t in crf.effective_scores())
    return crf, CrfScores(start, transitions, end)


def random_batch(seed: int, batch: int, time: int, tags: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, time, tags, generator=generator) * 2
    lengths = torch.randint(1, time + 1, (batch,), generator=generator)
    lengths[0] = time
    return emissions, torch.arange(time) < lengths[:, None]


def brute_force_best(emissions: np.ndarray, length: int, scores: CrfScores) -> list[int]:
    """The best-scoring path of one sentence among all K^length."""

    def score(path: tuple[int, ...]) -> float:
        total = scores.start[path[0]] + scores.end[path[-1]] + sum(emissions[t, k] for t, k in enumerate(path))
        return total + sum(scores.transitions[a, b] for a, b in itertools.pairwise(path))

    return list(max(itertools.product(range(len(scores.start)), repeat=length), key=score))


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_equals_torch_decode_and_brute_force(seed: int) -> None:
    crf, scores = random_crf(TAGS, "BIOES", seed)
    emissions, mask = random_batch(seed, 4, 4, len(TAGS))
    paths = viterbi(emissions.numpy(), mask.sum(1).numpy(), scores)
    np.testing.assert_array_equal(paths, crf.decode(emissions, mask).numpy())
    for b, length in enumerate(mask.sum(1).tolist()):
        assert paths[b, :length].tolist() == brute_force_best(emissions[b].numpy(), length, scores)
        assert not paths[b, length:].any()


def test_viterbi_in_float64_and_on_one_step() -> None:
    crf, _ = random_crf(TAGS, "BIOES", 7)
    crf = crf.double()
    emissions, mask = random_batch(7, 3, 1, len(TAGS))
    scores64 = CrfScores(*(t.detach().numpy() for t in crf.effective_scores()))
    np.testing.assert_array_equal(
        viterbi(emissions.double().numpy(), mask.sum(1).numpy(), scores64), crf.decode(emissions.double(), mask).numpy()
    )


@pytest.mark.parametrize("scheme, tags", [("BIOES", TAGS), ("IOB2", IOB2_TAGS)])
@pytest.mark.parametrize("seed", range(4))
def test_span_probabilities_equal_torch(scheme: str, tags: list[str], seed: int) -> None:
    crf, scores = random_crf(tags, scheme, seed)
    emissions, mask = random_batch(seed, 5, 7, len(tags))
    emissions = emissions / 2  # less peaked: probabilities away from 0 and 1
    lengths = mask.sum(1).tolist()
    generator = np.random.default_rng(seed)
    spans = [
        tags_to_spans([tags[i] for i in path[:n]]) for path, n in zip(crf.decode(emissions, mask).tolist(), lengths)
    ]
    for sentence, n in enumerate(lengths):  # plus any span, decoded or not
        start = int(generator.integers(0, n))
        spans[sentence].append((["PER", "LOC"][sentence % 2], start, int(generator.integers(start + 1, n + 1))))
    expected = crf.span_probabilities(emissions, mask, spans, tags, scheme)
    found = span_probabilities(emissions.numpy(), np.array(lengths), spans, tags, scheme, scores)
    assert len(found) == len(expected) and sum(map(len, found)) == sum(map(len, spans)) > 5
    for a, b in zip(found, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert all(0.0 <= p <= 1.0 for row in found for p in row)


def test_span_probability_of_a_whole_sentence_is_its_path_probability() -> None:
    """One token, BIOES: P(S-PER) is the marginal of that tag, computed by hand."""
    _, scores = random_crf(TAGS, "BIOES", 3)
    emissions = np.random.default_rng(3).normal(size=(1, 1, len(TAGS))).astype(np.float32)
    [[p]] = span_probabilities(emissions, np.array([1]), [[("PER", 0, 1)]], TAGS, "BIOES", scores)
    logits = scores.start.astype(float) + emissions[0, 0] + scores.end
    assert p == pytest.approx(math.exp(logits[4]) / np.exp(logits).sum(), abs=1e-9)


# ---------------------------------------------------------------------------------- exported models


@pytest.mark.parametrize("name", list(RUNS))
def test_onnxruntime_emissions_equal_pytorch(runs: dict[str, tuple[Path, Path]], name: str) -> None:
    run, out = runs[name]
    tagger, onnx = Tagger.load(run), OnnxTagger.load(out, threads=1)
    sentences = sample_test_sentences()[:120]
    sentences.append(["Zqx" * 30, "Unheardof", "words"])  # long and unknown words
    documents = [i // 40 for i in range(len(sentences))]
    for batch_size in (1, 5, 64):
        expected = pytorch_emissions(tagger, sentences, batch_size, documents)
        found = onnx.emissions(sentences, batch_size, documents)
        assert [e.shape for e in found] == [(len(s), len(tagger.tags)) for s in sentences]
        assert max(float(np.abs(a - b).max()) for a, b in zip(expected, found)) < 1e-4


def test_pretrained_table_words_are_looked_up_in_the_graph(runs: dict[str, tuple[Path, Path]]) -> None:
    run, out = runs["vectors"]
    tagger, onnx = Tagger.load(run), OnnxTagger.load(out)
    meta = json.loads((out / "export.json").read_text())
    assert meta["word_lookup"]["table_first_id"] == len(tagger.words)
    table_only = [w for w in tagger.vectors.index if w not in tagger.words.index][:5]
    assert len(table_only) == 5 and all(i >= len(tagger.words) for i in onnx.encoder.words.encode(table_only))
    sentences = [table_only, [w.capitalize() for w in table_only[::-1]]]
    for a, b in zip(pytorch_emissions(tagger, sentences), onnx.emissions(sentences)):
        assert np.abs(a - b).max() < 1e-4


@pytest.mark.parametrize("name", ["plain", "document", "vectors"])
def test_tag_with_the_onnx_backend_gives_the_pytorch_entities(
    runs: dict[str, tuple[Path, Path]], name: str, tmp_path: Path
) -> None:
    run, out = runs[name]
    assert main(["tag", str(run), str(RAW), "-o", str(tmp_path / "torch.jsonl")]) == 0
    assert (
        main(["tag", str(out), str(RAW), "-o", str(tmp_path / "onnx.jsonl"), "--backend", "onnx", "--batch-size", "4"])
        == 0
    )
    expected, found = (
        [json.loads(line) for line in (tmp_path / f).read_text().splitlines()] for f in ("torch.jsonl", "onnx.jsonl")
    )
    assert len(found) == len(expected) == len(RAW.read_text().splitlines())
    entities = [[{k: e[k] for k in ("start", "end", "type", "text")} for e in r["entities"]] for r in expected]
    assert [[{k: e[k] for k in ("start", "end", "type", "text")} for e in r["entities"]] for r in found] == entities
    assert sum(map(len, entities)) > 3
    scores = [
        (a["score"], b["score"]) for ra, rb in zip(expected, found) for a, b in zip(ra["entities"], rb["entities"])
    ]
    assert max(abs(a - b) for a, b in scores) <= 1e-4 + 1e-9  # scores are written rounded to 4 decimals


def test_predict_spans_agree_unrounded(runs: dict[str, tuple[Path, Path]]) -> None:
    run, out = runs["document"]
    sentences = [[], *sample_test_sentences()[:200], []]
    documents = [i // 25 for i in range(len(sentences))]
    expected = Tagger.load(run).predict_spans(sentences, 16, documents)
    found = OnnxTagger.load(out).predict_spans(sentences, 16, documents)
    assert [[s[:3] for s in row] for row in found] == [[s[:3] for s in row] for row in expected]
    assert max(abs(a[3] - b[3]) for ra, rb in zip(expected, found) for a, b in zip(ra, rb)) < 1e-5
    assert found[0] == found[-1] == []


# ------------------------------------------------------------------------------------------ bad input


def fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    capsys.readouterr()  # what came before (training's log)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n", err  # one line, no traceback


def test_export_refuses_an_existing_directory_and_the_run_dir(
    runs: dict[str, tuple[Path, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, out = runs["plain"]
    before = sorted(p.name for p in out.iterdir())
    fails_with(
        capsys,
        ["export", str(run), str(out)],
        f"{out}: exists and is not an empty directory; choose a new OUT_DIR (nothing is overwritten)",
    )
    assert sorted(p.name for p in out.iterdir()) == before
    fails_with(
        capsys,
        ["export", str(run), str(run)],
        f"{run}: is the run directory itself; choose a new OUT_DIR for the export",
    )
    (tmp_path / "file").write_text("x")
    fails_with(
        capsys,
        ["export", str(run), str(tmp_path / "file")],
        f"{tmp_path / 'file'}: exists and is not an empty directory; choose a new OUT_DIR (nothing is overwritten)",
    )
    fails_with(
        capsys,
        ["export", str(tmp_path / "none"), str(tmp_path / "new")],
        f"{tmp_path / 'none'}: no such run directory (expected the output.dir of `ner train`)",
    )
    (tmp_path / "empty").mkdir()  # an empty directory is fine, and filled
    assert main(["export", str(run), str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]  # no temporary left behind


def test_elmo_and_layer_norm_models_are_refused(
    runs: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = runs["plain"]
    load = Tagger.load

    def with_elmo(*args: object, **kwargs: object) -> Tagger:
        tagger = load(*args, **kwargs)
        options = BiLMOptions(filters=[(1, 4)], char_dim=4, highway_layers=0, projection_dim=6, lstm_dim=8)
        tagger.model.elmo = Elmo(BiLM(options))
        return tagger

    monkeypatch.setattr(export_module.Tagger, "load", with_elmo)
    fails_with(
        capsys,
        ["export", str(run), str(tmp_path / "elmo")],
        f"{run}: ELMo models cannot be exported to ONNX: the biLM's LSTM projects and clips its states, "
        f"which the ONNX LSTM operator cannot express",
    )
    monkeypatch.setattr(export_module.Tagger, "load", load)
    layer_norm = tmp_path / "layer_norm"
    train_from_config(SAMPLE, [*FAST, "training.epochs=1", "model.lstm.layer_norm=true", f"output.dir={layer_norm}"])
    fails_with(
        capsys,
        ["export", str(layer_norm), str(tmp_path / "ln")],
        f"{layer_norm}: model.lstm.layer_norm is on, and the ONNX LSTM operator has no layer normalisation "
        f"of the gates: this model cannot be exported",
    )
    assert not (tmp_path / "elmo").exists() and not (tmp_path / "ln").exists()


def corrupt_copy(out: Path, tmp_path: Path, name: str, content: bytes | None) -> Path:
    """A copy of the export ``out`` with file ``name`` replaced by ``content`` (None: removed)."""
    copy = tmp_path / "broken"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    if content is None:
        (copy / name).unlink()
    else:
        (copy / name).write_bytes(content)
    return copy


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("export.json", None, "{dir}: missing export.json (expected a directory written by `ner export`)"),
        (
            "export.json",
            b"{not json",
            (
                "{dir}/export.json: not valid JSON: Expecting property name enclosed in double "
                "quotes: line 1 column 2 (char 1)"
            ),
        ),
        (
            "export.json",
            b'{"format": 99}',
            (
                "{dir}/export.json: export format 99 is not supported by this ner "
                "(expected 1); export the model again with this version"
            ),
        ),
        ("model.onnx", None, "{dir}: missing model.onnx (expected a directory written by `ner export`)"),
        ("model.onnx", b"\x08\x07garbage", "{dir}/model.onnx: not a valid ONNX graph: "),
        ("crf.json", b'{"tags": ["O"]}', "{dir}/crf.json: its tags differ from tags.json: export the model again"),
        ("tags.json", b"[]", "{dir}/tags.json: expected a JSON object with keys items, lowercase, pad, unk"),
    ],
)
def test_corrupt_export_directories_give_one_line_errors(
    runs: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    copy = corrupt_copy(runs["plain"][1], tmp_path, name, content)
    capsys.readouterr()
    assert main(["tag", str(copy), str(RAW), "--backend", "onnx", "-o", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(dir=copy)}") and err.count("\n") == 1, err
    assert not (tmp_path / "out.jsonl").exists()


def test_crf_file_with_wrong_shapes_and_a_missing_directory(
    runs: dict[str, tuple[Path, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = runs["plain"][1]
    crf = json.loads((out / "crf.json").read_text())
    crf["end"] = crf["end"][:-1]
    copy = corrupt_copy(out, tmp_path, "crf.json", json.dumps(crf).encode())
    size = len(crf["tags"])
    with pytest.raises(
        NerError,
        match=rf"crf.json: end has shape \({size - 1},\), expected \({size},\) for "
        rf"{size} tags$",
    ):
        OnnxTagger.load(copy)
    fails_with(
        capsys,
        ["tag", str(tmp_path / "nowhere"), str(RAW), "--backend", "onnx"],
        f"{tmp_path / 'nowhere'}: no such export directory (expected the OUT_DIR of `ner export`)",
    )
    run = runs["plain"][0]
    fails_with(
        capsys,
        ["tag", str(run), str(RAW), "--backend", "onnx"],
        f"{run}: a run directory of `ner train`, not an export: run `ner export {run} OUT_DIR` first (or "
        f"tag without --backend onnx)",
    )


def test_numpy_document_context_equals_torch() -> None:
    from ner.nn.mentions import mean_of_other_mentions as torch_mean
    from ner.runtime.encoding import mean_of_other_mentions

    generator = np.random.default_rng(0)
    groups = generator.integers(0, 7, size=(4, 9))  # 0: padding
    states = generator.normal(size=(4, 9, 5)).astype(np.float32)
    expected = torch_mean(torch.from_numpy(states), torch.from_numpy(groups)).numpy()
    found = mean_of_other_mentions(states.reshape(-1, 5), groups.reshape(-1)).reshape(4, 9, 5)
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)
    assert (found[groups == 0] == 0).all() and found.any()


def test_missing_onnxruntime_is_a_one_line_error(
    runs: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    message = 'the ONNX backend needs onnxruntime: pip install -e ".[onnx]"'
    fails_with(capsys, ["tag", str(runs["plain"][1]), str(RAW), "--backend", "onnx"], message)
    fails_with(capsys, ["export", str(runs["plain"][0]), str(tmp_path / "out")], message)
