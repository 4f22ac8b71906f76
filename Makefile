# Two commands for a newcomer: `make run` (the server on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test validators browser lint bench mutate clean sandbox lock

# `make test` apt-installs chromium and prometheus and runs npm: without root or Node it says so, in one
# line, before changing anything.
ifneq ($(filter test,$(MAKECMDGOALS)),)
MISSING := $(shell .ci/check-prerequisites 2>&1)
ifneq ($(MISSING),)
$(error $(MISSING))
endif
endif

# The versions in uv.lock, never whatever is newest today: `make lock` moves them on purpose.
$(BIN)/pltf: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'uv>=0.4,<1'
	$(BIN)/uv export --frozen --all-extras --no-emit-project --quiet -o $(VENV)/requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet -r $(VENV)/requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e .
	@# Bytecode now, once: where PYTHONDONTWRITEBYTECODE is set (CI, containers) every server, render
	@# worker and CLI call would otherwise compile all its imports again (2.5 s of CPU against 1 s).
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib actions_server >/dev/null
	touch $@

## Re-resolve uv.lock after changing the dependencies in pyproject.toml.
lock: $(BIN)/pltf
	$(BIN)/uv lock

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

## Run the whole test suite. Installs what it needs first: the locked Python packages into .venv, the
## validators (pip and npm in tools/validators; apt: prometheus), chromium (apt) and bubblewrap (apt).
## One pytest-xdist worker per CPU (PYTEST_XDIST_AUTO_NUM_WORKERS=N overrides it): ~6 min on 2 cores
## (8-11 while another suite shared them) instead of ~18 serially. A third worker on 2 cores gained
## ~10% and adds load to the tests that bound how long an answer takes. loadgroup keeps the tests of one
## xdist_group (a module sharing an expensive fixture) on one worker.
test: $(BIN)/pltf validators browser sandbox
	$(BIN)/pytest -n auto --dist loadgroup

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
