# Two commands do all the set-up on a fresh clone:
#   make demo   installs into .venv and runs the demo on the embedded default
#   make test   installs into .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: demo test install bench clean

# Python caches compiled modules (__pycache__, in .venv and in this tree, both ignored by
# git) unless PYTHONDONTWRITEBYTECODE is set.  Where it is set (some CI images), every
# process compiled TensorFlow's sources again: 20 s to import it on a slow 2-core CPU,
# against 8 s from the cache (docs/demo.md, "Session 28").  The recipes here write the cache.
unexport PYTHONDONTWRITEBYTECODE

install: $(STAMP)

# The pinned wheels exist for Python 3.11-3.13 (README, "Set-up"): one line otherwise.
define PYTHON_CHECK
import sys
v = sys.version_info[:2]
sys.exit(0 if (3, 11) <= v <= (3, 13) else
         f"error: $(PYTHON) is Python {v[0]}.{v[1]}; the toolkit needs 3.11, 3.12 or 3.13 "
         "(e.g. make demo PYTHON=python3.12)")
endef
export PYTHON_CHECK

# --no-compile: Python compiles only the modules it imports, on first import (15 s less to
# install on 2 cores).  PYTHONWARNINGS=ignore: setuptools' banner about editable installs
# is not for the user.
$(STAMP): requirements.txt requirements-no-deps.txt setup.py
	@$(PYTHON) -c "$$PYTHON_CHECK"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.txt
	$(PY) -m pip install -q --no-compile --no-deps -r requirements-no-deps.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --no-compile --no-deps -e .
	$(PY) -m shared.render.rasterizer
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --output $(DEMO_OUT)

# Two test processes, each taking whole files (module fixtures are built once): on a slow
# 2-core CPU 12 min 05 s against 14 min 45 s in one process (docs/demo.md, "Session 27").
# TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: $(STAMP)
	$(PY) bench/render.py

clean:
	rm -rf $(VENV) out
