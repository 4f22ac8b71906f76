# Two commands for a newcomer: `make run` (the server on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test validators browser lint bench mutate clean sandbox

$(BIN)/pltf: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Start the action server on the embedded defaults (SQLite and local templates in ./.pltf).
run: $(BIN)/pltf sandbox
	$(BIN)/pltf serve

## bubblewrap, the sandbox template hooks and previews run in (installed when root; else how to).
sandbox:
	@.ci/install-sandbox

## Render a first service in-process, with no server running.
demo: $(BIN)/pltf
	$(BIN)/pltf run cookiecutter:render --set template=python-service --set values.name=users-api

## Install the validators the template checks use (actionlint, hadolint, promtool, npm schemas…).
validators: $(BIN)/pltf
	@if [ -x .ci/install-validators ]; then VENV=$(VENV) .ci/install-validators; fi

## Headless Chromium (Debian's) and Playwright, for the portal's browser test.
browser: $(BIN)/pltf
	VENV=$(VENV) tests/browser/install.sh

## Run the whole test suite (installs what it needs first).
test: $(BIN)/pltf validators browser sandbox
	$(BIN)/pytest

lint: $(BIN)/pltf
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/pltf
	$(BIN)/python benchmarks/render.py

## Mutation testing of the security-critical modules ([tool.mutmut] in pyproject.toml; docs/mutation.md).
## Slow, so not part of `make test` or CI. One module: make mutate MUTANTS='actions_server.redact*'
MUTANTS ?=
mutate: $(BIN)/pltf
	nice -n 19 $(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .pltf .pytest_cache .mypy_cache .ruff_cache mutants
