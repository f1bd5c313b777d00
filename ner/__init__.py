"""ner: BiLSTM-CRF named-entity recognition on ELMo-style contextual embeddings."""

__version__ = "0.1.0"
