"""Shared fixtures; helpers live in plain modules (sample_data, servers). Airflow reads its configuration
at import time, so the test session's own AIRFLOW_HOME (a fresh SQLite metadata DB) is set here, before
any test module imports Airflow.

Every test gets the marker of its tier, from its folder: `unit`, `airflow` (the DAGs through real Airflow,
in-process), `deployment` (real Airflow processes, a browser, make targets), and the fault suite also
`faults`; `slow` (set in the modules) marks what trains a model or runs Airflow. With pytest-xdist (`make
test` runs `pytest -n 3` on two cores: one worker mostly waits in the fault suite) the scheduler is
`ModuleGroupScheduling`: a module is one unit of work, run on one worker (its module-scoped fixtures are
built once), except the modules that share the session's LocalExecutor cluster
(tests/deployment/conftest.py), which are one unit, so that one worker runs them all on one cluster; and
the units are handed out longest first (`DURATION_RANK`), so that the fault suite, mostly waiting for
heartbeats to time out, runs beside the CPU-bound ones instead of after them (docs/testing.md, Where CI's
time goes). (xdist's own `--dist loadgroup` does not group under pytest 9: the group suffix it writes into
a node id is not read back.)
"""

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
from typing import Any

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


@pytest.fixture(scope="session")
def glove_export(prepared_sample: Path, glove_module: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported serving model, small and quick: one epoch of a narrow head on the GloVe module.
    Tests that break it work on a copy; publishing it (promote_model) copies it."""
    from tasks.embedding.cache import EmbeddingCache
    from tasks.model.train import TrainConfig, train_model

    config = TrainConfig(
        embedding_module=glove_module, epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=0
    )
    out = tmp_path_factory.mktemp("run") / "model"
    train_model(prepared_sample, out, config, EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove"))
    return out


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


TESTS = PROJECT_ROOT / "tests"
TIERS = ("unit", "airflow", "deployment")
FAULT_SUITE = "deployment/test_faults.py"
# The modules that run on the session's shared LocalExecutor cluster (tests/deployment/conftest.py).
SHARED_CLUSTER_MODULES = (
    "deployment/test_approval.py",
    "deployment/test_browser_trigger.py",
    "deployment/test_genre_models_page.py",
    "deployment/test_task_logs.py",
)
SHARED_CLUSTER_GROUP = "shared-local-cluster"
# Longest first (minutes in CI, docs/testing.md); a module not named here comes after these, in
# collection order.
DURATION_RANK = (
    FAULT_SUITE,
    SHARED_CLUSTER_GROUP,
    "airflow/test_soak.py",
    "airflow/test_dag_run.py",
    "airflow/test_make_run.py",
    "deployment/test_celery_deployment.py",
    "airflow/test_alerts.py",
    "deployment/test_make_ui.py",
    "deployment/test_asset_schedule.py",
    "airflow/test_unchanged_week.py",
    "airflow/test_drift_run.py",
    "airflow/test_reliability.py",
)


def _module(item: pytest.Item) -> str:
    return item.path.relative_to(TESTS).as_posix()


def _group_of_nodeid(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0].removeprefix("tests/")
    return _group(module)


def _group(module: str) -> str:
    return SHARED_CLUSTER_GROUP if module in SHARED_CLUSTER_MODULES else module


def _rank(item: pytest.Item) -> int:
    group = _group(_module(item))
    return DURATION_RANK.index(group) if group in DURATION_RANK else len(DURATION_RANK)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = _module(item)
        tier = module.split("/")[0]
        if tier in TIERS:
            item.add_marker(tier)
        if module == FAULT_SUITE:
            item.add_marker("faults")
    items.sort(key=_rank)  # stable: a module's tests keep their order, and a module stays in one piece


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n`: units of work are modules (the shared cluster's modules one unit), in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group_of_nodeid(nodeid)

    config.option.loadscopereorder = False  # keep the order of `pytest_collection_modifyitems`: longest first
    return ModuleGroupScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Each phase's report on the item (`item.stash[PHASE_REPORTS]`): a fixture's teardown can tell
    whether its test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test failed so far (setup or call)."""
    reports = request.node.stash.get(PHASE_REPORTS, {})
    return any(report.failed for report in reports.values())
