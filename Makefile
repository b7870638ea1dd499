# The two commands of the README:
#   make demo   installs everything, ingests source_documents/ and answers a sample question
#   make test   installs everything and runs the whole test suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
QUESTION ?= 奶牛乳房炎怎么预防？

.PHONY: demo test install lint bench clean

demo: $(STAMP)
	$(BIN)/python ingest.py
	$(BIN)/python ask.py "$(QUESTION)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

install: $(STAMP)

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
# llama-cpp-python compiles from source once (~10 min on 2 cores); pip caches the wheel.
$(STAMP): requirements.txt requirements-convert.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -r requirements-convert.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf db models $(VENV)
