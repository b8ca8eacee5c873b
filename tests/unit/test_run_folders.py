"""A run's artifact folder is an injective function of its run id: no two runs share one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.config import Settings, run_folder_name
from tasks.errors import ConfigError

# Any text a run id can hold, lone surrogates (JSON allows them) included.
run_ids = st.text(alphabet=st.characters(exclude_categories=()), min_size=1, max_size=250)


@pytest.mark.parametrize(
    ("first", "second"),
    [("xss_coll:1", "xss_coll_1"), ("a+b", "a_b"), ("a~3A", "a:"), (".x", "~2Ex"), ("é" * 100, "é" * 101)],
)
def test_run_ids_that_differ_get_different_folders(first: str, second: str) -> None:
    assert run_folder_name(first) != run_folder_name(second)


def test_ordinary_run_ids_keep_a_readable_name() -> None:
    assert run_folder_name("scheduled__2026-12-06T00:00:00+00:00") == "scheduled__2026-12-06T00~3A00~3A00~2B00~3A00"
    assert run_folder_name("weekly_retrain-3.1") == "weekly_retrain-3.1"


@given(run_ids, run_ids)
def test_distinct_run_ids_never_share_a_folder(first: str, second: str) -> None:
    assert (run_folder_name(first) == run_folder_name(second)) == (first == second)


@given(run_ids)
def test_every_folder_name_is_one_safe_path_part(run_id: str) -> None:
    name = run_folder_name(run_id)
    assert name not in (".", "..") and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name.isascii() and len(name) <= 255


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_the_folder_is_created_below_the_runs_folder(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> None:
    artifacts = tmp_path_factory.mktemp("artifacts")
    folder = Settings.from_env({"GENRE_ARTIFACTS_DIR": str(artifacts)}).run_dir(run_id)
    folder.mkdir(parents=True)
    assert folder.parent == artifacts / "runs" and [p.name for p in (artifacts / "runs").iterdir()] == [folder.name]


def test_an_empty_run_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty run id"):
        run_folder_name("")


def test_a_long_run_id_keeps_its_prefix_and_a_hash(tmp_path: Path) -> None:
    long_ids = ["x" * 250, "x" * 249 + "y", ":" * 250]
    names = [run_folder_name(run_id) for run_id in long_ids]
    assert len(set(names)) == 3 and all(len(n) <= 200 and "~~" in n for n in names)
    assert names[0].startswith("x" * 100)
    assert not names[2].split("~~")[0].endswith(("~", "~3")), "an escape is never cut in half"
