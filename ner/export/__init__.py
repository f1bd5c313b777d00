"""Exporting trained taggers for other runtimes: ``ner.export.onnx`` (``ner export RUN_DIR OUT_DIR``)."""
