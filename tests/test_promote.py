from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from tasks.promote import MANIFEST_FILE, latest_version_dir, promote_model, versions


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    model = tmp_path / "run" / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return model


def test_versions_only_increase(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "models" / "movie_genre"
    first = promote_model(exported, served, {"dag_run_id": "a"})
    second = promote_model(exported, served, {"dag_run_id": "b"})
    assert (first["version"], second["version"]) == (1, 2)
    assert versions(served) == [1, 2]
    assert latest_version_dir(served) == served / "2"
    assert (served / "2" / "saved_model.pb").read_bytes() == b"graph"
    manifest = json.loads((served / "2" / MANIFEST_FILE).read_text())
    assert manifest["dag_run_id"] == "b" and manifest["version"] == 2


def test_leftovers_of_a_crashed_promotion_are_cleaned(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    (served / ".staging-1" / "variables").mkdir(parents=True)
    assert promote_model(exported, served, {})["version"] == 1
    assert sorted(p.name for p in served.iterdir() if not p.name.startswith(".promote")) == ["1"]


def test_failed_copy_leaves_no_version(tmp_path: Path) -> None:
    served = tmp_path / "movie_genre"
    with pytest.raises(FileNotFoundError):
        promote_model(tmp_path / "no-such-model", served, {})
    assert versions(served) == []
    assert not list(served.glob(".staging-*"))


def _promote_in_process(exported: str, served: str, queue: multiprocessing.Queue) -> None:
    queue.put(promote_model(Path(exported), Path(served), {})["version"])


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
    assert versions(served) == [1, 2, 3, 4]
