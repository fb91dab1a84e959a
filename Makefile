# make test  - create .venv, install, run the tests
# make lab   - create .venv, install, start the lab on http://127.0.0.1:7860
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lab install clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lab: $(STAMP)
	$(BIN)/python app.py

clean:
	rm -rf $(VENV) .pytest_cache
