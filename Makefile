# RALM Feed. The whole set-up is two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install install-test browser nginx promtool services db serve bench lint clean

demo: install nginx .env services db  ## set up everything and run web, proxy, worker, beat and the simulator
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py simulate --backfill-hours 36 --sessions 100000 --skip-if-history
	$(BIN)/python manage.py train
	PORT=$(PORT) $(BIN)/python manage.py rundemo

test: install-test browser nginx promtool .env services  ## run the whole suite against the real Postgres and Redis
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=15

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -r requirements-test.txt
	touch $@

browser:  ## Debian's Chromium for the browser test (Playwright drives /usr/bin/chromium)
	@test -x /usr/bin/chromium || { echo "installing chromium (apt-get)"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

# RUNLEVEL=1: the package's install starts no system-wide nginx on port 80 (invoke-rc.d).
nginx:  ## Debian's nginx, the proxy in front of gunicorn (manage.py proxy runs it as this user)
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || { echo "installing nginx (apt-get)"; \
	  $(SUDO) env RUNLEVEL=1 apt-get install -y -q nginx >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) env RUNLEVEL=1 apt-get install -y -q nginx >/dev/null; }; }

# Debian's prometheus package ships promtool; RUNLEVEL=1 keeps its install from starting a server.
promtool:  ## promtool checks ops/prometheus and unit-tests each alert (tests/test_promtool.py)
	@test -x /usr/bin/promtool || { echo "installing promtool (apt-get prometheus)"; \
	  $(SUDO) env RUNLEVEL=1 apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) env RUNLEVEL=1 apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }

.env: | $(BIN)/python  ## random secrets for this checkout (DEBUG stays off); docker compose reads them too
	$(BIN)/python -c "import secrets; t = secrets.token_urlsafe; print(f'SECRET_KEY={t(50)}\nSIMULATOR_TOKEN={t(32)}\nMETRICS_TOKEN={t(32)}\nGRAFANA_ADMIN_PASSWORD={t(16)}')" > $@

services:  ## Postgres and Redis must answer (see README for how to start them)
	@$(BIN)/python -c "import socket,sys; [socket.create_connection(a, 2).close() for a in [('127.0.0.1',5432),('127.0.0.1',6379)]]" \
	  || { echo "Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be running: see README, 'Services'."; exit 1; }

db: install .env
	$(BIN)/python manage.py createdb
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

serve: install nginx .env db  ## the web process and the proxy in front of it
	PORT=$(PORT) $(BIN)/python manage.py rundemo --only web proxy

bench: install-test nginx .env services db  ## every benchmark, then bench/results.md and the README's numbers
	$(BIN)/python bench/run.py

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
