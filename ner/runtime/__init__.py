"""Running exported taggers (``ner export``) without the PyTorch model: onnxruntime for the network, numpy for the
CRF (Viterbi and span probabilities), the document context and the inputs. See ``ner.runtime.tagger``."""

from ner.runtime.tagger import OnnxTagger

__all__ = ["OnnxTagger"]
