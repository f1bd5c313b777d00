"""A tagger's files in its run directory (``ner train`` writes them): their names, and reading them back checked.

Loading is safe on untrusted files: no code runs from them, every file is checked (a NerError naming it), and
memory and time are bounded by their size. The weights are read first (no larger than their file), then the model
that ``config.yaml``, ``model.json`` and the vocabularies describe is compared with them shape by shape on the
meta device, and only then may anything be built (``ner.runfiles`` holds the checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ner.config import Config, ModelConfig, config_from_dict
from ner.data.vectors import VectorTable, check_file, check_reference, load_vectors
from ner.data.vocab import VOCABULARY_FILES, Vocabulary, load_vocabularies
from ner.elmo import BiLM, BiLMOptions
from ner.errors import ConfigError, NerError
from ner.network import TaggerModel
from ner.nn.crf import allowed_transitions
from ner.runfiles import (
    check_fits,
    check_plausible,
    check_same,
    load_weights,
    meta_device,
    read_json_object,
    read_meta,
    require_files,
)
from ner.yaml_config import read_yaml

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
META_FILE = "model.json"
VECTORS_FILE = "vectors.json"  # which pretrained table the run uses (ner/data/vectors.py), when it uses one
MODEL_FORMAT = 1  # bump when the saved layout changes; Tagger.load refuses other formats
CONSTRAINT_BUFFERS = ("crf.start_allowed", "crf.transitions_allowed", "crf.end_allowed")  # from tags.json


@dataclass
class SavedTagger:
    """What a run directory holds for a tagger, checked: enough to build it and load its weights."""

    config: Config
    words: Vocabulary
    chars: Vocabulary
    tags: Vocabulary
    data_scheme: str  # the scheme of the training files
    bilm_options: BiLMOptions | None  # the biLM's architecture (its weights are in ``state``)
    state: dict[str, torch.Tensor]  # the model's state dict, checked against the model the files describe
    vectors: VectorTable | None  # the pretrained table, checked against vectors.json


def read_tagger_files(run_dir: Path) -> SavedTagger:
    """The checked contents of a single run's directory (see the module docstring)."""
    require_files(run_dir, (CONFIG_FILE, META_FILE, WEIGHTS_FILE, *VOCABULARY_FILES.values()))
    try:
        config = config_from_dict(read_yaml(run_dir / CONFIG_FILE), run_dir, str(run_dir / CONFIG_FILE))
    except ConfigError as error:
        raise NerError(f"{error} (the run was written by an incompatible version of ner)") from None
    meta = read_meta(run_dir / META_FILE, MODEL_FORMAT, config.model.scheme)
    words, chars, tags = load_vocabularies(run_dir)
    options = (
        BiLMOptions.from_allennlp(meta["elmo_options"], str(run_dir / META_FILE)) if meta["elmo_options"] else None
    )
    weights = run_dir / WEIGHTS_FILE
    state = load_weights(weights)
    check_plausible(weights, state, len(tags), _layers(config.model, options))
    try:
        constraints = allowed_transitions(tags.items, config.model.scheme)
    except ValueError as error:
        raise NerError(f"{run_dir / VOCABULARY_FILES['tags']}: {error}") from None
    check_fits(weights, state, _state_shapes(run_dir, config.model, words, chars, tags, options))
    check_same(weights, state, dict(zip(CONSTRAINT_BUFFERS, constraints)), "tags.json")
    return SavedTagger(config, words, chars, tags, meta["data_scheme"], options, state, _saved_vectors(run_dir, config))


def _saved_vectors(run_dir: Path, config: Config) -> VectorTable | None:
    """The pretrained table a run was trained with, checked against the reference in ``vectors.json``."""
    emb = config.model.embeddings
    if not emb.pretrained:
        return None
    path = run_dir / VECTORS_FILE
    if not path.exists():
        raise NerError(
            f"{path}: missing (the run's config names pretrained vectors; expected a run directory "
            f"written by `ner train`)"
        )
    reference = read_json_object(path)
    check_file(emb.pretrained, reference, path)  # before reading it: a wrong or huge file goes unparsed
    try:
        vectors = load_vectors(emb.pretrained, emb.dim, emb.lowercase)
    except NerError as error:
        raise NerError(f"{path}: the model needs its word vectors {emb.pretrained}: {error}") from None
    check_reference(vectors, reference, path)
    return vectors


def _layers(config: ModelConfig, options: BiLMOptions | None) -> int:
    """How many layers (each with at least one tensor) the config and the biLM options describe."""
    cnn = config.char_cnn
    layers = config.lstm.num_layers + (len(cnn.filters) + cnn.highway if cnn.dim else 0)
    return layers + (options.num_layers + len(options.filters) + options.highway_layers if options else 0)


def _state_shapes(
    run_dir: Path,
    config: ModelConfig,
    words: Vocabulary,
    chars: Vocabulary,
    tags: Vocabulary,
    options: BiLMOptions | None,
) -> dict[str, torch.Size]:
    """Names and shapes of the state dict of the model that ``config``, the vocabularies and the biLM options
    describe, built on the meta device: nothing is allocated, however large it claims to be."""
    try:
        with meta_device():
            model = TaggerModel(config, len(words), len(chars), tags.items, BiLM(options) if options else None)
    except (RuntimeError, ValueError, TypeError, OverflowError) as error:
        raise NerError(
            f"{run_dir}: config.yaml and model.json describe no model that can be built: {str(error).splitlines()[0]}"
        ) from None
    return {name: tensor.shape for name, tensor in model.state_dict().items()}
