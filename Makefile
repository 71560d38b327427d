# vis_d2: `make demo` and `make test` set up .venv first (idempotent; see tools/setup_env.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo env

setup:
	$(PYTHON) tools/setup_env.py --venv $(VENV)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

env: setup
	$(PY) -m vis_d2.collect_env

# the end-to-end demo (train on the synthetic set, evaluate, overlay video) arrives with tools/demo.py;
# until then it reports the environment
demo: env
