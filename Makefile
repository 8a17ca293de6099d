# Two commands do everything on a fresh machine (Python 3.10+, no GPU, no network beyond PyPI):
#   make demo   set up .venv if needed, then train the tiny model on the shapes demo (CPU, about a minute)
#   make test   set up .venv if needed, then run the test suite
# setup installs the extras train, test, video (PyAV: the video tests decode real clips) and lsp (pygls: `vtc lsp`).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,test,video,lsp]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/vtc run recipes/demo-shapes.vt

test: $(VENV)/.installed
	$(PY) -m pytest -q
