"""Training end to end on the bundled sample: metrics, saved run directory, exact resume, the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ner.checkpoints import CHECKPOINT_FILE, METRICS_FILE, METRICS_LOG
from ner.data.conll import read_conll
from ner.data.schemes import validate_tags
from ner.errors import NerError
from ner.model import Tagger
from ner.training import train_from_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
FAST = ["training.epochs=4", "model.lstm.hidden_size=24", "model.embeddings.dim=24", "output.progress=false"]


class Interrupt(Exception):
    """Stands for the process being killed after an epoch's checkpoint."""


def run(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    train_from_config(SAMPLE, [*FAST, f"output.dir={out}", *extra])
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("train"), "run")


def epochs_without_timing(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "sentences_per_second")} for r in records]


def final_metrics(run_dir: Path) -> dict:
    """metrics.json without the process's peak memory, which depends on what else ran in it."""
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    del metrics["peak_rss_mb"]
    return metrics


def test_run_directory_holds_everything_evaluate_and_tag_need(trained: Path) -> None:
    for name in (
        "config.yaml",
        "model.json",
        "model.pt",
        "words.json",
        "chars.json",
        "tags.json",
        CHECKPOINT_FILE,
        METRICS_LOG,
        METRICS_FILE,
    ):
        assert (trained / name).is_file(), name
    assert not list(trained.glob("*.tmp"))
    # Both files load with the safe unpickler.
    assert "crf.crf.transitions" in torch.load(trained / "model.pt", weights_only=True)
    assert set(torch.load(trained / CHECKPOINT_FILE, weights_only=True)) >= {"model", "optimizer", "state", "rng"}


def test_metrics_log_has_one_line_per_epoch_and_training_learns(trained: Path) -> None:
    records = epochs_without_timing(trained)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] < records[0]["loss"]
    metrics = json.loads((trained / METRICS_FILE).read_text())
    best = max(records, key=lambda r: r["dev_f1"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["dev"]["default"]["micro"]["f1"] == pytest.approx(best["dev_f1"])
    assert metrics["test"]["default"]["micro"]["f1"] > 0.5
    assert set(metrics["test"]["default"]) == {"micro", "LOC", "MISC", "ORG", "PER"}


def interrupt_after(epoch: int, out: Path, overrides: list[str]) -> None:
    """Train into ``out`` and stop as if killed right after epoch ``epoch``'s checkpoint."""

    def kill(finished: int) -> None:
        if finished == epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_from_config(SAMPLE, [*overrides, f"output.dir={out}"], on_epoch_end=kill)


def test_resumed_run_ends_with_exactly_the_same_metrics(tmp_path: Path, trained: Path) -> None:
    out = tmp_path / "interrupted"
    interrupt_after(2, out, FAST)
    assert len(epochs_without_timing(out)) == 2
    train_from_config(None, resume=out)
    assert epochs_without_timing(out) == epochs_without_timing(trained)
    assert final_metrics(out) == final_metrics(trained)


def test_the_weight_average_is_scored_saved_and_resumed_exactly(tmp_path: Path) -> None:
    averaged = [*FAST, "training.average=0.9"]
    unbroken = run(tmp_path, "unbroken", "training.average=0.9")
    out = tmp_path / "interrupted"
    interrupt_after(2, out, averaged)
    train_from_config(None, resume=out)
    assert epochs_without_timing(out) == epochs_without_timing(unbroken)
    assert final_metrics(out) == final_metrics(unbroken)
    metrics = json.loads((unbroken / METRICS_FILE).read_text())
    assert metrics["best_epoch"] == 4  # so model.pt holds the last epoch's averages
    checkpoint = torch.load(unbroken / CHECKPOINT_FILE, weights_only=True)
    saved = torch.load(unbroken / "model.pt", weights_only=True)
    tagger = Tagger.load(unbroken)
    names = [name for name, param in tagger.model.named_parameters() if param.requires_grad]
    averages = checkpoint["optimizer"]["averages"]
    assert len(names) == len(averages)
    assert all(torch.equal(saved[name], mean) for name, mean in zip(names, averages))
    assert not all(torch.equal(saved[name], checkpoint["model"][name]) for name in names)  # the raw weights differ


def test_a_finished_run_directory_is_not_overwritten(trained: Path) -> None:
    with pytest.raises(NerError, match=f"^{trained}: already holds a run; continue it with --resume"):
        train_from_config(SAMPLE, [*FAST, f"output.dir={trained}"])


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NerError, match=f"^{tmp_path}: no checkpoint.pt to resume from"):
        train_from_config(None, resume=tmp_path)


def test_python_api_predicts_well_formed_tags_in_the_files_scheme(trained: Path) -> None:
    tagger = Tagger.load(trained)
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    sentences = [s.tokens for s in test.sentences[:20]]
    predicted = tagger.predict(sentences)
    assert [len(p) for p in predicted] == [len(s) for s in sentences]
    for tags in predicted:
        validate_tags(tags, test.scheme)  # IOB1, as the training files
    assert tagger.predict([["EU", "rejects", "German", "call"], []])[1] == []
    with pytest.raises(TypeError, match="expected a list of token lists"):
        tagger.predict(["EU rejects German call"])


def test_span_scores_are_probabilities_of_the_predicted_entities(trained: Path) -> None:
    tagger = Tagger.load(trained)
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    sentences = [s.tokens for s in test.sentences[:20]]
    spans = tagger.predict_spans(sentences)
    from ner.data.schemes import tags_to_spans

    tags = tagger.predict(sentences)
    assert [[(k, s, e) for k, s, e, _ in sentence] for sentence in spans] == [tags_to_spans(t) for t in tags]
    scores = [p for sentence in spans for *_, p in sentence]
    assert scores and all(0.0 < p <= 1.0 + 1e-6 for p in scores)


@pytest.fixture(scope="module")
def trained_with_document_casing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("train"), "run", "model.embeddings.document_casing_dim=4")


@pytest.fixture(scope="module")
def trained_with_document_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("train"), "run", "model.document_context=true")


@pytest.fixture(scope="module")
def trained_with_attention(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("train"), "run", "model.document_context=true", "model.attention.heads=4")


def test_document_groups_hold_whole_consecutive_documents_up_to_the_budget(trained_with_document_context: Path) -> None:
    tagger = Tagger.load(trained_with_document_context)
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    documents = test.document_ids()
    encoded = tagger.encode([s.tokens for s in test.sentences], document_ids=documents)
    groups = encoded.document_groups(100)
    tokens = [sum(len(test.sentences[i].tokens) for i in group) for group in groups]
    owners = [{documents[i] for i in group} for group in groups]
    assert [i for group in groups for i in group] == list(range(len(test.sentences)))
    assert all(not a & b for a, b in zip(owners, owners[1:]))  # no document cut between two groups
    assert all(size <= 100 or len(docs) == 1 for size, docs in zip(tokens, owners))
    assert all(a + b > 100 for a, b in zip(tokens, tokens[1:]))  # filled greedily
    assert len(groups) > 3 and encoded.document_groups(10**9) == [list(range(len(test.sentences)))]
    with pytest.raises(ValueError, match="sentences and max_tokens go with neither documents nor shuffle"):
        next(encoded.batcher.batches(8, shuffle=True, sentences=groups[0]))


@pytest.mark.parametrize(
    "run_fixture",
    ["trained", "trained_with_document_casing", "trained_with_document_context", "trained_with_attention"],
)
@pytest.mark.parametrize("group_tokens, keep_inputs", [(8192, True), (200, True), (200, False)])
def test_inference_emissions_equal_the_full_model_on_whole_documents(
    run_fixture: str, group_tokens: int, keep_inputs: bool, request: pytest.FixtureRequest, monkeypatch
) -> None:
    """Inference (per-spelling first-layer inputs, kept in the cache or not; groups of whole documents, one or
    several; batches by length, the document context gathered across a group's batches) scores every sentence as
    the training path does (the full model on batches of whole documents)."""
    monkeypatch.setattr("ner.model.GROUP_TOKENS", group_tokens)
    tagger = Tagger.load(request.getfixturevalue(run_fixture))
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    documents = test.document_ids()[:40]
    encoded = tagger.encode([s.tokens for s in test.sentences[:40]], document_ids=documents)
    groups = encoded.document_groups(group_tokens)
    assert (len(groups) > 2) == (group_tokens == 200)
    tagger.model.eval()
    direct: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for item in encoded.batches(8):
            emissions = tagger.emissions(item)  # (B, T, K): embedder and BiLSTM on the padded batch
            for row, (index, tokens) in enumerate(zip(item.batch.indices, item.batch.tokens)):
                direct[index] = emissions[row, : len(tokens)]
        inferred = tagger.inference_emissions(encoded, batch_size=5, keep_inputs=keep_inputs)
    assert bool(tagger.input_cache.columns) == keep_inputs
    batch_documents = [{documents[i] for i in batch.indices} for batch, _ in inferred]
    assert any(len(d) > 1 for d in batch_documents)  # batches mix documents and split them
    assert any(len([d for d in batch_documents if document in d]) > 1 for document in set(documents))
    for batch, emissions in inferred:
        for row, (index, tokens) in enumerate(zip(batch.indices, batch.tokens)):
            torch.testing.assert_close(emissions[row, : len(tokens)], direct[index], rtol=1e-5, atol=1e-5)


def test_length_chunks_keep_both_limits_and_cover_every_item() -> None:
    from ner.data.batching import length_chunks

    lengths = [1, 1, 2, 3, 3, 3, 5, 8, 40, 41]
    chunks = list(length_chunks(lengths, most_items=4, most_cells=12))
    assert chunks == [(0, 4), (4, 6), (6, 7), (7, 8), (8, 9), (9, 10)]  # 40 > 12 cells: alone
    assert list(length_chunks([], 4, 12)) == []


def test_token_inputs_are_the_same_in_chunks_of_any_size(trained: Path) -> None:
    tagger = Tagger.load(trained)
    tagger.model.eval()
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    encoded = tagger.encode([s.tokens for s in test.sentences])
    rows = torch.arange(1, len(encoded.batcher.distinct) + 1)
    with torch.no_grad():
        whole = [(p, x) for p, x in tagger.token_input_parts(encoded, rows)]
        small = [(p, x) for p, x in tagger.token_input_parts(encoded, rows, chunk=50, chunk_chars=120)]
    assert len(whole) == 1 and len(small) > 10
    widths = [int(encoded.batcher.word_lengths[rows[p]].max()) for p, _ in small]
    assert all(len(p) <= 50 and (len(p) * width <= 120 or len(p) == 1) for (p, _), width in zip(small, widths))
    order = torch.cat([p for p, _ in small])
    assert sorted(order.tolist()) == list(range(len(rows)))
    torch.testing.assert_close(
        torch.cat([x for _, x in small], 1)[:, order.argsort()], whole[0][1][:, whole[0][0].argsort()]
    )


def test_input_cache_evicts_the_least_recently_used_and_forgets_on_new_weights(trained: Path) -> None:
    from ner.input_cache import TokenInputCache

    tagger = Tagger.load(trained)
    tagger.input_cache = TokenInputCache(capacity=4)
    first = tagger.predict_spans([["Anna", "met", "Bob"], ["in", "Rome"]])  # 5 spellings: bypasses the cache
    assert not tagger.input_cache.columns
    tagger.predict_spans([["Anna", "met", "Bob"]])
    tagger.predict_spans([["in", "Rome", "Anna"]])  # Anna is reused; "met", least recent, makes room for Rome
    assert list(tagger.input_cache.columns) == ["Bob", "Anna", "in", "Rome"]
    assert tagger.predict_spans([["Anna", "met", "Bob"], ["in", "Rome"]]) == first
    with torch.no_grad():
        tagger.model.emissions.bias.add_(1.0)  # any parameter change empties the cache
    tagger.predict_spans([["Anna"]])
    assert list(tagger.input_cache.columns) == ["Anna"]


def test_a_sentence_is_tagged_the_same_whatever_its_batch(trained: Path) -> None:
    tagger = Tagger.load(trained)
    sentence = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    longer = ["Peter", "Blackburn", "of", "Brussels", "said", "extraordinarily", "long", "words", "appear"] * 3
    alone = tagger.predict_spans([sentence])[0]
    in_batch = tagger.predict_spans([longer, sentence, ["x"]])[1]
    assert [span[:3] for span in in_batch] == [span[:3] for span in alone]
    assert [span[3] for span in in_batch] == pytest.approx([span[3] for span in alone], abs=1e-5)


def test_tagging_with_worker_processes_writes_the_same_output(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ner.tagging

    monkeypatch.setattr(ner.tagging, "WINDOW_CHARS", 300)  # many windows in flight
    text = (REPO / "data" / "sample" / "test.txt").read_text(encoding="utf-8")
    lines = [" ".join(line.split()[0] for line in block.splitlines()) for block in text.split("\n\n") if block]
    source = tmp_path / "input.txt"
    source.write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    tagger = Tagger.load(trained)
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.jsonl"
        stats = ner.tagging.tag_files(tagger, [str(source)], output=str(out), workers=workers)
        outputs[workers] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert stats["lines"] == 60
    assert [r["line"] for r in outputs[2]] == list(range(1, 61))
    for one, two in zip(outputs[1], outputs[2]):
        assert [e | {"score": None} for e in two["entities"]] == [e | {"score": None} for e in one["entities"]]
        assert [e["score"] for e in two["entities"]] == pytest.approx([e["score"] for e in one["entities"]], abs=2e-4)
    assert sum(len(r["entities"]) for r in outputs[1]) > 20


def test_unk_replacement_chances_follow_word_counts() -> None:
    from collections import Counter

    from ner.config import load_config

    config = load_config(SAMPLE, ["model.word_dropout=0.1", "model.singleton_unk=0.5"])
    corpus = read_conll(REPO / "data" / "sample" / "train.txt")
    tagger = Tagger.build(config, corpus)
    tagger.count_training_words(corpus)
    counts = Counter(token.lower() for sentence in corpus.sentences for token in sentence.tokens)
    expected = torch.tensor([0.6 if counts[word] == 1 else 0.1 for word in tagger.words.items])
    assert 0 < (expected == 0.6).sum() < len(expected)
    assert torch.allclose(tagger.unk_probability, expected)

    # With chance 1 for singletons and 0 otherwise, exactly the singletons become <unk> in training batches.
    tagger.unk_probability = (expected == 0.6).float()
    tagger.model.embedder.words.weight.data.zero_()
    tagger.model.embedder.words.weight.data[tagger.words.unk_id] = 1.0
    seen: list[torch.Tensor] = []
    tagger.model.embedder.words.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    item = next(tagger.encode_corpus(corpus).batches(8))
    tagger.emissions(item, tagger.unk_probability)
    word_ids = item.batch.word_ids
    singleton = torch.tensor(
        [
            [counts[t.lower()] == 1 for t in tokens] + [False] * (word_ids.size(1) - len(tokens))
            for tokens in item.batch.tokens
        ]
    )
    assert torch.equal(seen[0], torch.where(singleton, tagger.words.unk_id, word_ids))


def test_document_casing_reaches_the_model_and_documents_are_delimited(trained_with_document_casing: Path) -> None:
    from ner.data.features import DOCUMENT_CASING_CLASSES
    from ner.evaluation import score_corpus

    tagger = Tagger.load(trained_with_document_casing)
    sentences = [["EU", "REJECTS", "GERMAN", "CALL"], ["Officials", "of", "the", "EU", "met", "German", "farmers"]]
    together, apart = tagger.encode(sentences), tagger.encode(sentences, document_ids=[0, 1])
    headline = [together.batcher.sentence_rows(0), apart.batcher.sentence_rows(0)]
    assert [
        [DOCUMENT_CASING_CLASSES[c] for c in e.batcher.row_features[rows].tolist()]
        for e, rows in zip([together, apart], headline)
    ] == [["capitalized", "unseen", "capitalized", "unseen"], ["unseen"] * 4]
    with torch.no_grad():
        emissions = [tagger.emissions(next(e.batches(1))) for e in (together, apart)]  # the headline, shortest
    assert not torch.allclose(emissions[0], emissions[1])
    # evaluation reads the documents from the file's -DOCSTART- markers, as predict does when given them
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    _, predicted = score_corpus(tagger, test)
    tokens = [s.tokens for s in test.sentences]
    assert predicted == tagger.predict(tokens, document_ids=test.document_ids())
    with pytest.raises(ValueError, match=r"^document_ids: expected one per sentence \(2\), got 1$"):
        tagger.predict(sentences, document_ids=[0])


def test_document_context_reads_the_other_mentions_of_a_word_in_its_document(
    trained_with_document_context: Path,
) -> None:
    tagger = Tagger.load(trained_with_document_context)
    sentence, other = ["Blackburn", "said", "so"], ["Mr", "blackburn", "spoke", "twice"]
    with torch.no_grad():

        def emissions(sentences: list[list[str]], document_ids: list[int] | None) -> torch.Tensor:
            item = next(tagger.encode(sentences, document_ids=document_ids).batches(8))
            return tagger.emissions(item)[item.batch.indices.index(0), : len(sentences[0])]  # (T, K)

        alone = emissions([sentence], None)
        with_mention = emissions([sentence, other], None)
        other_document = emissions([sentence, other], [0, 1])
        unrelated = emissions([sentence, ["Nothing", "shared", "here"]], None)
    torch.testing.assert_close(other_document, alone)  # another document's mention is not seen
    torch.testing.assert_close(unrelated, alone)  # nor are words that differ
    assert not torch.allclose(with_mention[0], alone[0])  # the mention (any casing) in the same document is
    torch.testing.assert_close(with_mention[1:], alone[1:])  # and only by the word that has it
    batches = list(tagger.encode([sentence, other, sentence], document_ids=[0, 1, 1]).batches(2))
    assert [b.batch.indices for b in batches] == [[0], [1, 2]]  # whole documents per batch


def test_propagation_after_decoding_is_applied_per_document_and_its_spans_are_scored(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ner.model
    from ner.data.schemes import tags_to_spans

    tagger = Tagger.load(trained)
    test = read_conll(REPO / "data" / "sample" / "test.txt")
    tokens, documents = [s.tokens for s in test.sentences], test.document_ids()
    encoded = tagger.encode(tokens, document_ids=documents)
    decoded, decoded_spans = tagger.predict_encoded(encoded, with_scores=True)
    calls = []

    def propagate(sentences, spans, document_ids):  # stands for ner.propagation: tags sentence 0's first token
        calls.append((sentences, spans, document_ids))
        return [[("PER", 0, 1)]] + spans[1:]

    monkeypatch.setattr(ner.model, "propagate_entities", propagate)
    tagger.config.model.propagate_entities = True
    tags, spans = tagger.predict_encoded(encoded, with_scores=True)
    assert calls == [(tokens, [tags_to_spans(t) for t in decoded], documents)]
    assert tags[0] == ["S-PER"] + ["O"] * (len(tokens[0]) - 1) and tags[1:] == decoded[1:]
    assert spans[1:] == decoded_spans[1:] and [span[:3] for span in spans[0]] == [("PER", 0, 1)]
    assert 0.0 <= spans[0][0][3] < 0.5  # the CRF's own probability of a span it did not decode
