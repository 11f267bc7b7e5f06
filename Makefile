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

# Benchmarks side by side with their peers (docs/benchmarks.md; minutes, loopback only).
# The lock peers (aioredlock, pottery) go into .venv; arq pins redis<6, which would break the
# product's redis-py 8, so arq and its httpx + selectolax live in a venv of their own that
# bench/run_path.py drives as a subprocess (py-spy, for bench/run_path_profile.py, goes there
# too). Each output is printed and kept in build/bench/.
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed
BENCH_OUT := build/bench

.PHONY: bench bench-peers

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet arq httpx selectolax py-spy
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(PY) -m pip install --quiet 'aioredlock>=0.7.3' 'pottery>=3.0.1'

bench: bench-peers
	@mkdir -p $(BENCH_OUT)
	$(PY) bench/run_path.py > $(BENCH_OUT)/run_path.md && cat $(BENCH_OUT)/run_path.md
	$(PY) bench/locks.py > $(BENCH_OUT)/locks.md && cat $(BENCH_OUT)/locks.md
	$(PY) bench/fire_latency.py 30 > $(BENCH_OUT)/fire_latency.md && cat $(BENCH_OUT)/fire_latency.md
	$(PY) bench/retry_queue.py 20000 > $(BENCH_OUT)/retry_queue.md && cat $(BENCH_OUT)/retry_queue.md
	$(PY) bench/replica_visibility.py 100 > $(BENCH_OUT)/replica_visibility.md && cat $(BENCH_OUT)/replica_visibility.md
	$(PY) bench/chaos.py 2000 --kill-every 1.0 > $(BENCH_OUT)/chaos.md && cat $(BENCH_OUT)/chaos.md
	$(PY) bench/burst.py 10000 > $(BENCH_OUT)/burst.md && cat $(BENCH_OUT)/burst.md
	$(PY) bench/schedules_scale.py 100000 > $(BENCH_OUT)/schedules_scale.md && cat $(BENCH_OUT)/schedules_scale.md
