# Two entry points for a fresh machine: `make demo` and `make test`.
# Each builds .venv from the lock file when it is missing or stale, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" ./demo.sh

# The browser tests drive Debian's Chromium; CJK fonts so that Chinese pages render as text.
BROWSER := /usr/bin/chromium
$(BROWSER):
	command -v apt-get >/dev/null && (apt-get install -y -q chromium fonts-noto-cjk || \
	  (apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk))

# One pytest worker per core (pytest-xdist); tests marked with the same xdist_group run on one
# worker, one after another (a module's costly fixture made once, private servers not at once).
# The end-to-end tests start `fenqi` hundreds of times: each keeps the bytecode it compiled, even
# where the environment says not to write any (PYTHONDONTWRITEBYTECODE), or every start compiles
# the whole package again.
test: $(STAMP) $(BROWSER)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n auto --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src/fenqi

bench: $(STAMP)
	$(BIN)/python bench/quote.py
	$(BIN)/python bench/servicing.py

# Re-pin every dependency (needs network); commit the result.
lock:
	$(PYTHON) -m pip install --quiet uv && $(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
