ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BIN := $(ROOT)/.venv/bin

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS='-k outbox -x'`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test faults lint fmt bench

help:
	@echo "Targets:"
	@echo "  make run    create/refresh .venv, then run 'messaging-gateway serve'"
	@echo "  make test   full test run (installs PostgreSQL/Redis via apt if missing,"
	@echo "              then ruff, mypy, pytest); PYTEST_ARGS='...' passes args to pytest"
	@echo "  make faults every fault scenario (tests/faults), slow ones too, then a table"
	@echo "              of recovery times; PYTEST_ARGS='...' passes args to pytest"
	@echo "  make lint   ruff check + ruff format --check + mypy"
	@echo "  make fmt    ruff format + ruff check --fix"
	@echo "  make bench  run the benchmarks (bench/run.sh)"
	@echo "  make venv   only create/refresh .venv"

venv:
	@bash "$(ROOT)/scripts/venv.sh"

run: venv
	cd "$(ROOT)" && "$(BIN)/messaging-gateway" serve

test:
	@bash "$(ROOT)/scripts/test.sh" $(PYTEST_ARGS)

# The fault scenarios, slow ones included (`make test` deselects those): see the README.
faults: venv
	cd "$(ROOT)" && "$(BIN)/pytest" tests/faults -m fault $(PYTEST_ARGS)

lint: venv
	cd "$(ROOT)" && "$(BIN)/ruff" check . && "$(BIN)/ruff" format --check . && "$(BIN)/mypy"

fmt: venv
	cd "$(ROOT)" && "$(BIN)/ruff" format . && "$(BIN)/ruff" check --fix .

bench: venv
	cd "$(ROOT)" && bash bench/run.sh
