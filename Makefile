# Two commands on a fresh machine (only Python >= 3.10 and pip needed):
#   make demo   - Llama-2-7B on A100 / H100 / Arm CPU: table + out/roofline.png
#   make test   - the whole test suite (about 8 minutes on 2 cores; 5 with a warm compile cache)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: demo test bench install clean
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/perfmodel demo --out out

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --durations=10

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_decode.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .hypothesis
