"""ner.nn.LSTM / GRU against torch.nn.LSTM / GRU, a plain step-by-step reference, and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import ner.nn.products as products
from ner.nn import GRU, LSTM
from ner.nn.lstm import reverse_padded

LENGTHS = [4, 1, 3, 4, 2]  # unsorted, with a length-1 sentence and one shorter than the padded width
TIME = 5
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def make_input(lengths: list[int], size: int, dtype: torch.dtype, time: int = TIME) -> torch.Tensor:
    """A (batch, time, size) input that requires grad, with garbage at padding (it must never leak)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(len(lengths), time, size, generator=generator, dtype=dtype).requires_grad_()


def make_state(module: LSTM | GRU, batch: int, seed: int = 1) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random initial states in torch's layout."""
    generator = torch.Generator().manual_seed(seed)
    dtype, stacked = module.weight_hh_l0.dtype, module.num_layers * (2 if module.bidirectional else 1)
    h0 = torch.randn(stacked, batch, module.proj_size or module.hidden_size, generator=generator, dtype=dtype)
    if isinstance(module, GRU):
        return h0.requires_grad_()
    c0 = torch.randn(stacked, batch, module.hidden_size, generator=generator, dtype=dtype)
    return h0.requires_grad_(), c0.requires_grad_()


def flat(result: tuple) -> list[torch.Tensor]:
    """(output, states) -> [output, h_n, (c_n)]."""
    output, states = result
    return [output, *(states if isinstance(states, tuple) else (states,))]


def loss_of(results: list[torch.Tensor]) -> torch.Tensor:
    """A loss that weighs every element of every result differently (fixed weights)."""
    generator = torch.Generator().manual_seed(7)
    return sum((r * torch.randn(r.shape, generator=generator, dtype=r.dtype).to(r.device)).sum() for r in results)


def gradients(results: list[torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss_of(results), inputs))


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor], tolerance: float) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)


def torch_run(reference: torch.nn.Module, x: torch.Tensor, lengths: list[int], state) -> list[torch.Tensor]:
    """torch.nn.LSTM / GRU over packed sentences, outputs padded back with zeros."""
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    output, states = reference(packed, state)
    output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return flat((output, states))


def lstm_cell(
    p: dict[str, torch.Tensor], module: LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step for one sentence, written out gate by gate (vectors, no batch)."""
    hidden = module.hidden_size
    pre = list((p["weight_ih"] @ x + p["weight_hh"] @ h + p.get("bias_ih", 0) + p.get("bias_hh", 0)).split(hidden))
    if module.layer_norm:
        pre = [
            F.layer_norm(z, (hidden,)) * w + b
            for z, w, b in zip(pre, p["norm_weight"].split(hidden), p["norm_bias"].split(hidden))
        ]
    if module.variant == "coupled":
        f = torch.sigmoid(pre[0])
        i, g, o = 1 - f, torch.tanh(pre[1]), torch.sigmoid(pre[2])
        c = f * c + i * g
    elif module.variant == "peephole":
        peep_i, peep_f, peep_o = p["weight_peephole"].split(hidden)
        i = torch.sigmoid(pre[0] + peep_i * c)
        f = torch.sigmoid(pre[1] + peep_f * c)
        c = f * c + i * torch.tanh(pre[2])
    else:
        i, f, g, o = torch.sigmoid(pre[0]), torch.sigmoid(pre[1]), torch.tanh(pre[2]), torch.sigmoid(pre[3])
        c = f * c + i * g
    if module.cell_clip is not None:
        c = c.clamp(-module.cell_clip, module.cell_clip)
    if module.variant == "peephole":
        o = torch.sigmoid(pre[3] + peep_o * c)
    h = o * torch.tanh(c)
    if module.proj_size:
        h = p["weight_hr"] @ h
        if module.proj_clip is not None:
            h = h.clamp(-module.proj_clip, module.proj_clip)
    return h, c


def gru_cell(p: dict[str, torch.Tensor], module: GRU, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One GRU step (torch's formulation) for one sentence, with optional layer norm of each gate."""
    hidden = module.hidden_size
    xr, xz, xn = (p["weight_ih"] @ x + p.get("bias_ih", 0)).split(hidden)
    hr, hz, hn = (p["weight_hh"] @ h + p.get("bias_hh", 0)).split(hidden)
    pre = [xr + hr, xz + hz]

    def norm(z: torch.Tensor, k: int) -> torch.Tensor:
        if not module.layer_norm:
            return z
        return F.layer_norm(z, (hidden,)) * p["norm_weight"].split(hidden)[k] + p["norm_bias"].split(hidden)[k]

    r, z = (torch.sigmoid(norm(a, k)) for k, a in enumerate(pre))
    n = torch.tanh(norm(xn + r * hn, 2))
    return (1 - z) * n + z * h


def slow_reference(module: LSTM | GRU, x: torch.Tensor, lengths: list[int], state=None) -> list[torch.Tensor]:
    """Each sentence alone, each layer and direction, one token at a time; the backward direction reads the
    sentence reversed. Returns [output, h_n, (c_n)] as the module should."""
    gru = isinstance(module, GRU)
    directions = 2 if module.bidirectional else 1
    h0, c0 = (state, None) if gru else (state or (None, None))
    outputs, h_n, c_n = [], [], []
    for b, length in enumerate(lengths):
        sequence = list(x[b, :length])
        sentence_h, sentence_c = [], []
        for layer in range(module.num_layers):
            per_direction = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                p = {
                    name.removesuffix(f"_l{layer}{suffix}"): value
                    for name, value in module.named_parameters()
                    if name.endswith(f"_l{layer}{suffix}")
                }
                k = layer * directions + d
                h = torch.zeros(module.proj_size or module.hidden_size, dtype=x.dtype) if h0 is None else h0[k, b]
                c = torch.zeros(module.hidden_size, dtype=x.dtype) if c0 is None else c0[k, b]
                steps = []
                for token in sequence if d == 0 else sequence[::-1]:
                    if gru:
                        h = gru_cell(p, module, token, h)
                    else:
                        h, c = lstm_cell(p, module, token, h, c)
                    steps.append(h)
                per_direction.append(steps if d == 0 else steps[::-1])
                sentence_h.append(h)
                sentence_c.append(c)
            layer_output = [torch.cat(parts) for parts in zip(*per_direction)]
            if module.residual and layer > 0:
                layer_output = [a + b for a, b in zip(layer_output, sequence)]
            sequence = layer_output
        padding = torch.zeros(x.shape[1] - length, sequence[0].shape[0], dtype=x.dtype)
        outputs.append(torch.cat([torch.stack(sequence), padding]))
        h_n.append(torch.stack(sentence_h))
        c_n.append(torch.stack(sentence_c))
    results = [torch.stack(outputs), torch.stack(h_n, 1)]
    return results if gru else [*results, torch.stack(c_n, 1)]


def mask_of(lengths: list[int], time: int = TIME) -> torch.Tensor:
    return torch.arange(time) < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cells", [(LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)], ids=["lstm", "gru"])
def test_equals_torch(cells, num_layers, bidirectional, dtype, with_state) -> None:
    ours_cls, torch_cls = cells
    torch.manual_seed(0)
    ours = ours_cls(3, 4, num_layers, bidirectional=bidirectional).to(dtype)
    reference = torch_cls(3, 4, num_layers, bidirectional=bidirectional, batch_first=True).to(dtype)
    reference.load_state_dict(ours.state_dict())
    x = make_input(LENGTHS, 3, dtype)
    state = make_state(ours, len(LENGTHS)) if with_state else None
    state_inputs = [] if state is None else list(state) if isinstance(state, tuple) else [state]

    results = flat(ours(x, mask_of(LENGTHS), state))
    expected = torch_run(reference, x, LENGTHS, state)
    assert_all_close(results, expected, TOLERANCE[dtype])
    assert_all_close(
        gradients(results, [x, *state_inputs, *ours.parameters()]),
        gradients(expected, [x, *state_inputs, *reference.parameters()]),
        TOLERANCE[dtype],
    )
    with torch.no_grad():  # the inference path, which saves nothing for backward
        assert_all_close(flat(ours(x, mask_of(LENGTHS), state)), [e.detach() for e in expected], TOLERANCE[dtype])


@pytest.mark.parametrize("cells", [(LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)], ids=["lstm", "gru"])
def test_batch_of_one_without_mask_equals_torch(cells) -> None:
    ours_cls, torch_cls = cells
    torch.manual_seed(0)
    ours = ours_cls(3, 4, 2, bidirectional=True).double()
    reference = torch_cls(3, 4, 2, bidirectional=True, batch_first=True).double()
    reference.load_state_dict(ours.state_dict())
    x = make_input([TIME], 3, torch.float64)
    results, expected = flat(ours(x)), flat(reference(x))
    assert_all_close(results, expected, 1e-10)
    assert_all_close(
        gradients(results, [x, *ours.parameters()]), gradients(expected, [x, *reference.parameters()]), 1e-10
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_projection_equals_torch(dtype) -> None:
    torch.manual_seed(0)
    ours = LSTM(3, 5, 2, bidirectional=True, proj_size=2).to(dtype)
    reference = torch.nn.LSTM(3, 5, 2, bidirectional=True, batch_first=True, proj_size=2).to(dtype)
    reference.load_state_dict(ours.state_dict())
    x = make_input(LENGTHS, 3, dtype)
    state = make_state(ours, len(LENGTHS))
    results, expected = flat(ours(x, mask_of(LENGTHS), state)), torch_run(reference, x, LENGTHS, state)
    assert_all_close(results, expected, TOLERANCE[dtype])
    assert_all_close(
        gradients(results, [x, *state, *ours.parameters()]),
        gradients(expected, [x, *state, *reference.parameters()]),
        TOLERANCE[dtype],
    )


def test_float32_without_onednn_equals_torch(monkeypatch) -> None:
    """The torch.bmm route (CUDA, float64, or no oneDNN) gives the same float32 numbers as the oneDNN one."""
    monkeypatch.setattr(products, "_ONEDNN", False)
    test_equals_torch((LSTM, torch.nn.LSTM), 2, True, torch.float32, True)
    test_equals_torch((GRU, torch.nn.GRU), 1, True, torch.float32, False)


@pytest.mark.skipif(not products._ONEDNN, reason="torch's oneDNN linear op is not available")
@pytest.mark.parametrize("proj_size", [0, 8])
def test_onednn_route_equals_torch(proj_size) -> None:
    """Batches with >= _ONEDNN_MIN_ROWS active sentences take oneDNN products on CPU float32."""
    torch.manual_seed(0)
    lengths = torch.randint(1, 9, (24,)).tolist()
    assert sorted(lengths)[-products._ONEDNN_MIN_ROWS] > 1  # several steps with enough rows
    ours = LSTM(3, 12, 2, bidirectional=True, proj_size=proj_size)
    reference = torch.nn.LSTM(3, 12, 2, bidirectional=True, batch_first=True, proj_size=proj_size)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(len(lengths), 8, 3, requires_grad=True)
    results, expected = flat(ours(x, lengths=lengths)), torch_run(reference, x, lengths, None)
    assert_all_close(results, expected, 1e-5)
    assert_all_close(
        gradients(results, [x, *ours.parameters()]), gradients(expected, [x, *reference.parameters()]), 1e-5
    )
    with torch.no_grad():
        assert_all_close(flat(ours(x, lengths=lengths)), [e.detach() for e in expected], 1e-5)


def test_state_dict_loads_both_ways_with_torch() -> None:
    for ours, theirs in (
        (LSTM(3, 4, 2, bidirectional=True, proj_size=2), torch.nn.LSTM(3, 4, 2, bidirectional=True, proj_size=2)),
        (GRU(3, 4, 3, bias=False), torch.nn.GRU(3, 4, 3, bias=False)),
    ):
        shapes = {k: v.shape for k, v in theirs.state_dict().items()}
        assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
        ours.load_state_dict(theirs.state_dict())
        theirs.load_state_dict(ours.state_dict())


# Variants and options beyond torch, each bidirectional with two layers and initial states, in float64.
CONFIGS = {
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
    "peephole": (LSTM, dict(variant="peephole")),
    "coupled": (LSTM, dict(variant="coupled")),
    "layer-norm": (LSTM, dict(layer_norm=True)),
    "peephole-layer-norm": (LSTM, dict(variant="peephole", layer_norm=True)),
    "cell-clip": (LSTM, dict(cell_clip=0.3)),
    "projection-clip": (LSTM, dict(proj_size=2, cell_clip=0.5, proj_clip=0.1)),
    "residual": (LSTM, dict(residual=True)),
    "no-bias": (LSTM, dict(bias=False, variant="coupled")),
    "gru-layer-norm": (GRU, dict(layer_norm=True)),
    "gru-residual": (GRU, dict(residual=True, bias=False)),
}


def make_module(name: str, input_size: int, hidden_size: int) -> LSTM | GRU:
    """A float64 module of config ``name`` with larger-than-init weights, so gates saturate and clips bite."""
    cls, options = CONFIGS[name]
    torch.manual_seed(0)
    module = cls(input_size, hidden_size, 2, bidirectional=True, **options).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter))
    return module


@pytest.mark.parametrize("name", CONFIGS)
def test_equals_slow_reference(name) -> None:
    module = make_module(name, 3, 4)
    x = make_input(LENGTHS, 3, torch.float64)
    state = make_state(module, len(LENGTHS))
    state_inputs = list(state) if isinstance(state, tuple) else [state]
    results = flat(module(x, mask_of(LENGTHS), state))
    expected = slow_reference(module, x, LENGTHS, state)
    assert_all_close(results, expected, 1e-10)
    inputs = [x, *state_inputs, *module.parameters()]
    assert_all_close(gradients(results, inputs), gradients(expected, inputs), 1e-10)


@pytest.mark.parametrize("name", CONFIGS)
def test_first_layer_read_from_an_inputs_table_gives_the_same_results_and_gradients(name) -> None:
    module = make_module(name, 3, 4)
    x = make_input(LENGTHS, 3, torch.float64)
    state = make_state(module, len(LENGTHS))
    expected = flat(module(x, mask_of(LENGTHS), state))
    distinct = torch.cat([x.flatten(0, 1), torch.randn(2, 3, dtype=torch.float64)])  # plus rows never read
    table = module.input_projection(distinct)  # (D, V, K * H)
    ids = torch.arange(len(LENGTHS) * TIME).view(len(LENGTHS), TIME)  # (B, T)
    results = flat(module(ids, mask_of(LENGTHS), state, inputs_table=table))
    assert_all_close(results, expected, 1e-10)
    parameters = list(module.parameters())
    assert_all_close(gradients(results, [x, *parameters]), gradients(expected, [x, *parameters]), 1e-10)
    with torch.no_grad():
        assert_all_close(flat(module(ids, mask_of(LENGTHS), state, inputs_table=table)), expected, 1e-10)


def test_inputs_table_of_the_wrong_shape_is_refused() -> None:
    module = LSTM(3, 4, bidirectional=True)
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^inputs_table: expected shape \(2, rows, 16\), got \(2, 7, 12\)$"):
        module(ids, inputs_table=torch.zeros(2, 7, 12))
    with pytest.raises(
        ValueError,
        match=r"^x: expected \(batch, time\) long row ids into inputs_table, got "
        r"torch.float32 \(2, 5, 3\)$",
    ):
        module(torch.zeros(2, 5, 3), inputs_table=torch.zeros(2, 7, 16))
    with pytest.raises(ValueError, match=r"^x: expected shape \(rows, 3\), got \(2, 5, 3\)$"):
        module.input_projection(torch.zeros(2, 5, 3))


def test_clips_are_active() -> None:
    """The clipping test configs really clip: without the bounds the results differ."""
    module = make_module("projection-clip", 3, 4)
    x = make_input(LENGTHS, 3, torch.float64)
    clipped = module(x, mask_of(LENGTHS))[0]
    assert clipped.abs().max().item() == pytest.approx(0.1)
    unclipped = LSTM(3, 4, 2, bidirectional=True, proj_size=2).double()
    unclipped.load_state_dict(module.state_dict())
    assert (unclipped(x, mask_of(LENGTHS))[0] - clipped).abs().max() > 0.1


@pytest.mark.parametrize("name", CONFIGS)
def test_gradcheck(name) -> None:
    module = make_module(name, 2, 3)
    lengths = [3, 1, 2]
    x = make_input(lengths, 2, torch.float64, time=3)
    state = make_state(module, len(lengths))
    state_inputs = list(state) if isinstance(state, tuple) else [state]
    names = [n for n, _ in module.named_parameters()]

    def run(x: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = tensors[: len(state_inputs)]
        parameters = dict(zip(names, tensors[len(state_inputs) :]))
        state = states[0] if isinstance(module, GRU) else tuple(states)
        return tuple(flat(functional_call(module, parameters, (x, mask_of(lengths, 3), state))))

    inputs = (x, *state_inputs, *(p.detach().requires_grad_() for p in module.parameters()))
    assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_reversed_unidirectional_equals_backward_direction(dtype) -> None:
    """ELMo's use: a one-way LSTMP with clipping run on reverse_padded input, its output reversed back, equals the
    backward half of a bidirectional layer with the same weights (values and gradients)."""
    bidirectional = make_module("projection-clip", 3, 4).to(dtype)
    one_way = LSTM(3, 4, proj_size=2, cell_clip=0.5, proj_clip=0.1).to(dtype)
    one_way.load_state_dict(
        {k.removesuffix("_reverse"): v for k, v in bidirectional.state_dict().items() if k.endswith("_l0_reverse")}
    )
    one_layer = LSTM(3, 4, bidirectional=True, proj_size=2, cell_clip=0.5, proj_clip=0.1).to(dtype)
    one_layer.load_state_dict({k: v for k, v in bidirectional.state_dict().items() if "_l0" in k})
    x = make_input(LENGTHS, 3, dtype)
    lengths = torch.tensor(LENGTHS)
    output, (h_n, c_n) = one_way(reverse_padded(x, lengths), mask_of(LENGTHS))
    expected, (expected_h, expected_c) = one_layer(x, mask_of(LENGTHS))
    results = [reverse_padded(output, lengths), h_n[0], c_n[0]]
    expected = [expected[..., 2:], expected_h[1], expected_c[1]]
    assert_all_close(results, expected, TOLERANCE[dtype])
    assert_all_close(gradients(results, [x]), gradients(expected, [x]), TOLERANCE[dtype])


def test_padding_is_exactly_zero_and_mask_equals_lengths() -> None:
    module = make_module("projection-clip", 3, 4)
    x = make_input(LENGTHS, 3, torch.float64)
    output, (h_n, c_n) = module(x, mask_of(LENGTHS))
    for b, length in enumerate(LENGTHS):
        assert torch.count_nonzero(output[b, length:]) == 0
        assert torch.count_nonzero(output[b, :length]) == output[b, :length].numel()
    by_lengths = module(x, lengths=torch.tensor(LENGTHS))
    assert torch.equal(by_lengths[0], output) and torch.equal(by_lengths[1][1], c_n)


def test_inference_sees_parameter_updates() -> None:
    """Inference caches prepared weights; changing a parameter in place (an optimizer step) or loading a state
    dict must show in the next call."""
    torch.manual_seed(0)
    module, fresh = LSTM(3, 4, bidirectional=True).double(), LSTM(3, 4, bidirectional=True).double()
    x = make_input(LENGTHS, 3, torch.float64).detach()
    with torch.no_grad():
        module(x, lengths=LENGTHS)
        module.weight_hh_l0_reverse.mul_(2)
        fresh.load_state_dict(module.state_dict())
        torch.testing.assert_close(module(x, lengths=LENGTHS)[0], fresh(x, lengths=LENGTHS)[0], atol=0, rtol=0)
        module.load_state_dict(LSTM(3, 4, bidirectional=True).double().state_dict())
        fresh.load_state_dict(module.state_dict())
        torch.testing.assert_close(module(x, lengths=LENGTHS)[0], fresh(x, lengths=LENGTHS)[0], atol=0, rtol=0)


def test_time_major_equals_batch_first() -> None:
    torch.manual_seed(0)
    batch_first = LSTM(3, 4, 2, bidirectional=True).double()
    time_major = LSTM(3, 4, 2, bidirectional=True, batch_first=False).double()
    time_major.load_state_dict(batch_first.state_dict())
    x = make_input(LENGTHS, 3, torch.float64)
    expected, (h_n, _) = batch_first(x, lengths=LENGTHS)
    output, (h_n_time_major, _) = time_major(x.transpose(0, 1), lengths=LENGTHS)
    assert torch.equal(output, expected.transpose(0, 1)) and torch.equal(h_n_time_major, h_n)


def test_dropout_acts_between_layers_only() -> None:
    torch.manual_seed(0)
    module = LSTM(3, 4, 2, dropout=1.0).double()
    second = LSTM(4, 4).double()
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in module.state_dict().items() if "_l1" in k})
    x = make_input(LENGTHS, 3, torch.float64)
    expected = second(torch.zeros(len(LENGTHS), TIME, 4, dtype=torch.float64), lengths=LENGTHS)[0]
    torch.testing.assert_close(module(x, lengths=LENGTHS)[0], expected, atol=0, rtol=0)
    module.eval()
    no_dropout = LSTM(3, 4, 2).double()
    no_dropout.load_state_dict(module.state_dict())
    torch.testing.assert_close(module(x, lengths=LENGTHS)[0], no_dropout(x, lengths=LENGTHS)[0], atol=0, rtol=0)


def test_forget_bias_is_added_to_the_forget_gate() -> None:
    for variant, gate in (("lstm", 1), ("coupled", 0)):
        torch.manual_seed(0)
        plain = LSTM(3, 4, variant=variant)
        torch.manual_seed(0)
        biased = LSTM(3, 4, variant=variant, forget_bias=1.0)
        shift = biased.bias_ih_l0 - plain.bias_ih_l0
        expected = torch.zeros_like(shift)
        expected[gate * 4 : (gate + 1) * 4] = 1.0
        torch.testing.assert_close(shift, expected)
        assert torch.equal(biased.bias_hh_l0, plain.bias_hh_l0)


def test_reverse_padded() -> None:
    x = torch.arange(1, 9).view(2, 4, 1)
    expected = torch.tensor([[3, 2, 1, 4], [8, 7, 6, 5]]).view(2, 4, 1)
    assert torch.equal(reverse_padded(x, [3, 4]), expected)
    assert torch.equal(reverse_padded(reverse_padded(x, torch.tensor([3, 4])), [3, 4]), x)


def test_rejects_a_mask_with_holes() -> None:
    mask = torch.tensor([[True, False, True]])
    with pytest.raises(
        ValueError,
        match=r"^mask: expected left-aligned padding \(each row True then False\), got "
        r"a row with False before True$",
    ):
        LSTM(2, 3)(torch.zeros(1, 3, 2), mask)


def test_rejects_empty_sentences_and_bad_state() -> None:
    with pytest.raises(
        ValueError,
        match=r"^lengths: expected 2 values in 1\.\.3 \(mask rows need a True first "
        r"step\), got \[3, 0\]$",
    ):
        LSTM(2, 3)(torch.zeros(2, 3, 2), lengths=[3, 0])
    with pytest.raises(
        ValueError,
        match=r"^state h0: expected shape \(2, 1, 3\) \(layers \* directions, batch, "
        r"size\), got \(1, 1, 3\)$",
    ):
        GRU(2, 3, bidirectional=True)(torch.zeros(1, 3, 2), state=torch.zeros(1, 1, 3))


def test_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match=r"^variant: expected one of lstm, peephole, coupled, gru, got 'mlstm'$"):
        LSTM(2, 3, variant="mlstm")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu() -> None:
    for name in ("projection-clip", "peephole", "gru-layer-norm"):
        module = make_module(name, 3, 4)
        x = make_input(LENGTHS, 3, torch.float64)
        mask = mask_of(LENGTHS)
        expected = flat(module(x, mask))
        expected_grads = gradients(expected, [x, *module.parameters()])
        module.cuda()
        x_cuda = x.detach().cuda().requires_grad_()
        results = flat(module(x_cuda, mask.cuda()))
        grads = gradients(results, [x_cuda, *module.parameters()])
        assert_all_close([r.cpu() for r in results + grads], expected + expected_grads, 1e-10)
