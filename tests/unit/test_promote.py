"""Promotion, history, rollback and retention on real folders and real processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.registry.promote import build_manifest, promote_model
from tasks.registry.rollback import list_models, rollback_model
from tasks.registry.versions import HISTORY_FILE, MANIFEST_FILE, ModelRegistry


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    model = tmp_path / "run" / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return model


def _promote(exported: Path, served: Path, run: str = "run", keep: int = 5, **manifest) -> dict:
    return promote_model(
        exported, served, {"dag_run_id": run, **manifest}, actor=f"dag_run:{run}", reason="test", keep_versions=keep
    )


def test_versions_only_increase_and_history_records_them(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "models" / "movie_genre"
    assert (_promote(exported, served, "a")["version"], _promote(exported, served, "b")["version"]) == (1, 2)
    registry = ModelRegistry(served)
    assert registry.versions() == [1, 2] and registry.serving_version() == 2
    assert (served / "2" / "saved_model.pb").read_bytes() == b"graph"
    assert registry.manifest(2)["dag_run_id"] == "b" and registry.manifest(2)["version"] == 2
    assert [(e["event"], e["version"], e["by"]) for e in registry.history()] == [
        ("promote", 1, "dag_run:a"),
        ("promote", 2, "dag_run:b"),
    ]


def test_leftovers_of_a_crashed_promotion_are_cleaned(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    (served / ".staging-deadbeef" / "variables").mkdir(parents=True)
    assert _promote(exported, served)["version"] == 1
    assert sorted(p.name for p in served.iterdir() if not p.name.startswith(".promote")) == ["1", HISTORY_FILE]


def test_failed_copy_leaves_nothing(tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    with pytest.raises(FileNotFoundError):
        _promote(tmp_path / "no-such-model", served)
    assert ModelRegistry(served).versions() == [] and ModelRegistry(served).history() == []
    assert not list(served.glob(".staging-*"))


def _promote_in_process(exported: str, served: str, queue: multiprocessing.Queue) -> None:
    queue.put(_promote(Path(exported), Path(served))["version"])


def test_concurrent_promotions_get_distinct_versions(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_promote_in_process, args=(str(exported), str(served), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(queue.get(timeout=5) for _ in workers) == [1, 2, 3, 4]
    assert ModelRegistry(served).versions() == [1, 2, 3, 4]
    assert len(ModelRegistry(served).history()) == 4


def test_sigkill_mid_promotion_keeps_the_served_version(exported: Path, tmp_path: Path) -> None:
    """A promotion killed while copying a large model leaves version 1 served; the next one recovers."""
    served = tmp_path / "movie_genre"
    _promote(exported, served)
    (exported / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(300 * 1024 * 1024))
    script = (
        "import sys; from pathlib import Path; from tasks.registry.promote import promote_model;"
        "promote_model(Path(sys.argv[1]), Path(sys.argv[2]), {}, actor='killed', reason='x', keep_versions=5)"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(exported), str(served)])
    deadline = time.monotonic() + 60
    while not list(served.glob(".staging-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    registry = ModelRegistry(served)
    assert registry.versions() == [1] and registry.serving_version() == 1
    assert [e["version"] for e in registry.history()] == [1]
    assert _promote(exported, served)["version"] == 2
    assert not list(served.glob(".staging-*"))


def test_rollback_republishes_as_newest_and_retention_keeps_the_right_folders(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    for run in "abc":
        _promote(exported, served, run, keep=3, metrics={"auc_micro": 0.8})
    result = rollback_model(served, 1, actor="cli:test", reason="v3 misbehaves", keep_versions=3)
    assert result == {"version": 4, "rollback_of": 1, "previously_served": 3, "retired": []}
    registry = ModelRegistry(served)
    assert registry.serving_version() == 4 and registry.manifest(4)["rollback_of"] == 1
    assert registry.manifest(4)["dag_run_id"] == "a"
    # Keep 3 = {3, 4, 5}; 1 stays too, because the served rollback (4) points to it.
    retired = _promote(exported, served, "d", keep=3)["retired"]
    assert retired == [2] and registry.versions() == [1, 3, 4, 5]
    events = [(e["event"], e["version"]) for e in registry.history()]
    assert events == [("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 4), ("promote", 5), ("retire", 2)]
    rows = {row["version"]: row for row in list_models(served)}
    assert rows[5]["serving"] and not rows[4]["serving"] and rows[4]["rollback_of"] == 1


def test_versions_never_reuse_a_number_retention_removed(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    for _ in range(3):
        _promote(exported, served, keep=1)
    assert ModelRegistry(served).versions() == [3]
    shutil.rmtree(served / "3")  # someone empties the folder by hand
    assert _promote(exported, served)["version"] == 4


def test_rollback_to_a_missing_version_is_refused(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    _promote(exported, served)
    with pytest.raises(ConfigError, match=r"version 7: present versions are \[1\]"):
        rollback_model(served, 7, actor="cli", reason="x", keep_versions=5)
    assert ModelRegistry(served).versions() == [1]


def test_rollback_without_a_version_serves_the_previous_one(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    for run in "abc":
        _promote(exported, served, run)
    result = rollback_model(served, None, actor="cli", reason="v3 misbehaves", keep_versions=5)
    assert result == {"version": 4, "rollback_of": 2, "previously_served": 3, "retired": []}
    assert ModelRegistry(served).manifest(4)["dag_run_id"] == "b"
    # Served now: 4, a copy of 2. The previous one is 3: a second rollback undoes the first.
    assert rollback_model(served, None, actor="cli", reason="undo", keep_versions=5)["rollback_of"] == 3


def test_rollback_without_a_version_needs_two_versions(exported: Path, tmp_path: Path) -> None:
    missing = tmp_path / "models" / "movie_genre"
    with pytest.raises(ConfigError) as raised:
        rollback_model(missing, None, actor="cli", reason="x", keep_versions=5)
    assert (
        str(raised.value) == f"nothing to roll back to: no promoted versions in {missing} (the folder does not exist)"
    )
    assert not missing.exists(), "a refused rollback creates no folder"
    _promote(exported, missing)
    history = (missing / HISTORY_FILE).read_bytes()
    with pytest.raises(ConfigError, match="nothing to roll back to: version 1 is the only promoted version"):
        rollback_model(missing, None, actor="cli", reason="x", keep_versions=5)
    assert ModelRegistry(missing).versions() == [1] and (missing / HISTORY_FILE).read_bytes() == history


def _refused(served: Path, version: int | None, message: str) -> None:
    """The rollback fails with `message`, publishes nothing and leaves the history byte for byte."""
    versions, history = ModelRegistry(served).versions(), (served / HISTORY_FILE).read_bytes()
    with pytest.raises(ConfigError) as raised:
        rollback_model(served, version, actor="cli", reason="x", keep_versions=5)
    assert str(raised.value) == message
    assert ModelRegistry(served).versions() == versions and (served / HISTORY_FILE).read_bytes() == history


def test_rollback_to_the_served_version_is_refused(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    _promote(exported, served, "a")
    _promote(exported, served, "b")
    _refused(served, 2, "version 2 is already served")


def test_rollback_to_the_version_a_served_rollback_copies_is_refused(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    _promote(exported, served, "a")
    _promote(exported, served, "b")
    rollback_model(served, 1, actor="cli", reason="v2 misbehaves", keep_versions=5)
    _refused(served, 1, "version 1 is already served (as version 3, a rollback of it)")


def test_rollback_to_a_model_served_through_other_rollbacks_is_refused(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    _promote(exported, served, "a")
    _promote(exported, served, "b")
    rollback_model(served, 1, actor="cli", reason="x", keep_versions=5)  # 3 = copy of 1
    _promote(exported, served, "c")  # 4
    rollback_model(served, 3, actor="cli", reason="x", keep_versions=5)  # 5 = copy of 3, itself a copy of 1
    _refused(
        served, 1, "version 1 is already served (as version 5, a rollback of version 3, which is a rollback of it)"
    )
    _promote(exported, served, "d")  # 6
    rollback_model(served, 1, actor="cli", reason="x", keep_versions=5)  # 7 = copy of 1
    _refused(served, 3, "version 3 is already served (as version 7: both are copies of version 1)")
    assert rollback_model(served, 6, actor="cli", reason="x", keep_versions=5)["version"] == 8


def test_extras_are_published_beside_the_manifest_and_follow_a_rollback(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "models" / "movie_genre"
    profile = tmp_path / "run" / "validation" / "data_profile.json"
    profile.parent.mkdir(parents=True)
    profile.write_text('{"rows": 3}')
    extras = {"data_profile.json": profile}
    promote_model(exported, served, {}, actor="a", reason="x", keep_versions=5, extras=extras)
    _promote(exported, served, "b")
    assert (served / "1" / "data_profile.json").read_text() == '{"rows": 3}'
    assert not (served / "2" / "data_profile.json").exists()
    rollback_model(served, 1, actor="cli", reason="x", keep_versions=5)
    assert (served / "3" / "data_profile.json").read_text() == '{"rows": 3}', "the profile of what it learned from"


def test_manifest_records_origin_code_and_packages() -> None:
    stages = {name: {"seconds": 1.5} for name in ("download", "prepare", "evaluate", "gate", "embedding_module")}
    stages["fingerprint"] = {"fingerprint": "f" * 64, "components": {"data": "d" * 64}, "retrain": True, "seconds": 1}
    manifest = build_manifest("run-1", {"epochs": 3}, stages)
    assert manifest["dag_run_id"] == "run-1" and manifest["params"] == {"epochs": 3}
    assert manifest["training_fingerprint"] == {"fingerprint": "f" * 64, "components": {"data": "d" * 64}}
    assert manifest["timings"]["download"] == 1.5
    assert "train" not in manifest["timings"], "no train summary, no train timing"
    assert manifest["packages"]["tensorflow"] and manifest["git_commit"]
    json.dumps(manifest)


def test_manifest_records_the_training_time_not_the_selections() -> None:
    stages = {name: {"seconds": 1.5} for name in ("download", "prepare", "evaluate", "gate", "embedding_module")}
    stages["fingerprint"] = {"fingerprint": "f" * 64, "components": {}, "seconds": 1}
    stages["train"] = {"seconds": 0.03, "training_seconds": {"total": 30.5, "per_candidate": [20.0, 10.5]}}
    timings = build_manifest("run-1", {}, stages)["timings"]
    assert timings["train"] == 30.5 and timings["train_per_candidate"] == [20.0, 10.5]


def test_cli_models_and_rollback(exported: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _promote(exported, models / "movie_genre", "weekly-1", metrics={"auc_micro": 0.8712})
    _promote(exported, models / "movie_genre", "weekly-2", metrics={"auc_micro": 0.8501})
    env = {**os.environ, "GENRE_MODEL_DIR": str(models)}
    rollback = subprocess.run(
        [sys.executable, "-m", "tasks", "rollback", "--to", "1", "--reason", "worse"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "version 1 is now served as version 3 (it replaces version 2)" in rollback.stdout
    listing = subprocess.run([sys.executable, "-m", "tasks", "models"], env=env, capture_output=True, text=True)
    lines = listing.stdout.splitlines()
    assert "0.8712" in lines[1] and "weekly-1" in lines[1]
    assert lines[3].split()[:2] == ["3", "*"] and "rollback of 1" in lines[3]
    assert json.loads((models / "movie_genre" / "3" / MANIFEST_FILE).read_text())["rollback_of"] == 1


# A promotion in a fresh process, run by the tests below under a real kernel fault; prints what it saw.
_PROMOTE_UNDER_FAULT = """
import hashlib, json, sys
from pathlib import Path
from tasks.registry.promote import promote_model
from tasks.registry.versions import ModelRegistry

exported, served, fault = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
promote_model(exported.parent / "small", served, {}, actor="before", reason="x", keep_versions=5)

def snapshot():
    files = sorted(p for p in served.rglob("*") if p.is_file() and p.name != ".promote.lock")
    return {str(p.relative_to(served)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

before = snapshot()
if fault == "history":  # the history can grow by 20 bytes only: the new line is cut short by EFBIG
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = (served / "history.jsonl").stat().st_size + 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    promote_model(exported, served, {}, actor="failing", reason="x", keep_versions=5)
    error = None
except OSError as err:
    error = err.strerror or str(err)  # shutil.Error (an OSError) lists the files that failed
registry = ModelRegistry(served)
print(json.dumps({"error": error, "unchanged": snapshot() == before, "versions": registry.versions(),
                  "history": [e["version"] for e in registry.history()],
                  "leftovers": [p.name for p in served.glob(".staging-*")]}))
"""


def _promote_under_fault(exported: Path, served: Path, fault: str, wrapper: list[str], grow: int = 0) -> dict:
    """Promote a copy of `exported` as version 1, then `exported` (grown by `grow` bytes) under `fault`."""
    shutil.copytree(exported, exported.parent / "small")
    (exported / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(grow))
    served.mkdir(parents=True)
    result = subprocess.run(
        [*wrapper, sys.executable, "-c", _PROMOTE_UNDER_FAULT, str(exported), str(served), fault],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_disk_full_while_staging_keeps_the_served_version_and_history(exported: Path, tmp_path: Path) -> None:
    """The model folder on a 1 MB tmpfs (a private mount namespace): copying a 2 MB model fills it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs")
    served = tmp_path / "models" / "movie_genre"
    mount = [
        "unshare",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"',
        "sh",
        str(served),
    ]
    seen = _promote_under_fault(exported, served, "disk", mount, grow=2 << 20)
    assert "No space left on device" in seen.pop("error")
    assert seen == {"unchanged": True, "versions": [1], "history": [1], "leftovers": []}


def test_a_history_write_cut_short_unpublishes_the_version(exported: Path, tmp_path: Path) -> None:
    """The version is renamed into view, then its history line cannot be written whole (the process's file
    size limit stands in for a disk that fills at that moment): the version is taken back, no half line stays."""
    served = tmp_path / "models" / "movie_genre"
    seen = _promote_under_fault(exported, served, "history", [])
    assert seen == {"error": "File too large", "unchanged": True, "versions": [1], "history": [1], "leftovers": []}
    assert _promote(exported, served)["version"] == 2, "the next promotion works and numbers on"


def test_a_retried_promote_of_one_run_publishes_once(exported: Path, tmp_path: Path) -> None:
    """A promote try killed after publishing is retried by Airflow: the retry returns that version."""
    served = tmp_path / "movie_genre"
    first, retry = (
        promote_model(exported, served, {}, actor="dag_run:a", reason="x", keep_versions=5, once_per_actor=True)
        for _ in range(2)
    )
    assert first["version"] == retry["version"] == 1
    assert ModelRegistry(served).versions() == [1] and len(ModelRegistry(served).history()) == 1
    other = promote_model(exported, served, {}, actor="dag_run:b", reason="x", keep_versions=5, once_per_actor=True)
    assert other["version"] == 2
