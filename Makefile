# One command installs everything: `make install`. One command runs the tests: `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
.PHONY: install test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install_llama_cpp.py
	# Debian packages some tests use, when root with apt (each test skips without them, saying why):
	# headless Chromium renders the HTML report; qemu-user runs llama.cpp as other CPUs do (no AVX-512, no AVX2)
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v qemu-x86_64 >/dev/null || missing="$$missing qemu-user"; \
	  if [ -n "$$missing" ]; then \
	    { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	      apt-get install -y -qq $$missing >/dev/null; } || echo "note: not installed:$$missing; tests that need them will skip"; \
	  fi
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, pinned, so pip takes the CPU build and nothing later pulls a CUDA one
	$(BIN)/pip install torch==2.13.0
	# llama.cpp for every x86-64 CPU with AVX2: one CPU backend per micro-architecture, the best one
	# chosen when a process starts (never -march=native: the CPU that builds is not the CPU that runs)
	$(BIN)/python scripts/install_llama_cpp.py --python $(BIN)/python
	$(BIN)/pip install -e ".[all]"
	touch $@

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info
