# The two commands: `make demo` (benchmark the bundled models on the local device)
# and `make test`. Everything else here is the set-up they need, done once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MODELS_STAMP := models/cache/.fetched-stamp

.PHONY: all venv models demo test test-under-load lint typecheck system-deps lab-servers arm-lab arm-lab-behind clean

all: venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

models: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP) $(wildcard models/*.toml) $(wildcard models/data/*.toml) harness/bundled.py harness/sample_data.py
	$(BIN)/harness models fetch
	@touch $@

demo: venv models
	$(BIN)/harness run plans/quickstart.toml
	$(BIN)/harness report latest

system-deps:
	@bash scripts/ensure-system-deps.sh

# A throwaway shared store (PostgreSQL + SeaweedFS on 127.0.0.1) to try the lab features
lab-servers: venv system-deps
	$(BIN)/python scripts/lab_servers.py

# The test lab's aarch64 board (tests/lab/): Debian arm64 under qemu-system-aarch64, built
# once (6-10 min) and cached in .lab/ by its inputs; a machine that cannot says why, and only
# the ARM tests skip.
arm-lab: venv system-deps
	$(BIN)/python tests/lab/image.py

# The same, behind what follows (lint, typecheck, the suite): the ARM tests run last and
# wait for it; its output lands in .lab/build-output.txt and under pytest's summary.
arm-lab-behind: venv system-deps
	$(BIN)/python tests/lab/image.py --background

lint: venv
	$(BIN)/ruff check harness tests benchmarks
	$(BIN)/ruff format --check harness tests benchmarks
	$(BIN)/lint-imports --no-cache

# pure modules (decisions over data, parsers, records) are held to --strict; the runner
# to --strict at Python 3.8, its oldest target, by the last mypy that still checks 3.8
PURE_MODULES := harness/stats.py harness/scaffold.py harness/tune_search.py harness/tune_revert.py harness/shared/location.py harness/lab/job_doc.py harness/native/parsers.py harness/native/trtexec.py harness/native/op_profiles.py harness/records.py harness/rows.py \
	harness/tables.py harness/gate.py harness/history.py harness/probes/power.py \
	harness/probes/thermal.py harness/analysis.py harness/report/table.py \
	harness/errors.py harness/jobs.py harness/plan_jobs.py harness/accuracy.py harness/comparisons.py harness/profiles.py \
	harness/report/verdict.py harness/job_key.py harness/stored_run.py harness/probes/facts.py harness/clock.py \
	harness/fidelity.py harness/output_measures.py harness/gate_quality.py
RUNNER_CHECK := .venv-runner-typecheck
RUNNER_CHECK_STAMP := $(RUNNER_CHECK)/.installed-stamp

$(RUNNER_CHECK_STAMP): pyproject.toml
	$(PYTHON) -m venv $(RUNNER_CHECK)
	$(RUNNER_CHECK)/bin/python -m pip install --quiet --upgrade pip
	$(RUNNER_CHECK)/bin/python -m pip install --quiet --group runner-typecheck
	@touch $@

typecheck: venv $(RUNNER_CHECK_STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(PURE_MODULES)
	$(RUNNER_CHECK)/bin/mypy --python-version 3.8 --strict -p harness.runner

test: venv models system-deps arm-lab-behind lint typecheck
	$(BIN)/pytest

# Before a release: the suite LOAD_RUNS times in a row with every core kept busy by
# another process, so a test that waits for a fixed time instead of a condition shows.
LOAD_RUNS ?= 3
test-under-load: venv models system-deps arm-lab
	@bash scripts/under-load.sh $(LOAD_RUNS) $(BIN)/pytest

clean:
	rm -rf $(VENV) $(RUNNER_CHECK) models/cache .lab
