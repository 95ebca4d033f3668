# East-Data-West-Compute on Airflow. `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
# The hubs' Python runs as their unprivileged user, so it must not live under root's home.
WEST_PYTHON_BIN ?= $(shell [ -x /usr/bin/python3.11 ] && echo /usr/bin/python3.11 || echo $(PYTHON_BIN))
VENV := .venv
WEST_VENV := .local/west-venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
SITE := $(VENV)/lib/python3.11/site-packages
export AIRFLOW_HOME ?= $(CURDIR)/.local/airflow
export AIRFLOW_CONFIG ?= $(CURDIR)/airflow.cfg
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export EASTWEST_DATA_DIR ?= $(CURDIR)/.local/data
export EASTWEST_PROJECT_DIR ?= $(CURDIR)
DEMO_DATE ?= 2026-11-24
DEMO_MACHINES ?= 700
DAG ?= east_west_nightly
DATE ?= $(DEMO_DATE)
END_DATE ?= $(DATE)
CONF ?= {}

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: system-deps
system-deps: ## install the Debian packages the project needs (openssh-server, python3-venv) when missing
	@missing=""; \
	  { command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; } || missing="$$missing openssh-server"; \
	  command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	  $(PYTHON_BIN) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	      echo "error: missing$$missing; install them as root (Debian: apt-get install -y$$missing)" >&2; exit 1; \
	    fi; \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi
	@$(PYTHON_BIN) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "error: Python 3.11 is required ($(PYTHON_BIN) is $$($(PYTHON_BIN) --version)); set PYTHON_BIN=/path/to/python3.11" >&2; exit 1; }

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml | system-deps
	$(PYTHON_BIN) -m venv $(VENV)
	$(VENV)/bin/pip install -q uv==0.13.9
	$(UV) pip install -q --python $(PY) -r requirements.txt -r requirements-dev.txt
	$(UV) pip install -q --python $(PY) --no-deps -e .
	printf '%s\n' "$(CURDIR)/dev" > $(SITE)/eastwest-dev-tools.pth
	touch $@

$(WEST_VENV)/.installed: requirements-west.txt $(VENV)/.installed
	$(UV) venv -q --clear --python $(WEST_PYTHON_BIN) $(WEST_VENV)
	$(UV) pip install -q --python $(WEST_VENV)/bin/python -r requirements-west.txt
	touch $@

.PHONY: venv west-venv
venv: $(VENV)/.installed ## east-side virtual environment with pinned dependencies
west-venv: $(WEST_VENV)/.installed ## western-node environment (runner only, no Airflow)

.PHONY: requirements
requirements: ## re-pin requirements*.txt from requirements*.in with uv
	$(UV) pip compile -q --python-version 3.11 requirements.in -o requirements.txt
	$(UV) pip compile -q --python-version 3.11 requirements-dev.in -c requirements.txt -o requirements-dev.txt
	$(UV) pip compile -q --python-version 3.11 requirements-west.in -c requirements.txt -o requirements-west.txt

.PHONY: hubs hubs-down
hubs: system-deps venv west-venv ## start the local western hubs (sshd on 127.0.0.1)
	$(PY) -m eastwest_dev.localhubs up
hubs-down: ## stop the local western hubs
	@if [ -x $(PY) ]; then $(PY) -m eastwest_dev.localhubs down; fi

AIRFLOW_ENV = AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$(AIRFLOW_HOME)/airflow.db}

.PHONY: airflow-db
airflow-db: venv ## create or migrate the Airflow metadata DB (SQLite under .local/airflow by default)
	mkdir -p $(AIRFLOW_HOME)
	$(AIRFLOW_ENV) $(VENV)/bin/airflow db migrate >$(AIRFLOW_HOME)/db-migrate.log 2>&1 || { tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1; }

.PHONY: demo run
demo: hubs airflow-db ## set everything up and run the nightly pipeline for DEMO_DATE (≈1M readings)
	@$(AIRFLOW_ENV) $(PY) -m eastwest_dev.demo --dag east_west_nightly --date $(DEMO_DATE) --machines $(DEMO_MACHINES); \
	  rc=$$?; $(PY) -m eastwest_dev.localhubs down >/dev/null; exit $$rc

run: hubs airflow-db ## run any DAG locally: make run DAG=east_west_orders DATE=2026-11-24 [END_DATE=…] [CONF='{…}']
	@$(AIRFLOW_ENV) $(PY) -m eastwest_dev.demo --dag $(DAG) --date $(DATE) --end-date $(END_DATE) \
	  --machines $(DEMO_MACHINES) --conf '$(CONF)'; rc=$$?; $(PY) -m eastwest_dev.localhubs down >/dev/null; exit $$rc

.PHONY: airflow airflow-down
airflow: hubs ## start the real Airflow stack (UI + REST on :8080) and the hubs; EASTWEST_EXECUTOR=celery, EASTWEST_AIRFLOW_DB=postgresql://…
	@set -a; . .local/hubs/connections.env; set +a; $(PY) -m eastwest_dev.stack up
airflow-down: ## stop the Airflow stack and the hubs
	@if [ -x $(PY) ]; then $(PY) -m eastwest_dev.stack down; fi
	@$(MAKE) --no-print-directory hubs-down

.PHONY: browser-deps
browser-deps: ## Debian's chromium for the real-browser test (Playwright never downloads a browser here)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "error: chromium is missing; install it as root (Debian: apt-get install -y chromium)" >&2; exit 1; \
	  fi; \
	  echo "installing chromium with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

VEGA_PACKAGES := vega@6.3.0 vega-lite@6.4.1 vega-embed@7.3.0
UI_STATIC := src/eastwest/ui/static

.PHONY: vendor-vega
vendor-vega: ## refresh the UI's vendored Vega scripts from the npm registry (needs npm; versions in the Makefile)
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(VEGA_PACKAGES) >/dev/null && \
	  for tgz in *.tgz; do mkdir -p "$${tgz%.tgz}" && tar xzf "$$tgz" -C "$${tgz%.tgz}"; done && \
	  cp vega-[0-9]*/package/build/vega.min.js vega-lite-*/package/build/vega-lite.min.js \
	     vega-embed-*/package/build/vega-embed.min.js $(CURDIR)/$(UI_STATIC)/ && \
	  cp vega-[0-9]*/package/LICENSE $(CURDIR)/$(UI_STATIC)/vega.LICENSE && \
	  cp vega-lite-*/package/LICENSE $(CURDIR)/$(UI_STATIC)/vega-lite.LICENSE && \
	  cp vega-embed-*/package/LICENSE $(CURDIR)/$(UI_STATIC)/vega-embed.LICENSE && \
	  cd $(CURDIR) && rm -rf $$tmp && sha256sum $(UI_STATIC)/*.min.js && \
	  echo "update the versions and digests in $(UI_STATIC)/LICENSES.md"

.PHONY: lint
lint: venv ## ruff check and format check, mypy on the library
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: test
test: system-deps browser-deps venv west-venv lint ## run every test (real sshd hubs, real PostgreSQL, real Airflow)
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

.PHONY: clean
clean: hubs-down ## stop hubs and remove .local (venvs, hubs, data, Airflow home)
	rm -rf .local

.PHONY: bench bench-transfer bench-placement bench-model bench-hub-memory bench-e2e bench-stack
bench: system-deps venv west-venv ## both benchmarks on emulated WAN links, one after the other (root; writes bench/)
	$(PY) bench/transfer_bench.py $(BENCH_ARGS)
	$(PY) bench/placement_bench.py $(PLACEMENT_ARGS)

bench-transfer: system-deps venv west-venv ## stock SFTP vs scp vs the engine on three links (root; ≈6 min with data generation)
	$(PY) bench/transfer_bench.py $(BENCH_ARGS)

bench-e2e: system-deps venv west-venv ## the nightly pipeline vs the stock operators' way at 1M, 10M and 50M readings over 200 Mbit/s + 30 ms (root; ≈25 min, 16 GB RAM)
	$(PY) bench/e2e_bench.py $(E2E_ARGS)

bench-stack: venv west-venv ## the real Airflow stack: an analyst run with the forkserver preload of airflow.cfg vs Airflow's default fork (≈10 min)
	$(PY) bench/stack_bench.py $(STACK_ARGS)

bench-hub-memory: venv west-venv ## daily_kpis on a hub at 1, 10, 31 and 50 days: whole input vs machine groups (≈5 min, 14 GB RAM)
	$(PY) bench/hub_memory_bench.py $(HUB_MEMORY_ARGS)

bench-placement: system-deps venv west-venv ## placement over four emulated hubs (root; ≈11 min; PLACEMENT_ARGS=--quick for a smaller day)
	$(PY) bench/placement_bench.py $(PLACEMENT_ARGS)

bench-model: venv west-venv ## the energy forecast: HGB vs LightGBM, training and inference on a hub's environment at 700 machines × 28 days (≈2 min)
	$(PY) bench/forecast_bench.py $(MODEL_ARGS)
