# make test  - create .venv, install, run every test (the browser tests need Debian's chromium: see below)
# make lab   - create .venv, install, start the lab on http://127.0.0.1:7860
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: test lab install clean chromium

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# MTCNN face detector with its weights in the wheel; --no-deps: its metadata pins torch < 2.3, the code runs on 2.14
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Every test runs, or the run stops and says why: without chromium the browser tests could only be skipped,
# so `make test` fails at once with the command that installs it (.ci/run installs it first). Skipped tests
# print their reason in the summary (-rs, set in pyproject.toml).
test: chromium $(STAMP)
	$(BIN)/python -m pytest tests

chromium:  # checked before the install, so a missing browser fails in a second, not after it
	@test -x $(CHROMIUM) || { echo "make test: the browser tests (tests/test_browser.py) need $(CHROMIUM); install it with:" >&2; \
	    echo "    apt-get update && apt-get install -y --no-install-recommends chromium" >&2; exit 1; }

lab: $(STAMP)
	$(BIN)/python app.py

clean:
	rm -rf $(VENV) .pytest_cache
