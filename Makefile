# Two commands do all the set-up on a fresh machine:
#   make render   install, then render the sample conversation with the starter weights
#   make test     install, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install render sample-corpus starter test test-fast clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

sample-corpus: $(STAMP)
	$(VENV)/bin/infp sample-corpus --out data/sample_corpus

render: $(STAMP)
	$(VENV)/bin/infp render --portrait data/samples/portraits/lp_s1.jpg --audio data/samples/audio/dialogue.flac \
		--out outputs/render/sample_dialogue.mp4 --overlay

starter: $(STAMP)
	bash train/make_starter.sh

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf data/sample_corpus .pytest_cache
