# Two commands for a newcomer: `make run` (the retraining DAG end to end through Airflow) and `make test`.
# Both create the virtualenv and install what they need first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ROOT := $(CURDIR)

# Embedded Airflow for local runs: SQLite metadata DB under the repo, this repo's DAGs only.
export AIRFLOW_HOME ?= $(ROOT)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(ROOT)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export GENRE_MODEL_DIR ?= $(ROOT)/models
export GENRE_ARTIFACTS_DIR ?= $(ROOT)/artifacts
export GX_ANALYTICS_ENABLED ?= false
# The dataset of `make run` and `make ui`: the real 5,000-row sample beside the checkout, when it is there.
SHARED_SAMPLE := $(abspath $(ROOT)/../shared/data/movies_metadata_head5000.csv)
ifneq ($(wildcard $(SHARED_SAMPLE)),)
export MOVIES_DATASET_URL ?= $(SHARED_SAMPLE)
export GENRE_DATA_ROOT ?= $(dir $(SHARED_SAMPLE))
export GENRE_SCORING_URL ?= $(SHARED_SAMPLE)
endif

.PHONY: venv static run ui test bench clean system-deps

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(MAKE) --no-print-directory static
	touch $@

# The Genre models page serves GX Data Docs without internet: the CDN files they load, from the npm
# registry, into the venv (never the repo). The list is orchestration/genre_models/cdn.py's NPM_PACKAGES.
STATIC_DIR := $(VENV)/share/genre-models-static
static:
	mkdir -p $(STATIC_DIR)
	test -f $(STATIC_DIR)/package.json || echo '{"private": true}' > $(STATIC_DIR)/package.json
	cd $(STATIC_DIR) && npm install --no-save --no-package-lock --ignore-scripts --legacy-peer-deps \
	  --no-audit --no-fund --loglevel=error \
	  $$($(ROOT)/$(BIN)/python -c 'from orchestration.genre_models.cdn import NPM_PACKAGES; print(*NPM_PACKAGES)')

venv: $(BIN)/.installed

# Run the retraining DAG once, now, through Airflow (`airflow dags test`). Params: CONF='{"epochs": 5}'.
# One line per stage, then a summary (orchestration/run_console.py); Airflow's own log goes to RUN_LOG.
# Then the served model's genres for the blog post's three descriptions (`python -m tasks predict`).
RUN_LOG ?= $(AIRFLOW_HOME)/make-run.log
run: venv
	@$(BIN)/python -m orchestration.run_console --conf '$(or $(CONF),{})' --log "$(RUN_LOG)"
	@echo
	@$(BIN)/python -m tasks predict

# The Airflow UI without Docker: `airflow standalone` (api-server, scheduler, dag-processor, triggerer;
# SQLite in $(AIRFLOW_HOME)) with this repo's DAGs and `make run`'s environment. make ui UI_PORT=8081.
# UI_SCHEDULE=False: no scheduled runs (not weekly, nor on unpausing), only those you trigger.
# Ctrl-C, or SIGTERM or SIGHUP to make, stops every component (orchestration/standalone.py says how).
UI_PORT ?= 8080
UI_SCHEDULE ?= True
UI_URL = http://127.0.0.1:$(UI_PORT)
UI_PASSWORD_FILE = $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated

ui: venv
	@$(BIN)/python -c 'import socket; socket.create_server(("127.0.0.1", $(UI_PORT))).close()' 2>/dev/null || \
	  { echo "make ui: port $(UI_PORT) is in use; pick another: make ui UI_PORT=8081" >&2; exit 1; }
	@echo "Airflow UI  $(UI_URL)  (up about a minute after this; Ctrl-C stops it; docs/ui.md)"
	@echo "User        admin"
	@echo "Password    in $(UI_PASSWORD_FILE) (generated on first start)"
	@echo "DAGs        the scheduled ones start paused; unpausing movie_genre_retrain (@weekly) starts last Sunday's run at once"
	@echo "Alerts      e-mail: GENRE_ALERT_EMAILS=you@example.org make ui, plus the smtp_default connection:"
	@echo "              AIRFLOW_HOME=$(AIRFLOW_HOME) $(BIN)/airflow connections add smtp_default \\"
	@echo "                --conn-uri 'smtp://USER:PASSWORD@smtp.example.org:465'"
	@echo "            Slack: a slack_webhook connection, the webhook URL as its password:"
	@echo "              AIRFLOW_HOME=$(AIRFLOW_HOME) $(BIN)/airflow connections add slack_webhook \\"
	@echo "                --conn-type slackwebhook --conn-password 'https://hooks.slack.com/services/T0/B0/XXX'"
	@PATH="$(ROOT)/$(BIN):$$PATH" PYTHONUNBUFFERED=1 AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=$(UI_SCHEDULE) \
	  AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(UI_PORT) AIRFLOW__API__BASE_URL=$(UI_URL) \
	  AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager \
	  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$(UI_PASSWORD_FILE)" \
	  exec $(BIN)/python -m orchestration.standalone

# Debian packages the deployment tests need: the docker-compose validator and headless Chromium.
system-deps:
	@command -v docker-compose >/dev/null 2>&1 && test -x /usr/bin/chromium || \
	  { apt-get update -q && apt-get install -y -q docker-compose chromium; }

test: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -n 3

# Benchmarks (not tests), about 20 minutes on 2 cores: DAG parse, embedding throughput, Airflow against
# direct, scale to 200k rows, warm against cold. Prints the table and writes BENCHMARKS.md.
# Smaller: make bench BENCH_ARGS="--repeats 1 --sizes 10000 50000".
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .airflow artifacts models
