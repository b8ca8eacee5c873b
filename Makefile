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

.PHONY: venv run test bench clean system-deps

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

# Run the retraining DAG once, now, through Airflow (`airflow dags test`). Params: CONF='{"epochs": 5}'.
run: venv
	$(BIN)/airflow db migrate > /dev/null
	$(BIN)/airflow dags test movie_genre_retrain --conf '$(or $(CONF),{})'
	$(BIN)/python -m tasks predict \
	  "An examination of our dietary choices and the food we put in our bodies. Based on Jonathan Safran Foer's memoir." \
	  "A teenager tries to survive the last week of her disastrous eighth-grade year before leaving to start high school." \
	  "Ethan Hunt and his IMF team, along with some familiar allies, race against time after a mission gone wrong."

# Debian packages the deployment tests need: the docker-compose validator and headless Chromium.
system-deps:
	@command -v docker-compose >/dev/null 2>&1 && test -x /usr/bin/chromium || \
	  { apt-get update -q && apt-get install -y -q docker-compose chromium; }

test: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

# Benchmarks (not tests), about 40 minutes on 2 cores: DAG parse, embedding throughput, Airflow against
# direct, scale to 200k rows, warm against cold. Prints the table and writes BENCHMARKS.md.
# Smaller: make bench BENCH_ARGS="--repeats 1 --sizes 10000 50000".
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .airflow artifacts models
