from pathlib import Path

import pytest

from tasks.artifacts import atomic_dir, atomic_path, write_json


def test_artifacts_are_readable_by_other_users(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {})
    with atomic_dir(tmp_path / "folder") as folder:
        (folder / "x").write_text("x")
    assert (tmp_path / "a.json").stat().st_mode & 0o044 == 0o044
    assert (tmp_path / "folder").stat().st_mode & 0o055 == 0o055


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{") and '"version": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_a_failed_folder_leaves_the_old_folder(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "v").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as folder:
        (folder / "v").write_text("2")
        raise RuntimeError("crash mid-export")
    assert (tmp_path / "model" / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
