# The two commands a newcomer needs:
#   make serve   install what serving needs into .venv, save the example ensembler, serve it on :8083
#   make test    install everything else, lint, type-check and run the whole test suite, images
#                included (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BQEMULATOR ?= .venv-bqemulator
PY := $(VENV)/bin/python
EXAMPLE := examples/model
PORT ?= 8083

.PHONY: install serve example test lint typecheck unit images clean bench bench-images bench-smoke fuzz soak fixtures

install: $(VENV)/.installed $(BQEMULATOR)/.installed

# What serving needs and nothing more (no extra): all that `make serve` installs.
$(VENV)/.serving: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# On top of it, what the tests and tools need: every extra but fuzz.
$(VENV)/.installed: $(VENV)/.serving
	$(PY) -m pip install -q -e '.[dev,batch,bigquery,spark,tracing]'
	touch $@

# The BigQuery emulator of tests/batch, in its own venv: its pins (protobuf 6, duckdb)
# differ from ours. duckdb-extension-spatial ships the extension it would download.
$(BQEMULATOR)/.installed:
	$(PYTHON) -m venv $(BQEMULATOR)
	$(BQEMULATOR)/bin/python -m pip install -q bqemulator==1.4.0 duckdb==1.5.5 \
		duckdb-extension-spatial==1.5.5 numpy
	touch $@

example: $(EXAMPLE)/MLmodel

$(EXAMPLE)/MLmodel: $(VENV)/.serving examples/weighted/ensembler.py examples/weighted/save.py examples/weighted/weights.yaml
	rm -rf $(EXAMPLE)
	$(PY) examples/weighted/save.py $(EXAMPLE)

serve: example
	$(VENV)/bin/pyfunc-ensembler serve $(EXAMPLE) --port $(PORT)

lint: install
	$(PY) -m ruff check src tests examples $(wildcard bench)
	$(PY) -m ruff format --check src tests examples $(wildcard bench)
	$(VENV)/bin/hadolint --failure-threshold info docker/*Dockerfile bench/*.Dockerfile
	$(VENV)/bin/shellcheck docker/*.sh $(wildcard bench/*.sh) tests/images/*.sh

typecheck: install
	$(PY) -m mypy

unit: install
	$(PY) -m pytest

# Build the images with buildah and run them with podman (tests/images/, docs/images.md):
# root, and buildah, podman, runc and debootstrap (`.ci/run` installs them). The stand-in
# for python:3.11-slim is made once and kept in podman's storage; what else a run builds
# is tagged for it alone and removed when it ends.
images: install
	CONTAINERS_CONF=$(CURDIR)/tests/images/containers.conf $(PY) -m pytest -m images tests/images

test: lint typecheck unit images

# Remake the committed Turing fixtures (tests/fixtures/turing-sdk-0.16) with Turing's own SDK
# and server from the reference venv; not in CI, which tests against the committed copy.
fixtures:
	bash bench/reference.sh
	bench/.venv-ref/bin/python tests/fixtures/make_turing_sdk.py tests/fixtures/turing-sdk-0.16

# Turing's server against ours (about 22 minutes; docs/benchmarks.md). BENCH_ARGS adds
# options, e.g. BENCH_ARGS="--runs 5 --scaling"; see `python -m bench.run --help`.
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

# Our image beside Turing's, both built with buildah and run with podman (a few minutes;
# docs/images.md): size, build time, start to first 200, what SIGTERM does.
bench-images: install
	CONTAINERS_CONF=$(CURDIR)/tests/images/containers.conf $(PY) -m bench.images --runs 5 \
		--out bench/out/images.json

# Every step of the harness with tiny durations; writes only under bench/out/smoke.
bench-smoke: install
	$(PY) -m bench.run --smoke --out bench/out/smoke --doc bench/out/smoke/benchmarks.md \
		--plot bench/out/smoke/benchmarks-latency.png

# Not in CI. Fuzz the request parser (body -> ensembler arguments, and the native HTTP/1.1
# parsing), FUZZ_SECONDS per target; a finding stops it and leaves fuzz/crash-*.
FUZZ_SECONDS ?= 60
fuzz: install
	$(PY) -m pip install -q -e '.[fuzz]'
	for target in body http; do \
		mkdir -p fuzz/out/$$target && \
		FUZZ_TARGET=$$target $(PY) fuzz/fuzz_request.py -max_total_time=$(FUZZ_SECONDS) \
			-dict=fuzz/json.dict -artifact_prefix=fuzz/ fuzz/out/$$target fuzz/seeds/$$target \
			|| exit 1; \
	done

# Not in CI (its short version is tests/reliability/test_overload.py): overload at 3x
# capacity, recovery, and a SOAK_SECONDS soak at 70 % of capacity (docs/reliability.md).
SOAK_SECONDS ?= 600
soak: install
	$(PY) -m bench.soak --soak $(SOAK_SECONDS) --out bench/out/soak.json

clean:
	rm -rf $(VENV) $(BQEMULATOR) $(EXAMPLE) .pytest_cache .mypy_cache .ruff_cache
