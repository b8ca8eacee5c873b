"""Every trigger form submits untouched: each param of each DAG has a default, accepts null (the form's
empty field) as that default, and still refuses a bad value by name, in Airflow and at run time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.config import (
    PARAM_SCHEMAS,
    ROLLBACK_PARAM_SCHEMAS,
    RollbackConfig,
    RunConfig,
    Settings,
)
from tasks.errors import ConfigError
from tests.sample_data import PROJECT_ROOT

# Each DAG's params, and the one place that builds its run config from them.
FORMS: dict[str, tuple[dict[str, dict[str, Any]], Callable[[dict[str, Any], Settings], Any]]] = {
    "movie_genre_retrain": (PARAM_SCHEMAS, RunConfig.from_params),
    "movie_genre_rollback": (ROLLBACK_PARAM_SCHEMAS, RollbackConfig.from_params),
    "movie_genre_batch_predict": ({}, lambda params, settings: None),  # no params: it scores the served version
}
# A value of the wrong JSON type for each declared type.
WRONG_TYPE = {"string": 12345, "integer": "many", "number": "a lot", "array": "Comedy", "boolean": "yes"}
SECTIONS_IN_ORDER = ["Data", "Data gate", "Training", "Model gate", "Registry"]


@pytest.fixture(scope="module")
def dags(airflow_db: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(model_dir=tmp_path, artifacts_dir=tmp_path, dataset_url="/data/m.csv", data_root=tmp_path)


def every_param() -> list[tuple[str, str]]:
    return [(dag_id, name) for dag_id, (schemas, _) in FORMS.items() for name in schemas]


def test_every_dag_has_its_form_declared_here(dags: dict[str, Any]) -> None:
    assert set(dags) == set(FORMS)
    for dag_id, (schemas, _) in FORMS.items():
        assert list(dags[dag_id].params) == list(schemas), f"{dag_id}: the form lists the declared params in order"


@pytest.mark.parametrize(("dag_id", "name"), every_param())
def test_default_and_null_both_validate_in_airflow(dags: dict[str, Any], dag_id: str, name: str) -> None:
    param = dags[dag_id].params.get_param(name)
    assert param.has_value or param.value is None, f"{name} has a default"
    assert "null" in param.schema["type"], f"{name}: the form would mark the field required"
    submit(dags[dag_id], {})
    submit(dags[dag_id], {name: None})


@pytest.mark.parametrize(("dag_id", "name"), every_param())
def test_null_means_the_default(dag_id: str, name: str, settings: Settings) -> None:
    schemas, build = FORMS[dag_id]
    default = settings.param_defaults(schemas)[name]
    assert build({name: None}, settings) == build({name: default}, settings) == build({}, settings)


@pytest.mark.parametrize(("dag_id", "name"), every_param())
def test_a_bad_value_is_refused_by_name(dags: dict[str, Any], dag_id: str, name: str, settings: Settings) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    schemas, build = FORMS[dag_id]
    bad = WRONG_TYPE[schemas[name]["type"]]
    with pytest.raises(ConfigError, match=rf"param {name}="):
        build({name: bad}, settings)
    with pytest.raises(ParamValidationError, match=f"param {name}:"):
        submit(dags[dag_id], {name: bad})


def submit(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """Airflow's own check of a trigger's conf against the DAG's params (what the REST API runs)."""
    params = copy.deepcopy(dag.params)
    for name, value in conf.items():
        params[name] = value
    return params.validate()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("auc_threshold", 1.5),
        ("keep_versions", 0),
        ("gate_metric", "accuracy"),
        ("dataset_url", "ftp://x/m.csv"),
        ("approval_timeout", 0),
        ("approval_timeout", 721),
    ],
)
def test_bounds_still_apply_to_values_that_are_not_null(dags: dict[str, Any], name: str, value: Any) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"param {name}:"):
        submit(dags["movie_genre_retrain"], {name: value})


def test_form_sections_in_reading_order(dags: dict[str, Any]) -> None:
    sections = [dags["movie_genre_retrain"].params.get_param(n).schema["section"] for n in PARAM_SCHEMAS]
    assert [s for i, s in enumerate(sections) if i == 0 or sections[i - 1] != s] == SECTIONS_IN_ORDER
    assert sections.index("Model gate") < sections.index("Registry")


def test_approval_is_optional_and_waits_a_day_by_default(dags: dict[str, Any], settings: Settings) -> None:
    params = dags["movie_genre_retrain"].params
    for name in ("require_approval", "approval_timeout"):
        assert params.get_param(name).schema["section"] == "Model gate", name
    config = RunConfig.from_params({"require_approval": None, "approval_timeout": None}, settings)
    assert (config.require_approval, config.approval_timeout) == (False, 24)
    config = RunConfig.from_params({"require_approval": True, "approval_timeout": 0.5}, settings)
    assert (config.require_approval, config.approval_timeout) == (True, 0.5)


def test_rollback_version_left_empty_means_the_previous_one(settings: Settings) -> None:
    assert RollbackConfig.from_params({"version": None}, settings).version is None
    assert RollbackConfig.from_params({"version": 3}, settings).version == 3
    with pytest.raises(ConfigError, match="param version="):
        RollbackConfig.from_params({"version": 0}, settings)


def test_site_defaults_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRE_PARAM_DEFAULTS": '{"epochs": 5, "min_rows": 200}', "MOVIES_DATASET_URL": "x"})
    config = RunConfig.from_params({"epochs": None}, settings)
    assert (config.epochs, config.min_rows, config.dataset_url) == (5, 200, "x")
    assert RunConfig.from_params({"epochs": 7}, settings).epochs == 7


@pytest.mark.parametrize(
    ("text", "named"),
    [("{not json", "not JSON"), ("[1]", "JSON object"), ('{"epoch": 5}', "epoch"), ('{"epochs": 0}', "epochs")],
)
def test_bad_site_defaults_are_refused_by_name(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({"GENRE_PARAM_DEFAULTS": text})
