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

.PHONY: venv run test lint clean

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
	  "A look at the food we eat and the way it is produced." \
	  "An eighth-grader tries to survive the last week of middle school." \
	  "An IMF agent and his team go on a mission to stop a rogue organization."

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .airflow artifacts models
