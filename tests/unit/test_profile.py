"""The data profile and the drift distances, each on tiny data whose answer is known by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.drift import (
    EMBEDDING_MIN_MOVIES,
    compare_profiles,
    embedding_drifts,
    genre_shares,
    language_distance,
    length_distance,
    sketch_shares,
)
from tasks.data.prepare import MOVIES_FILE, prepare_dataset
from tasks.data.profile import (
    KEY_SPACE,
    LENGTH_EDGES,
    PROFILE_BATCH_ROWS,
    SKETCH_IDS,
    EmbeddingSource,
    build_profile,
    content_digest,
    genre_directions,
    id_key,
    sketch_entries,
    top_counts,
)
from tests.sample_data import write_rows

COMEDY, HORROR = "[{'id': 35, 'name': 'Comedy'}]", "[{'id': 27, 'name': 'Horror'}]"
E1, E2, E3 = np.eye(3, dtype=np.float32)


def _movies(path: Path, rows: list[dict]) -> Path:
    """A movies.parquet as prepare writes it (id, overview, split, genres as 0/1), from `rows`."""
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "overview": pa.array([r["overview"] for r in rows], pa.string()),
            "split": pa.array(["train"] * len(rows), pa.string()),
            "Comedy": pa.array([r.get("Comedy", 0) for r in rows], pa.int8()),
            "Horror": pa.array([r.get("Horror", 0) for r in rows], pa.int8()),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / MOVIES_FILE)
    return path / MOVIES_FILE


def _vectors(by_text: dict[str, np.ndarray], module: str = "m") -> EmbeddingSource:
    return EmbeddingSource(module, lambda texts: np.stack([by_text[t] for t in texts]))


def test_profile_of_a_small_prepared_file(tmp_path: Path) -> None:
    header = ["id", "overview", "genres", "original_language"]
    rows = [
        ["1", "Short", COMEDY, "en"],  # 5 characters: bin [0, 8)
        ["2", "Ten chars.", COMEDY, "en"],  # 10: bin [8, 11)
        ["3", "x" * 100, COMEDY, "fr"],  # 100: bin [91, 128)
        ["4", "y" * 300, HORROR, ""],  # 300: bin [256, 362); no language
        ["5", "z" * 300, HORROR, "de"],
        ["6", "w" * 300, HORROR, "en"],
    ]
    prepare_dataset(
        write_rows(tmp_path / "raw.csv", header, rows), tmp_path / "prepared", ["Comedy", "Horror"], 0.2, 0.1
    )
    # Comedy overviews point along E1 (one not normalised: the profile normalises), Horror ones along E2.
    vectors = {r[1]: (3 * E1 if r[0] == "1" else E1) if r[2] == COMEDY else E2 for r in rows}
    profile = build_profile(tmp_path / "prepared" / MOVIES_FILE, _vectors(vectors))

    assert profile["rows"] == 6 and profile["genres"] == {"Comedy": 3, "Horror": 3}
    counts = dict(zip(LENGTH_EDGES, profile["overview_lengths"]["counts"], strict=True))
    assert {edge: n for edge, n in counts.items() if n} == {0: 1, 8: 1, 91: 1, 256: 3}
    assert profile["overview_lengths"]["mean"] == pytest.approx((5 + 10 + 100 + 900) / 6)
    assert profile["languages"] == {"en": 3, "(none)": 1, "de": 1, "fr": 1}
    sketch = profile["sketch"]
    assert sketch["threshold"] == 1.0, "a small file keeps every movie in its sketch"
    assert sketch_entries(sketch) == {
        id_key(int(r[0])): content_digest(r[1], ["Comedy"] if r[2] == COMEDY else ["Horror"]) for r in rows
    }
    # Overall mean (E1 + E2) / 2: Comedy's offset is (E1 - E2) / 2, Horror's its opposite.
    directions = genre_directions(profile["embeddings"])
    assert directions["Comedy"] == pytest.approx([2**-0.5, -(2**-0.5), 0], abs=0.01)
    assert directions["Horror"] == pytest.approx([-(2**-0.5), 2**-0.5, 0], abs=0.01)
    assert profile["embeddings"]["genres"]["Comedy"]["norm"] == pytest.approx(2**-0.5)
    assert profile["embeddings"]["module"] == "m"


def test_a_file_without_languages_or_vectors_has_neither_section(tmp_path: Path) -> None:
    profile = build_profile(_movies(tmp_path, [{"id": 1, "overview": "A film.", "Comedy": 1}]))
    assert "languages" not in profile and "embeddings" not in profile
    assert profile["genres"] == {"Comedy": 1, "Horror": 0}


def test_top_counts_pool_the_rest_as_other() -> None:
    counts = Counter({"en": 10, "fr": 3, "de": 3, "it": 1, "ja": 1})
    assert top_counts(counts, 3) == {"en": 10, "de": 3, "fr": 3, "(other)": 2}, "ties by name"
    assert top_counts(counts, 10) == dict(counts)


def test_length_distance_is_kolmogorov_smirnov_on_the_bins() -> None:
    assert length_distance([1, 1, 0, 0], [0, 0, 1, 1]) == 1.0
    assert length_distance([2, 1, 1], [1, 1, 2]) == pytest.approx(0.25)  # cumulative .5 .75 1 vs .25 .5 1
    assert length_distance([5, 5], [1, 1]) == 0.0, "shares, not counts"
    assert length_distance([0, 0], [1, 1]) is None


def test_language_distance_is_total_variation_over_the_languages_both_name() -> None:
    assert language_distance({"en": 8, "fr": 2}, {"en": 5, "fr": 5}) == pytest.approx(0.3)
    # de may hide in "other" then, so it is pooled there; fr then is surely 0 now (nothing pooled now).
    assert language_distance({"en": 6, "de": 4}, {"en": 6, "fr": 2, "(other)": 2}) == pytest.approx(0.2)
    assert language_distance({"en": 1}, {"fr": 1}) == pytest.approx(1.0)
    assert language_distance({}, {"en": 1}) is None


def test_sketch_shares_count_new_gone_and_changed_movies(tmp_path: Path) -> None:
    then = [{"id": i, "overview": f"Movie {i}.", "Comedy": 1} for i in range(1, 11)]
    now = [{"id": i, "overview": f"Movie {i}.", "Comedy": 1} for i in range(3, 13)]
    now[2] = {"id": 5, "overview": "Movie 5, told anew.", "Comedy": 1}  # overview changed
    now[3] = {"id": 6, "overview": "Movie 6.", "Horror": 1}  # genres changed
    shares = sketch_shares(
        build_profile(_movies(tmp_path / "now", now))["sketch"],
        build_profile(_movies(tmp_path / "then", then))["sketch"],
    )
    assert shares == {"new_share": 0.2, "gone_share": 0.2, "changed_share": 0.25}


def test_sketches_compare_on_the_smaller_threshold(tmp_path: Path) -> None:
    """2,000 movies now (the sketch keeps about half) against 500 then (it keeps all): only ids both
    sketches would keep are compared, so the shares are unbiased."""
    now = build_profile(_movies(tmp_path / "now", [{"id": i, "overview": "x", "Comedy": 1} for i in range(1, 2001)]))
    then = build_profile(_movies(tmp_path / "then", [{"id": i, "overview": "x", "Comedy": 1} for i in range(1, 501)]))
    assert now["sketch"]["threshold"] == SKETCH_IDS / 2000 and then["sketch"]["threshold"] == 1.0
    kept = [i for i in range(1, 2001) if id_key(i) < now["sketch"]["threshold"] * KEY_SPACE]
    assert len(sketch_entries(now["sketch"])) == len(kept)
    expected_new = sum(i > 500 for i in kept) / len(kept)
    assert sketch_shares(now["sketch"], then["sketch"]) == {
        "new_share": pytest.approx(expected_new),
        "gone_share": 0.0,
        "changed_share": 0.0,
    }
    assert 0.7 < expected_new < 0.8, "three quarters of the movies are new, and the sample says so"


def _two_genres(path: Path, comedy: np.ndarray, horror: np.ndarray, module: str = "m") -> dict:
    """A profile of EMBEDDING_MIN_MOVIES comedies with vector `comedy` and as many horror films with `horror`."""
    rows = [{"id": i, "overview": f"Comedy {i}.", "Comedy": 1} for i in range(EMBEDDING_MIN_MOVIES)]
    rows += [{"id": 1000 + i, "overview": f"Horror {i}.", "Horror": 1} for i in range(EMBEDDING_MIN_MOVIES)]
    vectors = {r["overview"]: comedy if "Comedy" in r else horror for r in rows}
    return build_profile(_movies(path, rows), _vectors(vectors, module))


def test_embedding_drift_is_one_minus_the_cosine_of_each_genres_direction(tmp_path: Path) -> None:
    then = _two_genres(tmp_path / "then", E1, E2)
    assert embedding_drifts(_two_genres(tmp_path / "same", E1, E2), then) == pytest.approx(
        {"Comedy": 0.0, "Horror": 0.0}, abs=1e-3
    )
    # Genres swapped meanings: each direction points the other way.
    assert embedding_drifts(_two_genres(tmp_path / "swapped", E2, E1), then) == pytest.approx(
        {"Comedy": 2.0, "Horror": 2.0}, abs=1e-3
    )
    # Horror now means E3: Comedy's direction (E1 - E3)/2 against (E1 - E2)/2 has cosine 1/2, Horror's too.
    assert embedding_drifts(_two_genres(tmp_path / "new", E1, E3), then) == pytest.approx(
        {"Comedy": 0.5, "Horror": 0.5}, abs=1e-3
    )
    assert embedding_drifts(_two_genres(tmp_path / "other", E1, E2, module="other module"), then) == {}


def test_embedding_drift_leaves_out_genres_with_too_few_movies(tmp_path: Path) -> None:
    then = _two_genres(tmp_path / "then", E1, E2)
    rows = [{"id": i, "overview": f"Comedy {i}.", "Comedy": 1} for i in range(EMBEDDING_MIN_MOVIES)]
    rows += [{"id": 1000, "overview": "Horror 0.", "Horror": 1}]
    vectors = {r["overview"]: E1 if "Comedy" in r else E2 for r in rows}
    now = build_profile(_movies(tmp_path / "now", rows), _vectors(vectors))
    assert set(embedding_drifts(now, then)) == {"Comedy"}


def test_compare_profiles_lines_up_the_genres_and_every_measure(tmp_path: Path) -> None:
    then = _two_genres(tmp_path / "then", E1, E2)
    now = _two_genres(tmp_path / "now", E2, E1)
    drift = compare_profiles(now, then, version=3)
    assert genre_shares(now) == {"Comedy": 0.5, "Horror": 0.5}
    assert [(g.genre, g.change) for g in drift.genres] == [("Comedy", 0.0), ("Horror", 0.0)]
    assert drift.measures == {
        "length_distance": 0.0,
        "language_distance": None,  # no original_language column
        "new_share": 0.0,
        "gone_share": 0.0,
        "changed_share": 0.0,
        "embedding_drift": pytest.approx(2.0, abs=1e-3),
    }
    tables = drift.tables()
    assert tables["drift"].shape == (1, 6) and list(tables["drift_genres"]["genre"]) == ["Comedy", "Horror"]


def test_the_profile_of_200k_movies_stays_small_and_is_built_in_bounded_batches(tmp_path: Path) -> None:
    rows = 200_000
    genres = [f"Genre {g}" for g in range(9)]
    rng = np.random.default_rng(0)
    table = {
        "id": pa.array(np.arange(rows) + 1, pa.int64()),
        "overview": pa.array([f"Overview of movie {i}." for i in range(rows)], pa.string()),
        "split": pa.array(["train"] * rows, pa.string()),
        "original_language": pa.array([f"l{i % 40}" for i in range(rows)], pa.string()),
    }
    table |= {g: pa.array(rng.integers(0, 2, rows), pa.int8()) for g in genres}
    pq.write_table(pa.table(table), tmp_path / MOVIES_FILE)
    vectors = rng.standard_normal((101, 512)).astype(np.float32)
    batches: list[int] = []

    def vectors_of(texts: list[str]) -> np.ndarray:
        batches.append(len(texts))
        return vectors[[len(t) * 7 % 101 for t in texts]]

    profile = build_profile(tmp_path / MOVIES_FILE, EmbeddingSource("m", vectors_of))
    size = len(json.dumps(profile, indent=2, sort_keys=True))
    assert size <= 20_000, f"{size} bytes"
    assert sum(batches) == rows and max(batches) <= PROFILE_BATCH_ROWS
    assert 900 <= len(sketch_entries(profile["sketch"])) <= 1100
    assert set(profile["embeddings"]["genres"]) == set(genres)
    assert len(profile["languages"]) == 21 and profile["languages"]["(other)"] == rows // 2
