# Two commands do all the set-up on a fresh machine:
#   make render   install, then run the main job (for now: build the sample corpus)
#   make test     install, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install render sample-corpus test test-fast clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

sample-corpus: $(STAMP)
	$(VENV)/bin/infp sample-corpus --out data/sample_corpus

render: sample-corpus

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf data/sample_corpus .pytest_cache
