# Two commands do all the set-up on a fresh clone:
#   make demo   installs into .venv and runs the demo on the embedded default
#   make test   installs into .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: demo test install bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m shared.render.rasterizer
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --output $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/render.py

clean:
	rm -rf $(VENV) out
