"""Document context: the mean encoder state of a token's other mentions, against a plain loop."""

from __future__ import annotations

import torch

from ner.nn.mentions import mean_of_other_mentions


def test_mean_of_other_mentions_against_a_loop() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4, dtype=torch.float64)  # (B, T, C)
    groups = torch.tensor([[1, 2, 1, 3, 0], [2, 2, 4, 0, 0], [1, 5, 2, 1, 6]])  # 0: padding
    got = mean_of_other_mentions(hidden, groups)
    flat, ids = hidden.reshape(-1, 4), groups.reshape(-1).tolist()
    for n, group in enumerate(ids):
        others = [flat[m] for m, g in enumerate(ids) if g == group and m != n]
        want = torch.stack(others).mean(0) if group and others else torch.zeros(4, dtype=torch.float64)
        torch.testing.assert_close(got.reshape(-1, 4)[n], want)
    assert got[0, 3].abs().sum() == 0 and got[1, 4].abs().sum() == 0  # alone in its group; padding


def test_gradients_reach_the_other_mentions_only() -> None:
    hidden = torch.randn(1, 4, 3, requires_grad=True)
    groups = torch.tensor([[1, 2, 1, 1]])
    mean_of_other_mentions(hidden, groups)[0, 0].sum().backward()  # token 0 reads tokens 2 and 3
    assert hidden.grad[0, :, 0].tolist() == [0.0, 0.0, 0.5, 0.5]


def test_inference_context_batch_by_batch_equals_one_call_exactly() -> None:
    """Inference sums each group over every batch, then builds one batch's context at a time (no corpus-sized
    temporaries, lone tokens get no sum row): the numbers are those of one call over all the batches, bit for bit."""
    from pathlib import Path

    from ner.config import load_config
    from ner.data.conll import read_conll
    from ner.encoding import group_ids
    from ner.model import Tagger

    repo = Path(__file__).resolve().parents[1]
    corpus = read_conll(repo / "data" / "sample" / "dev.txt")
    torch.manual_seed(0)
    tagger = Tagger.build(load_config(repo / "configs" / "sample.yaml", ["model.document_context=true"]), corpus)
    encoded = tagger.encode_corpus(corpus)
    tagger.model.eval()
    with torch.no_grad():
        items = list(encoded.batches(8, whole_documents=False))
        states = [tagger.states(item) for item in items]  # each (B, T, C)
    batches = [item.batch for item in items]
    assert len(batches) > 3 and len(set(encoded.document_ids)) > 1
    keys = torch.cat([encoded._mention_keys(batch).reshape(-1) for batch in batches])
    flat = torch.cat([hidden.reshape(-1, hidden.shape[-1]) for hidden in states])
    expected = mean_of_other_mentions(flat[None], group_ids(keys)[None])[0]
    got = torch.cat([context.reshape(-1, flat.shape[-1]) for context in encoded.other_mentions(batches, states)])
    assert torch.equal(got, expected) and expected.abs().sum() > 0
