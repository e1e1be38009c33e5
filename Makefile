# aiwarden — the two set-up commands are `make demo` and `make test`; both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: browser install demo test unit integration lint format bench soak up down status clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/aiwarden demo

# The console tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; } \
	  || { echo "install Chromium (Debian: apt-get install chromium) for the console tests"; exit 1; }

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

unit: install
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy schemas detectors infra streams

format: install
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run

# The long fault-injection variants (tests/integration/test_faults*.py, @pytest.mark.soak); -s prints what
# each fault measured (the FAULT lines RELIABILITY.md quotes). `make test` never runs them (tests/conftest.py).
soak: install
	$(BIN)/python -m pytest -m soak -s $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no soak tests"; exit 1; fi; exit $$rc

up: install
	$(BIN)/aiwarden up
down: install
	$(BIN)/aiwarden down
status: install
	$(BIN)/aiwarden status

clean:
	-$(BIN)/aiwarden down
	rm -rf $(VENV) .aiwarden .pytest_cache .mypy_cache .ruff_cache
