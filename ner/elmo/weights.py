"""AllenNLP/bilm-tf ``weights.hdf5`` <-> ``BiLM`` state dict (docs/elmo.md section 8).

TensorFlow conventions converted here:

- ``char_embed`` has 261 rows; our table has a zero row 0 in front (character id 0 = no token).
- ``CNN/W_cnn_i`` is ``(1, width, char_dim, num)``; ``Conv1d`` wants ``(num, char_dim, width)``.
- Highway: bilm-tf's ``c = sigmoid(x W_carry + b_carry)`` gates the *transform* branch, our gate ``g`` the
  identity, so ``g = 1 - c``: gate weight ``-W_carry^T``, gate bias ``-b_carry``.
- LSTM ``W_0`` is ``(P + P, 4D)`` acting on ``[x, h]`` with gate blocks ``i, j, f, o``; ours are
  ``weight_ih``/``weight_hh`` ``(4D, P)`` with blocks ``i, f, g(=j), o``. TF adds a forget bias of 1 that is
  not stored in ``B``: we keep ``B`` in ``bias_ih`` and the 1 in the forget block of ``bias_hh``, so
  ``B = bias_ih + (bias_hh - 1_f)`` is read back bit for bit and export after import is exact.
- ``W_P_0`` is ``(D, P)``; the projection ``weight_hr`` is ``(P, D)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ner.errors import NerError
from ner.fileio import atomic_path

TF_FORGET_BIAS = 1.0

Arrays = dict[str, np.ndarray]


def read_allennlp_weights(path: str | Path, bilm: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Read ``weights.hdf5`` into a state dict for ``bilm`` (whose options must match the file)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NerError(f"{path}: ELMo weights file not found")
    target = bilm.state_dict()
    expected = _torch_to_tf({key: value.float().numpy() for key, value in target.items()}, bilm.options)
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise NerError(f"{path}: not an HDF5 file ({error})") from None
    tf: Arrays = {}
    with h5:
        for name, like in expected.items():
            if name not in h5:
                raise NerError(f"{path}: dataset {name!r} missing (do the options match these weights?)")
            if h5[name].shape != like.shape:
                raise NerError(
                    f"{path}: dataset {name!r} has shape {h5[name].shape}, the options file implies {like.shape}"
                )
            tf[name] = np.asarray(h5[name], dtype=np.float32)
    state = _tf_to_torch(tf, bilm.options)
    return {key: torch.from_numpy(np.ascontiguousarray(state[key])).to(value.dtype) for key, value in target.items()}


def write_allennlp_weights(bilm: torch.nn.Module, path: str | Path) -> None:
    """Write ``bilm`` as an AllenNLP/bilm-tf ``weights.hdf5`` (float32), atomically."""
    import h5py

    path = Path(path)
    state = {key: value.detach().cpu().float().numpy() for key, value in bilm.state_dict().items()}
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as h5:
        for name, array in _torch_to_tf(state, bilm.options).items():
            h5.create_dataset(name, data=np.ascontiguousarray(array, dtype=np.float32))


def _lstm_cells(options) -> list[tuple[str, str]]:
    """(hdf5 group of one LSTM cell, state-dict prefix of the matching single-layer LSTM)."""
    return [
        (f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell", f"{stack}.{layer}.")
        for direction, stack in enumerate(("forward_layers", "backward_layers"))
        for layer in range(options.num_layers)
    ]


def _tf_to_torch(tf: Arrays, options) -> Arrays:
    """hdf5 datasets -> ``BiLM`` state dict (numpy float32)."""
    embed = tf["char_embed"]  # (261, char_dim)
    state = {"token_encoder.embedding.weight": np.concatenate([np.zeros_like(embed[:1]), embed])}
    for i in range(len(options.filters)):
        state[f"token_encoder.convs.{i}.weight"] = tf[f"CNN/W_cnn_{i}"][0].transpose(2, 1, 0)  # (num, cd, width)
        state[f"token_encoder.convs.{i}.bias"] = tf[f"CNN/b_cnn_{i}"]
    for k in range(options.highway_layers):
        group = f"CNN_high_{k}"
        state[f"token_encoder.highway.layers.{k}.weight"] = np.concatenate(
            [tf[f"{group}/W_transform"].T, -tf[f"{group}/W_carry"].T]
        )  # (2n, n): [transform; gate]
        state[f"token_encoder.highway.layers.{k}.bias"] = np.concatenate(
            [tf[f"{group}/b_transform"], -tf[f"{group}/b_carry"]]
        )
    state["token_encoder.projection.weight"] = tf["CNN_proj/W_proj"].T  # (P, n)
    state["token_encoder.projection.bias"] = tf["CNN_proj/b_proj"]
    for group, prefix in _lstm_cells(options):
        kernel = tf[f"{group}/W_0"].T  # (4D, 2P): [input | recurrent] columns
        size = kernel.shape[1] // 2
        cell = kernel.shape[0] // 4
        state[prefix + "weight_ih_l0"] = _swap_gates(kernel[:, :size])  # (4D, P)
        state[prefix + "weight_hh_l0"] = _swap_gates(kernel[:, size:])  # (4D, P)
        state[prefix + "bias_ih_l0"] = _swap_gates(tf[f"{group}/B"])
        state[prefix + "bias_hh_l0"] = _forget_one(cell)
        state[prefix + "weight_hr_l0"] = tf[f"{group}/W_P_0"].T  # (P, D)
    return state


def _torch_to_tf(state: Arrays, options) -> Arrays:
    """``BiLM`` state dict (numpy float32) -> hdf5 datasets; the exact inverse of ``_tf_to_torch``."""
    tf = {"char_embed": state["token_encoder.embedding.weight"][1:]}  # (261, char_dim)
    for i in range(len(options.filters)):
        tf[f"CNN/W_cnn_{i}"] = state[f"token_encoder.convs.{i}.weight"].transpose(2, 1, 0)[None]  # (1, w, cd, num)
        tf[f"CNN/b_cnn_{i}"] = state[f"token_encoder.convs.{i}.bias"]
    for k in range(options.highway_layers):
        weight = state[f"token_encoder.highway.layers.{k}.weight"]  # (2n, n)
        bias = state[f"token_encoder.highway.layers.{k}.bias"]  # (2n,)
        n = weight.shape[1]
        tf[f"CNN_high_{k}/W_transform"] = weight[:n].T
        tf[f"CNN_high_{k}/W_carry"] = -weight[n:].T
        tf[f"CNN_high_{k}/b_transform"] = bias[:n]
        tf[f"CNN_high_{k}/b_carry"] = -bias[n:]
    tf["CNN_proj/W_proj"] = state["token_encoder.projection.weight"].T  # (n, P)
    tf["CNN_proj/b_proj"] = state["token_encoder.projection.bias"]
    for group, prefix in _lstm_cells(options):
        weight_in = _swap_gates(state[prefix + "weight_ih_l0"])  # (4D, P), TF gate order
        weight_rec = _swap_gates(state[prefix + "weight_hh_l0"])  # (4D, P)
        cell = weight_in.shape[0] // 4
        bias = state[prefix + "bias_ih_l0"] + (state[prefix + "bias_hh_l0"] - _forget_one(cell))
        tf[f"{group}/W_0"] = np.concatenate([weight_in, weight_rec], axis=1).T  # (2P, 4D)
        tf[f"{group}/B"] = _swap_gates(bias)
        tf[f"{group}/W_P_0"] = state[prefix + "weight_hr_l0"].T  # (D, P)
    return tf


def _swap_gates(array: np.ndarray) -> np.ndarray:
    """Swap gate blocks 1 and 2 along axis 0: TF ``i, j, f, o`` <-> torch ``i, f, j, o`` (an involution)."""
    i, second, third, o = np.split(array, 4, axis=0)
    return np.concatenate([i, third, second, o], axis=0)


def _forget_one(cell: int) -> np.ndarray:
    """``(4 * cell,)`` float32 vector holding TF's forget bias in the torch forget block (i, f, g, o)."""
    ones = np.zeros(4 * cell, dtype=np.float32)
    ones[cell : 2 * cell] = TF_FORGET_BIAS
    return ones
