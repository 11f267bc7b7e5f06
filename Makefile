# Every target bootstraps .venv from pyproject.toml on first use; no root, no Docker.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard proto/campaigns/v1/*.proto)

.PHONY: run test proto proto-check lint typecheck lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m campaign_common.cli up

test: $(STAMP) proto-check
	$(PY) -m pytest

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTO_SRC)

# Regenerates into a scratch folder and fails if the committed code differs.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp $(PROTO_SRC) && \
	for f in $$(cd $$tmp && find . -type f); do \
		cmp -s $$tmp/$$f proto/$$f || { echo "generated code drift: proto/$$f (run 'make proto' and commit)"; rm -rf $$tmp; exit 1; }; \
	done; \
	extra=$$(cd proto && find . -name '*_pb2*.py*' | while read f; do [ -f $$tmp/$$f ] || echo $$f; done); \
	rm -rf $$tmp; \
	[ -z "$$extra" ] || { echo "stale generated files: $$extra"; exit 1; }

# The production image (Dockerfile) installs exactly requirements.lock; regenerate it after
# changing the dependencies in pyproject.toml (tests/deploy fails while the two disagree).
lock: $(STAMP)
	@tmp=$$(mktemp) && \
	$(PY) -m pip install --quiet --dry-run --ignore-installed --report $$tmp . && \
	$(PY) deploy/image/lock.py $$tmp requirements.lock && rm -f $$tmp

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV)

# Benchmarks side by side with their peers (docs/benchmarks.md; tens of minutes, loopback only).
# The lock peers (aioredlock, pottery) go into .venv; arq pins redis<6, which would break the
# product's redis-py 8, so arq and its httpx + selectolax live in a venv of their own that
# bench/run_path.py drives as a subprocess (py-spy, for bench/run_path_profile.py, goes there
# too). bench/report.py runs every benchmark, prints and keeps each output in build/bench/, and
# writes the generated section of docs/benchmarks.md (machine, commands, tables, ratios).
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: bench bench-peers

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet arq httpx selectolax py-spy
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(PY) -m pip install --quiet 'aioredlock>=0.7.3' 'pottery>=3.0.1'

bench: bench-peers
	$(PY) bench/report.py
