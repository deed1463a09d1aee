# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip's notes about optional local mirrors are noise, not errors.
PIP_QUIET := { grep -v -e 'is neither a file nor a directory' -e '^$$' || true; }

.PHONY: install demo demo-stack airflow airflow-env test test-unit lint format clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | $(PIP_QUIET)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev,train,spark,stack]" 2>&1 | $(PIP_QUIET)
	$(PY) -c "import airflow, ray, pyiceberg, ray_operators"
	# Spark 3.5.9 and the Iceberg Spark runtime, apart in $(VENV)/spark (see ray_operators/spark/runtime.py).
	$(PY) -m ray_operators.spark.runtime install 2>&1 | $(PIP_QUIET)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m ray_operators.devstack.demo $(DEMO_ARGS)

# The same pipelines on the production shape: S3 + Iceberg REST catalog (SeaweedFS), two Ray nodes.
demo-stack: install
	$(PY) -m ray_operators.devstack.demo --stack production $(DEMO_ARGS)

airflow: install
	$(PY) -m ray_operators.devstack.airflow_local $(AIRFLOW_ARGS)

airflow-env:
	@cat .local/airflow.env

# ruff, and mypy over ray_operators/ (strict on pipelines/ and the contract: see pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Two workers (pytest-xdist), each running whole test files in a lane balanced by the files' time
# budgets (tests/README.md; --dist loadfile selects the lanes: tests/conftest.py). pyproject's
# -ra lists every skip (and failure); under CI=true a skip outside the allowlist fails
# (tests/helpers/suite_report.py). The run ends with the slowest files.
PYTEST_WORKERS ?= 2
test: lint
	# pytest exits 5 when it collects nothing: say so, and fail.
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --max-worker-restart=0 $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo 'pytest collected no tests' >&2; exit $$rc; }

# The unit tests alone: no Ray head, no Airflow database, no services (about a minute).
test-unit: lint
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

bench: install
	$(PY) -m pip install -q -e ".[bench]" 2>&1 | $(PIP_QUIET)
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_iceberg_sensing.py
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_preprocess_stage.py
	$(PY) bench/bench_parse.py
	$(PY) bench/bench_tiny_stage.py
	$(PY) bench/bench_shapes.py
	$(PY) bench/bench_curate_engines.py
	$(PY) bench/bench_log_streaming.py
	$(PY) bench/bench_demo.py

clean:
	rm -rf .local build dist *.egg-info .pytest_cache .ruff_cache
