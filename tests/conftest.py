"""Shared fixtures; helpers live in plain modules (sample_data, servers). Airflow reads its configuration
at import time, so the test session's own AIRFLOW_HOME (a fresh SQLite metadata DB) is set here, before
any test module imports Airflow."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sample_data import PROJECT_ROOT, SHARED_CSV, write_head
from tests.servers import SmtpInbox, smtp_connection

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "1",
        # Production has no default dataset: the tests' is the real sample, and local files lie below it.
        "MOVIES_DATASET_URL": str(SHARED_CSV),
        "GENRE_DATA_ROOT": str(SHARED_CSV.parent),
        "GENRE_SCORING_URL": str(SHARED_CSV),  # the batch predict DAG's movies
    }
)
csv.field_size_limit(sys.maxsize)


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    if not SHARED_CSV.is_file():
        pytest.fail(f"the shared sample {SHARED_CSV} is missing: tests need the real movies_metadata rows")
    return SHARED_CSV


@pytest.fixture(scope="session")
def sample_csv(shared_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 800 real movies: enough to train, small enough to be quick."""
    return write_head(shared_csv, tmp_path_factory.mktemp("data") / "movies_head800.csv", 800)


@pytest.fixture(scope="session")
def prepared_sample(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.config import DEFAULT_GENRES
    from tasks.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare_dataset(sample_csv, out, DEFAULT_GENRES, 0.2, 0.1)
    return out


@pytest.fixture(scope="session")
def glove_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tasks.embedding.modules import GLOVE_MODULE, ensure_module

    return ensure_module(GLOVE_MODULE, tmp_path_factory.mktemp("modules"))["path"]


@pytest.fixture(scope="module")
def dag(airflow_db: Path):
    """The retrain DAG, parsed from dags/ as the dag-processor does."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["movie_genre_retrain"]


@pytest.fixture
def dirs(tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Models and artifacts of a DAG run in tmp_path; local datasets below the sample's folder."""
    paths = {"models": tmp_path / "models", "artifacts": tmp_path / "artifacts"}
    monkeypatch.setenv("GENRE_MODEL_DIR", str(paths["models"]))
    monkeypatch.setenv("GENRE_ARTIFACTS_DIR", str(paths["artifacts"]))
    monkeypatch.setenv("GENRE_DATA_ROOT", str(sample_csv.parent))
    return paths


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpInbox]:
    """Alerts go by e-mail to a real SMTP server on loopback."""
    with SmtpInbox() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(smtp.port))
        monkeypatch.setenv("GENRE_ALERT_EMAILS", "ml-team@example.org")
        yield smtp


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata DB in the session's AIRFLOW_HOME."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    yield _AIRFLOW_HOME
