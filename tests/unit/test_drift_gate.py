"""The data gate's drift checks, end to end on the real sample: the pipeline's prepare, embed (the small
GloVe module, into a real embedding cache) and validate steps, real Great Expectations, and the served
version's data profile read from a real registry folder, as promotion leaves it. Last week's data is the
sample less a random 7%; this week's is the sample less another random 2%, so about 7% of its movies are
new. Each bad week must fail the gate, its failure naming the field."""

from __future__ import annotations

import csv
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks import pipeline
from tasks.config import PARAM_SCHEMAS, Settings
from tasks.data.drift import MEASURE_TOLERANCES
from tasks.embedding.modules import module_fingerprint
from tasks.errors import DataGateError
from tasks.model.gate_outcome import gate_failure
from tasks.model.report import write_report
from tasks.run_folder import PROFILE_FILE, RunFolder
from tests.sample_data import write_rows

pytestmark = pytest.mark.slow

Rows = list[list[str]]
SERVED = 3  # the served version in these tests' registry


class World:
    """The sample's records, the runs' shared artifacts (so one embedding cache), and a registry each."""

    def __init__(self, root: Path, shared_csv: Path, glove_module: str) -> None:
        with shared_csv.open(encoding="utf-8", newline="") as handle:
            self.header, *self.rows = list(csv.reader(handle))
        self.root = root
        self.shared_csv = shared_csv
        self.embedding = {"path": glove_module, "fingerprint": module_fingerprint(glove_module)}

    def column(self, name: str) -> int:
        return self.header.index(name)

    def settings(self, registry: str) -> Settings:
        return Settings(
            model_dir=self.root / registry,
            artifacts_dir=self.root / "artifacts",
            dataset_url=str(self.shared_csv),
            data_root=self.shared_csv.parent,
        )

    def run(self, name: str, rows: Rows, registry: str = "models", **params: Any) -> tuple[Path, Any]:
        """Prepare, embed and validate `rows` as run `name` against `registry`'s served version: (the run's
        folder, the validate summary or the DataGateError)."""
        settings = self.settings(registry)
        raw = write_rows(self.root / "csv" / f"{name}.csv", self.header, rows)
        run = pipeline.RunContext.from_params(name, params, settings)
        prepared = pipeline.prepare(run, {"path": str(raw)})
        pipeline.embed(run, prepared, self.embedding)
        try:
            return run.folder.path, pipeline.validate(run, prepared, self.embedding)
        except DataGateError as err:
            return run.folder.path, err

    def serve(self, run_dir: Path | None, version: int, registry: str) -> None:
        """A promoted version `version` in `registry`, with `run_dir`'s data profile as promote copies it."""
        folder = self.settings(registry).served_model_dir / str(version)
        folder.mkdir(parents=True)
        if run_dir is not None:
            shutil.copy(run_dir / "validation" / PROFILE_FILE, folder / PROFILE_FILE)


def _without(rows: Rows, share: float, seed: int, keep: Callable[[int], bool] = lambda i: False) -> Rows:
    """`rows` less a random `share` of them, never those `keep` keeps."""
    candidates = [i for i in range(len(rows)) if not keep(i)]
    dropped = set(random.Random(seed).sample(candidates, round(share * len(rows))))
    return [row for i, row in enumerate(rows) if i not in dropped]


@pytest.fixture(scope="module")
def world(shared_csv: Path, glove_module: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("drift"), shared_csv, glove_module)


@pytest.fixture(scope="module")
def last_week(world: World) -> Path:
    """Version 3's training data: the sample less a random 7%; nothing was served when it was checked."""
    run_dir, summary = world.run("last_week", _without(world.rows, 0.07, seed=1))
    assert summary["drift"] == {"checked": False, "reason": "no served version"}
    world.serve(run_dir, SERVED, "models")
    return run_dir


@pytest.fixture(scope="module")
def this_week_rows(world: World, last_week: Path) -> Rows:
    """The sample less another random 2% (none of those last week lacked): 5-10% of it is new."""
    rows = world.rows
    last = set(map(tuple, _without(rows, 0.07, seed=1)))
    return _without(rows, 0.02, seed=2, keep=lambda i: tuple(rows[i]) not in last)


def _well_formed(world: World, rows: Rows, change: Callable[[list[str]], list[str]]) -> Rows:
    return [change(list(row)) if len(row) == len(world.header) else row for row in rows]


def _failures(outcome: Any) -> list[str]:
    assert isinstance(outcome, DataGateError), f"the gate passed: {outcome}"
    return outcome.failed_expectations


def _report(world: World, run_dir: Path) -> str:
    """The run's report.html, as the report step writes it for a run that trained nothing."""
    served = world.settings("models").served_model_dir
    summary = write_report(RunFolder(run_dir), None, served, dag_id="movie_genre_retrain", run_id="test", version=None)
    return Path(summary["path"]).read_text(encoding="utf-8")


def _ids(run_dir: Path) -> set[int]:
    return set(pq.read_table(run_dir / "prepared" / "movies.parquet", columns=["id"]).column("id").to_pylist())


def test_an_ordinary_week_passes_with_the_default_params(world: World, last_week: Path, this_week_rows: Rows) -> None:
    run_dir, summary = world.run("ordinary_week", this_week_rows)
    assert not isinstance(summary, DataGateError), summary
    drift = summary["drift"]
    assert drift["checked"] and drift["passed"] and drift["served_version"] == SERVED
    assert set(summary["suites"]) >= {"drift", "drift_genres"}
    truly_new = len(_ids(run_dir) - _ids(last_week)) / len(_ids(run_dir))
    assert 0.05 <= truly_new <= 0.10
    measures = drift["measures"]
    assert measures["new_share"] == pytest.approx(truly_new, abs=0.03), "the sketch estimates the new share"
    # No false alarm, by a wide margin: each measure is below half its tolerance.
    for measure, param in MEASURE_TOLERANCES.items():
        assert measures[measure] <= PARAM_SCHEMAS[param]["default"] / 2, (measure, measures[measure])
    assert abs(measures["genre_share_change"]["change"]) <= PARAM_SCHEMAS["max_genre_share_change"]["default"] / 2
    page = _report(world, run_dir)
    assert f"Drift from version {SERVED}'s training data: passed" in page
    assert page.count("data:image/png;base64,") == 1, "one drift figure"


def test_a_genre_that_lost_90_percent_of_its_movies_fails_by_name(
    world: World, last_week: Path, this_week_rows: Rows
) -> None:
    genres, pick = world.column("genres"), random.Random(3)
    rows = [r for r in this_week_rows if not ("'Thriller'" in r[genres] and pick.random() < 0.9)]
    _, outcome = world.run("thrillers_gone", rows)
    failures = _failures(outcome)
    thriller = [f for f in failures if f.startswith("drift: Thriller share ")]
    assert len(thriller) == 1, failures
    assert f"in version {SERVED}'s training data (max change 10 points)" in thriller[0]


def test_overviews_cut_to_40_characters_fail_on_their_length(
    world: World, last_week: Path, this_week_rows: Rows
) -> None:
    overview = world.column("overview")

    def cut(row: list[str]) -> list[str]:
        row[overview] = row[overview][:40]
        return row

    _, outcome = world.run("truncated", _well_formed(world, this_week_rows, cut))
    failures = _failures(outcome)
    assert any(f.startswith("drift: overview length distance (KS) ") for f in failures), failures
    assert any("mean 40 characters vs mean 3" in f for f in failures), failures


def test_overviews_shuffled_between_movies_fail_on_changed_movies_and_embedding_drift(
    world: World, last_week: Path, this_week_rows: Rows
) -> None:
    overview = world.column("overview")
    texts = [r[overview] for r in this_week_rows if len(r) == len(world.header)]
    random.Random(4).shuffle(texts)
    shuffled = iter(texts)

    def swap(row: list[str]) -> list[str]:
        row[overview] = next(shuffled)
        return row

    run_dir, outcome = world.run("shuffled", _well_formed(world, this_week_rows, swap))
    failures = _failures(outcome)
    assert [f.split(" ")[1:3] for f in failures] == [["changed", "movies"], ["embedding", "drift"]], failures
    assert "share" not in " ".join(failures), "the same texts and genres: no share and no length changed"

    page = _report(world, run_dir)
    assert f"Drift from version {SERVED}'s training data: FAILED" in page
    assert "<td>changed movies</td>" in page and page.count("<td>FAILED</td>") == 2
    assert page.count("data:image/png;base64,") == 1
    failure = gate_failure(RunFolder(run_dir))
    figures = failure.figures if failure else []
    assert figures == failures, "the alert words a drift failure as the gate does"


def test_a_file_of_60_percent_new_movies_fails_on_new_movies(world: World) -> None:
    """The served version learned from a random 40% of the sample; this week's file is all of it."""
    run_dir, _ = world.run("forty_percent", random.Random(5).sample(world.rows, 2000), registry="models_40")
    world.serve(run_dir, SERVED, "models_40")
    _, outcome = world.run("sixty_percent_new", world.rows, registry="models_40")
    failures = _failures(outcome)
    assert [f for f in failures if f.startswith("drift: new movies ")], failures
    assert not [f for f in failures if "gone movies" in f or "changed movies" in f], failures


def test_a_genre_given_to_other_movies_fails_on_the_embedding_drift_alone(
    world: World, last_week: Path, this_week_rows: Rows
) -> None:
    """Every Documentary label moved to as many other movies: shares, lengths and most movies stay as they
    were; only what Documentary means changed, which is what the embedding measure is for."""
    genres, label = world.column("genres"), "{'id': 99, 'name': 'Documentary'}"
    pick = random.Random(6)

    def move_label(rows: Rows) -> Rows:
        moved = [list(r) for r in rows]
        targets = [i for i, r in enumerate(moved) if len(r) == len(world.header) and r[genres].startswith("[{")]
        had = [i for i in targets if label in moved[i][genres]]
        for i in had:
            moved[i][genres] = moved[i][genres].replace(", " + label, "").replace(label + ", ", "")
            moved[i][genres] = moved[i][genres].replace(label, "")
        for i in pick.sample([i for i in targets if i not in had], len(had)):
            moved[i][genres] = moved[i][genres][:-1] + ", " + label + "]"
        return moved

    _, outcome = world.run("documentary_moved", move_label(this_week_rows))
    failures = _failures(outcome)
    assert len(failures) == 1 and failures[0].startswith("drift: embedding drift "), failures
    assert "at Documentary" in failures[0]


def test_force_accepts_the_drift_and_says_so(world: World, last_week: Path, this_week_rows: Rows) -> None:
    overview = world.column("overview")

    def cut(row: list[str]) -> list[str]:
        row[overview] = row[overview][:40]
        return row

    run_dir, summary = world.run("forced", _well_formed(world, this_week_rows, cut), force=True)
    assert not isinstance(summary, DataGateError), summary
    assert summary["drift"]["checked"] is False and "force" in summary["drift"]["reason"]
    assert set(summary["suites"]) == {"records", "movies", "genre_coverage"}
    assert (run_dir / "validation" / PROFILE_FILE).is_file(), "the profile is written on every run"
    page = _report(world, run_dir)
    assert "Drift checks skipped: the force param is set" in page


def test_a_served_version_without_a_profile_skips_the_drift_checks(world: World, this_week_rows: Rows) -> None:
    world.serve(None, 4, "models_without_profile")
    _, summary = world.run("no_profile", this_week_rows, registry="models_without_profile")
    assert summary["drift"] == {"checked": False, "reason": f"served version 4 has no {PROFILE_FILE}"}
