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

