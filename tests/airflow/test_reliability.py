"""Faults across stages, through the tasks' real code paths and through real Airflow (`dag.test()`): a
training process killed mid-export, a served model that cannot be loaded, hostile params from the
trigger form. Whatever happens, the served model and its history stay as they were."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.run_folder import RunFolder
from tasks.stage_records import read_stage_records
from tests.airflow.dag_runs import alert_texts, run_dag
from tests.sample_data import PROJECT_ROOT, quick_conf

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder` (the lock file aside): equal snapshots, untouched folder."""
    if not folder.exists():
        return {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".promote.lock")
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# ---------------------------------------------------------------- SIGKILL of the training task

# The train task's own code path (RunConfig from params, train_candidate), in a process of its own.
_TRAIN = """
import sys
from pathlib import Path
from tasks.config import RunConfig, Settings
from tasks.embedding.cache import EmbeddingCache
from tasks.model.train import train_candidate

prepared, candidates, module, cache = (Path(a) for a in sys.argv[1:5])
settings = Settings(model_dir=candidates, artifacts_dir=candidates, dataset_url="x", data_root=candidates)
config = RunConfig.from_params({"epochs": 2, "hidden_units": 16}, settings)
train_candidate(prepared, candidates, config, {"index": 0, "wide": False}, str(module), EmbeddingCache(cache, "glove"))
"""


def test_training_killed_mid_export_leaves_nothing_its_retry_reuses(
    prepared_sample: Path, glove_module: str, tmp_path: Path
) -> None:
    """SIGKILL while the SavedModel is being written: no `model/` appears, only a hidden temporary folder
    (kept for diagnosis); the retry trains and exports a complete model of its own."""
    candidates = tmp_path / "candidates"
    args = [sys.executable, "-c", _TRAIN, str(prepared_sample), str(candidates), glove_module, str(tmp_path / "cache")]
    first = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(candidates.glob("0/.model.*.tmp/*")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.poll() is None, "training ended before its export could be interrupted"
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    half = list(candidates.glob("0/.model.*.tmp"))
    assert len(half) == 1 and not (candidates / "0" / "model").exists()
    assert not (candidates / "0" / "training.json").exists()

    retry = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr[-2000:]
    model = candidates / "0" / "model"
    assert json.loads((candidates / "0" / "training.json").read_text())["model_path"] == str(model)
    assert half[0].is_dir(), "the killed try's half export stays aside for diagnosis, never renamed into place"

    from tasks.tensorflow_runtime import tf

    outputs = tf.saved_model.load(str(model)).signatures["serving_default"](tf.constant(["A heist goes wrong."]))
    assert outputs["probabilities"].shape == (1, 9)


# ---------------------------------------------------------------- through Airflow


def _broken_champion(served: Path) -> None:
    """Version 1 in production with a SavedModel that does not load, and its history line."""
    from tasks.config import DEFAULT_GENRES

    version = served / "1"
    (version / "assets").mkdir(parents=True)
    (version / "variables").mkdir()
    (version / "saved_model.pb").write_bytes(b"\x08\x01 truncated by a bad copy")
    (version / "assets" / "labels.txt").write_text("".join(f"{g}\n" for g in DEFAULT_GENRES))
    (version / "manifest.json").write_text(json.dumps({"version": 1}))
    (served / "history.jsonl").write_text(json.dumps({"event": "promote", "version": 1, "by": "earlier"}) + "\n")


def test_an_unloadable_champion_blocks_promotion_and_alerts(dag, dirs, inbox, sample_csv: Path, glove_module: str):
    served = dirs["models"] / "movie_genre"
    _broken_champion(served)
    before = snapshot(served)
    states = run_dag(dag, quick_conf(sample_csv, epochs=2, auc_threshold=0.0, embedding_module=glove_module))
    assert states["run"] == "failed" and states["evaluate"] == "success"
    assert states["gate"] == "failed" and states["promote"] == "upstream_failed"
    assert snapshot(served) == before, "the served model is never silently replaced"
    (alert,) = alert_texts(inbox)
    assert "failed at the model gate" in alert and "ChampionError" in alert
    assert "version 1" in alert and "promotion is blocked until it is repaired or rolled back" in alert
    run_dir = next((dirs["artifacts"] / "runs").iterdir())
    assert (run_dir / "candidates" / "0" / "model" / "saved_model.pb").is_file(), "the challenger is kept"
    records = {r["task_id"]: r for r in read_stage_records(RunFolder(run_dir))}
    assert records["gate"]["state"] == "failed" and records["gate"]["final"], "no retries: its one try is final"
    assert records["gate"]["error"]["type"] == "ChampionError" and records["evaluate"]["state"] == "success"
    assert "promote" not in records, "a task that never ran records nothing"


@pytest.mark.parametrize(
    "conf",
    [
        {"epochs": -1},
        {"auc_threshold": 7},
        {"dataset_url": "gopher://127.0.0.1:6379/_FLUSHALL"},
        {"embedding_module": "../../../tmp/evil"},
        {"genres": ["Comedy", "../../etc/passwd"]},
        {"keep_versions": 0},
    ],
    ids=["negative_epochs", "threshold_7", "scheme", "module_traversal", "genre_traversal", "keep_0"],
)
def test_hostile_params_are_refused_before_any_work(dag, dirs, conf: dict) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    served = dirs["models"] / "movie_genre"
    with pytest.raises(ParamValidationError, match=next(iter(conf))):
        dag.test(run_conf=conf)
    assert not dirs["artifacts"].exists() and not served.exists()


def test_a_local_file_outside_the_data_root_fails_at_download(dag, dirs, sample_csv: Path) -> None:
    """The schema lets a file:// URL through; the download task refuses it, at once and without retries."""
    served = dirs["models"] / "movie_genre"
    states = run_dag(dag, quick_conf(sample_csv, dataset_url="file:///etc/passwd", embedding_module="x"))
    assert states["run"] == "failed" and states["download"] == "failed" and states["prepare"] == "upstream_failed"
    assert not served.exists()
    assert not list(dirs["artifacts"].rglob("movies_metadata.csv")), "nothing was copied"
    records = {r["task_id"]: r for r in read_stage_records(RunFolder(next((dirs["artifacts"] / "runs").iterdir())))}
    record = records["download"]
    assert (record["state"], record["final"], record["try_number"]) == ("failed", True, 1)
    assert record["error"] is not None and record["error"]["type"] == "DownloadError", "permanent: no retry comes"


# What Airflow's own API answers on loopback: the issue's probe read it back from the logs.
_HEALTH = b'{"metadatabase":{"status":"healthy"},"scheduler":{"status":"healthy","token":"s3cret-7f2e"}}'


@contextmanager
def _health_service() -> Iterator[tuple[str, list[str]]]:
    """An internal service on loopback answering every GET with _HEALTH; its URL and the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(_HEALTH)))
            self.end_headers()
            self.wfile.write(_HEALTH)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v2/monitor/health", asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def _echoes_the_answer(text: str) -> bool:
    return any(piece in text for piece in ("metadatabase", "healthy", "s3cret-7f2e"))


def test_an_internal_http_service_is_refused_at_download(dag, dirs, inbox, sample_csv: Path, caplog, capfd) -> None:
    """A dataset_url on loopback (the issue's probe): the download task refuses it before sending a request,
    names the setting that would admit it, and nothing of the service's answer reaches a log or an alert."""
    caplog.set_level(logging.DEBUG)
    with _health_service() as (url, asked):
        states = run_dag(dag, quick_conf(sample_csv, dataset_url=url, embedding_module="x"))
    assert states["run"] == "failed" and states["download"] == "failed" and states["prepare"] == "upstream_failed"
    assert asked == [], "the worker never sent the request"
    (alert,) = alert_texts(inbox)
    assert "which is loopback, not public" in alert and "GENRE_DOWNLOAD_ALLOWED_HOSTS" in alert
    output = capfd.readouterr()
    assert not _echoes_the_answer(alert + caplog.text + output.out + output.err)


def test_an_allowed_host_answering_json_fails_at_prepare_without_echoing_it(
    dag, dirs, inbox, sample_csv: Path, caplog, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same service admitted by GENRE_DOWNLOAD_ALLOWED_HOSTS: downloaded, then refused by prepare in
    words (JSON, not a CSV), its text in no log and no alert."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GENRE_DOWNLOAD_ALLOWED_HOSTS", "127.0.0.1")
    with _health_service() as (url, asked):
        states = run_dag(dag, quick_conf(sample_csv, dataset_url=url, embedding_module="x"))
    assert asked == ["/api/v2/monitor/health"]
    assert states["download"] == "success" and states["prepare"] == "failed"
    (alert,) = alert_texts(inbox)
    assert "the file looks like JSON, not a CSV" in alert
    output = capfd.readouterr()
    assert not _echoes_the_answer(alert + caplog.text + output.out + output.err)


@pytest.mark.parametrize("conf", [{"version": 0}, {"version": "../1"}, {"version": 1, "reason": ""}])
def test_rollback_params_are_refused_before_any_work(airflow_db, dirs, conf: dict) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    rollback = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["movie_genre_rollback"]
    with pytest.raises(ParamValidationError):
        rollback.test(run_conf=conf)
    assert not (dirs["models"] / "movie_genre").exists()


# ---------------------------------------------------------------- no unsafe deserialization


def test_no_unsafe_deserialization_in_the_code() -> None:
    """No eval/exec, no pickle, no numpy pickles, no unsafe YAML in what the project runs."""
    import ast

    banned_calls = {"eval", "exec", "compile", "__import__"}
    banned_modules = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"}
    unpicklers = ("yaml", "joblib", "torch")  # their load() unpickles or builds arbitrary objects
    found = []
    sources = [p for folder in ("tasks", "orchestration", "dags") for p in (PROJECT_ROOT / folder).rglob("*.py")]
    assert len(sources) > 10
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                builtin = node.func.id if isinstance(node.func, ast.Name) else None  # eval(), not re.compile()
                method = getattr(node.func, "attr", None)
                if builtin in banned_calls or (
                    method in ("load", "unsafe_load") and any(m in ast.unparse(node.func) for m in unpicklers)
                ):
                    found.append(f"{where} {ast.unparse(node)[:60]}")
                found += [
                    f"{where} allow_pickle=True"
                    for kw in node.keywords
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
                ]
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{where} import {n}" for n in names if n.split(".")[0] in banned_modules]
    assert found == []
