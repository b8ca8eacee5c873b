"""Drift: how far this run's data is from the data the served model learned from, measured between their
profiles (`tasks.data.profile`) and laid out as the tables the data gate's drift suites check.

Measures (each 0 for identical data):
- per genre, the change of its share of movies (now - then, in share points);
- `length_distance`: Kolmogorov-Smirnov distance between the overview-length distributions on the
  profile's fixed bins (the largest gap between the two cumulative shares; 0 to 1);
- `language_distance`: total variation distance between the original_language shares (0 to 1), over the
  languages both profiles name, the rest pooled;
- `new_share`, `gone_share`, `changed_share`: from the two id sketches, compared on the smaller
  threshold: movies now that were not there then (of the movies now), movies then that are gone (of the
  movies then), and movies in both whose overview or genres changed (of the movies in both);
- `embedding_drift`: for each genre, 1 - cosine between its direction now and then (from the mean of all
  movies' vectors to the mean of the genre's, see the profile); the measure is the largest over the
  genres with EMBEDDING_MIN_MOVIES movies in both profiles (0 to 2). It is None when the two profiles'
  vectors come from different embedding modules.

A measure that cannot be computed (no languages, no vectors, an empty sketch) is None: the gate's
expectations skip a missing value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.data.profile import (
    KEY_SPACE,
    OTHER_LANGUAGES,
    PROFILE_FORMAT,
    genre_directions,
    sketch_entries,
)
from tasks.run_folder import PROFILE_FILE

MEASURES_TABLE = "drift"  # one row: a column per scalar measure
GENRES_TABLE = "drift_genres"  # one row per genre
DRIFT_TABLES = (MEASURES_TABLE, GENRES_TABLE)
GENRE_TOLERANCE = "max_genre_share_change"
# Scalar measure → the run param that bounds it (the drift suites say so with {"$PARAMETER": ...}).
MEASURE_TOLERANCES = {
    "length_distance": "max_length_distance",
    "language_distance": "max_language_distance",
    "new_share": "max_new_share",
    "gone_share": "max_gone_share",
    "changed_share": "max_changed_share",
    "embedding_drift": "max_embedding_drift",
}
TOLERANCE_PARAMS = (GENRE_TOLERANCE, *MEASURE_TOLERANCES.values())
# A genre's direction from fewer movies is mostly noise: in two disjoint halves of the real sample, 68
# documentaries each, Documentary's directions already differ by 0.08 (USE).
EMBEDDING_MIN_MOVIES = 50


def genre_shares(profile: Mapping[str, Any]) -> dict[str, float]:
    rows = profile["rows"]
    return {genre: (count / rows if rows else 0.0) for genre, count in profile["genres"].items()}


def length_distance(now: Sequence[int], then: Sequence[int]) -> float | None:
    """Kolmogorov-Smirnov distance between two histograms on the same bins; None if one is empty."""
    now_counts, then_counts = np.asarray(now, np.float64), np.asarray(then, np.float64)
    if now_counts.sum() == 0 or then_counts.sum() == 0:
        return None
    gaps = np.cumsum(now_counts) / now_counts.sum() - np.cumsum(then_counts) / then_counts.sum()
    return float(np.abs(gaps).max())


def language_distance(now: Mapping[str, int], then: Mapping[str, int]) -> float | None:
    """Total variation distance between two language counts; None if one is empty. A language one profile
    names and the other does not may hide in the other's OTHER_LANGUAGES: it is pooled there on both sides."""
    now_shares, then_shares = language_shares(now, then)
    if not now_shares or not then_shares:
        return None
    names = set(now_shares) | set(then_shares)
    return 0.5 * sum(abs(now_shares.get(n, 0.0) - then_shares.get(n, 0.0)) for n in names)


def language_shares(now: Mapping[str, int], then: Mapping[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """Both language counts as comparable shares: the languages that may hide in either's
    OTHER_LANGUAGES pooled there in both."""
    pooled = _maybe_in_other(now, then) | _maybe_in_other(then, now)
    return _shares(now, pooled), _shares(then, pooled)


def _maybe_in_other(counts: Mapping[str, int], other: Mapping[str, int]) -> set[str]:
    """The languages of `counts` that `other` does not name but may count in its OTHER_LANGUAGES."""
    return {name for name in counts if name not in other} if OTHER_LANGUAGES in other else set()


def _shares(counts: Mapping[str, int], pooled: set[str]) -> dict[str, float]:
    total = sum(counts.values())
    shares: dict[str, float] = {}
    for name, count in counts.items():
        key = OTHER_LANGUAGES if name in pooled else name
        shares[key] = shares.get(key, 0.0) + count / total
    return shares


def sketch_shares(now: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, float | None]:
    """new_share, gone_share and changed_share from two sketches, on the smaller of their thresholds."""
    limit = min(now["threshold"], then["threshold"]) * KEY_SPACE
    now_entries = {k: d for k, d in sketch_entries(now).items() if k < limit}
    then_entries = {k: d for k, d in sketch_entries(then).items() if k < limit}
    both = now_entries.keys() & then_entries.keys()
    changed = sum(now_entries[k] != then_entries[k] for k in both)
    return {
        "new_share": _share(len(now_entries) - len(both), len(now_entries)),
        "gone_share": _share(len(then_entries) - len(both), len(then_entries)),
        "changed_share": _share(changed, len(both)),
    }


def embedding_drifts(now: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, float]:
    """{genre: 1 - cosine of its direction now and then} for the genres with EMBEDDING_MIN_MOVIES movies in
    both profiles; empty when either has no vectors or they come from different modules."""
    now_vectors, then_vectors = now.get("embeddings"), then.get("embeddings")
    if not now_vectors or not then_vectors or now_vectors["module"] != then_vectors["module"]:
        return {}
    now_directions, then_directions = genre_directions(now_vectors), genre_directions(then_vectors)
    drifts = {}
    for genre in now_directions.keys() & then_directions.keys():
        if min(now["genres"].get(genre, 0), then["genres"].get(genre, 0)) >= EMBEDDING_MIN_MOVIES:
            drifts[genre] = 1.0 - _cosine(now_directions[genre], then_directions[genre])
    return drifts


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else 0.0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class ServedProfile:
    """The served version and the profile of its training data, as the registry holds them."""

    version: int | None  # None: nothing is served
    profile: Mapping[str, Any] | None  # None: that version has no data profile


NOTHING_SERVED = ServedProfile(None, None)


@dataclass(frozen=True)
class Check:
    """What the data gate decided on one drift column: the bound of its expectation, and the rows (of its
    drift table) that broke it."""

    tolerance: float | None
    failed_rows: frozenset[int]


@dataclass(frozen=True)
class GenreDrift:
    genre: str
    share_now: float | None  # None: the genre is not in that profile
    share_then: float | None
    embedding_drift: float | None

    @property
    def change(self) -> float | None:
        if self.share_now is None or self.share_then is None:
            return None
        return self.share_now - self.share_then


def skip_reason(served: ServedProfile, force: bool) -> str | None:
    """Why the drift checks do not run, or None when they do."""
    if force:
        return "the force param is set: drift from the served version's training data is accepted"
    if served.version is None:
        return "no served version"
    if served.profile is None:
        return f"served version {served.version} has no {PROFILE_FILE}"
    if served.profile.get("format") != PROFILE_FORMAT:
        found = served.profile.get("format")
        return (
            f"served version {served.version}'s {PROFILE_FILE} has format {found!r}; this code reads {PROFILE_FORMAT}"
        )
    return None


@dataclass(frozen=True)
class Drift:
    """This run's data (`now`) against served version `version`'s training data (`then`)."""

    version: int
    now: Mapping[str, Any]
    then: Mapping[str, Any]
    genres: tuple[GenreDrift, ...]
    measures: Mapping[str, float | None]  # MEASURE_TOLERANCES' measures

    def tables(self) -> dict[str, Any]:
        """The drift tables the drift suites check, as pandas frames (None values are NaN)."""
        import pandas as pd

        numbers = {
            "share_now": [g.share_now for g in self.genres],
            "share_then": [g.share_then for g in self.genres],
            "change": [g.change for g in self.genres],
            "abs_change": [None if g.change is None else abs(g.change) for g in self.genres],
            "embedding_drift": [g.embedding_drift for g in self.genres],
        }
        genres = pd.DataFrame(
            {"genre": [g.genre for g in self.genres]}
            | {name: pd.Series(values, dtype="float64") for name, values in numbers.items()}
        )
        measures = pd.DataFrame({name: pd.Series([value], dtype="float64") for name, value in self.measures.items()})
        return {GENRES_TABLE: genres, MEASURES_TABLE: measures}


def drift_from(profile: Mapping[str, Any], served: ServedProfile, force: bool) -> tuple[Drift | None, str | None]:
    """(`profile`'s drift from the served version's training data, None) or (None, why it is not checked)."""
    reason = skip_reason(served, force)
    if reason is not None or served.profile is None or served.version is None:
        return None, reason
    return compare_profiles(profile, served.profile, served.version), None


def compare_profiles(now: Mapping[str, Any], then: Mapping[str, Any], version: int) -> Drift:
    """Every drift measure of `now` against `then`, the profile of served version `version`'s data."""
    drifts = embedding_drifts(now, then)
    shares_now, shares_then = genre_shares(now), genre_shares(then)
    genres = tuple(
        GenreDrift(g, shares_now.get(g), shares_then.get(g), drifts.get(g))
        for g in dict.fromkeys([*shares_now, *shares_then])
    )
    lengths_now, lengths_then = now["overview_lengths"], then["overview_lengths"]
    same_bins = lengths_now["edges"] == lengths_then["edges"]
    both_languages = "languages" in now and "languages" in then
    measures = {
        "length_distance": length_distance(lengths_now["counts"], lengths_then["counts"]) if same_bins else None,
        "language_distance": language_distance(now["languages"], then["languages"]) if both_languages else None,
        **sketch_shares(now["sketch"], then["sketch"]),
        "embedding_drift": max(drifts.values(), default=None),
    }
    return Drift(version, now, then, genres, measures)


def drift_record(drift: Drift, checks: Mapping[tuple[str, str], Check]) -> dict[str, Any]:
    """What `drift.json` holds for a checked run: each measure in words with the gate's verdict (from
    `checks`, {(table, column): Check}), each failure in a sentence, and the figure's data. `passed` says
    whether GX found a failed row; the caller overrides it with GX's verdict on the whole suites."""
    failures = [
        failure_message(drift, table, column, row, check.tolerance)
        for (table, column), check in checks.items()
        for row in sorted(check.failed_rows)
    ]
    return {
        "checked": True,
        "served_version": drift.version,
        "passed": not failures,
        "measures": compact_measures(drift),
        "rows": _genre_rows(drift, checks) + _measure_rows(drift, checks),
        "failures": failures,
        "genres": [{"genre": g.genre, "share_now": g.share_now, "share_then": g.share_then} for g in drift.genres],
        "lengths": {
            "edges": drift.now["overview_lengths"]["edges"],
            "now": drift.now["overview_lengths"]["counts"],
            "then": drift.then["overview_lengths"]["counts"],
        },
    }


def compact_measures(drift: Drift) -> dict[str, Any]:
    """The measures in a few numbers, for the validate summary and so the manifest."""
    changed = [g for g in drift.genres if g.change is not None]
    largest = max(changed, key=lambda g: abs(g.change or 0.0), default=None)
    measures: dict[str, Any] = {name: _round(value) for name, value in drift.measures.items()}
    if largest is not None:
        measures["genre_share_change"] = {"genre": largest.genre, "change": _round(largest.change)}
    return measures


def failure_message(drift: Drift, table: str, column: str, row: int, tolerance: float | None) -> str:
    """One failed drift check in a sentence: the field, its value now and in the served version's training
    data (or what the pair's measure says), and the tolerance."""
    if table == GENRES_TABLE:
        g = drift.genres[row]
        if column == "embedding_drift":
            return f"{g.genre} embedding drift {_num(g.embedding_drift)} (max {_num(tolerance)})"
        then = f"in version {drift.version}'s training data"
        return f"{g.genre} share {_pct(g.share_now)} vs {_pct(g.share_then)} {then} (max change {_points(tolerance)})"
    words = measure_words(drift, column)
    if words is None:
        return f"{table} {column} {_num(drift.measures.get(column))} (max {_num(tolerance)})"
    return f"{words.field} {words.value}{words.detail} (max {words.tolerance(tolerance)})"


@dataclass(frozen=True)
class MeasureWords:
    """A scalar measure in words, for the gate's message and the report's table."""

    field: str  # e.g. "overview length distance (KS)"
    value: str  # the measure, formatted
    now: str  # what the data is like now, e.g. "mean 40 characters"; "" when only the measure says it
    then: str  # the same of the served version's training data
    detail: str  # what follows the value in a sentence
    as_share: bool = False  # the measure and its tolerance read as percentages

    def tolerance(self, tolerance: float | None) -> str:
        if tolerance is not None and self.as_share:
            return f"{tolerance * 100:.3g}%"
        return _num(tolerance)


def measure_words(drift: Drift, measure: str) -> MeasureWords | None:
    """A scalar measure of `drift` in words; None for a measure this module does not know."""
    value, version = drift.measures.get(measure), drift.version
    then = f"in version {version}'s training data"
    if measure == "length_distance":
        now_mean, then_mean = (p["overview_lengths"]["mean"] for p in (drift.now, drift.then))
        now, before = f"mean {_num(now_mean, 0)} characters", f"mean {_num(then_mean, 0)} characters"
        return MeasureWords("overview length distance (KS)", _num(value), now, before, f": {now} vs {before} {then}")
    if measure == "language_distance":
        name, now_share, then_share = _largest_language_change(drift)
        now, before = f"{name} {_pct(now_share)}", f"{name} {_pct(then_share)}"
        field = "original_language distance (total variation)"
        return MeasureWords(field, _num(value), now, before, f": {now} vs {_pct(then_share)} {then}")
    if measure == "embedding_drift":
        worst = max(drift.genres, key=lambda g: -1.0 if g.embedding_drift is None else g.embedding_drift)
        at = f"at {worst.genre}" if worst.embedding_drift is not None else "not measured"
        detail = f" {at}, 1 - cosine of the genre's direction now and {then}"
        return MeasureWords("embedding drift", _num(value), f"largest {at}", "", detail)
    sentences = {  # (field, what the share is of, the rest of the sentence)
        "new_share": ("new movies", "of this run's movies", f" of this run's movies, not {then}"),
        "gone_share": ("gone movies", f"of version {version}'s movies", f" of the movies {then}, not in this run's"),
        "changed_share": (
            "changed movies",
            "of the movies in both",
            f" of the movies also {then}, with another overview or genres",
        ),
    }
    if measure in sentences:
        field, of_what, detail = sentences[measure]
        return MeasureWords(field, _pct(value), of_what, "", detail, as_share=True)
    return None


def _largest_language_change(drift: Drift) -> tuple[str, float, float]:
    now, then = language_shares(drift.now.get("languages", {}), drift.then.get("languages", {}))
    name = max(set(now) | set(then), key=lambda n: abs(now.get(n, 0.0) - then.get(n, 0.0)), default="-")
    return name, now.get(name, 0.0), then.get(name, 0.0)


def _genre_rows(drift: Drift, checks: Mapping[tuple[str, str], Check]) -> list[dict[str, Any]]:
    check = checks.get((GENRES_TABLE, "abs_change"))
    failed = {row for (table, _), c in checks.items() if table == GENRES_TABLE for row in c.failed_rows}
    return [
        {
            "field": f"{g.genre} share",
            "now": _pct(g.share_now),
            "then": _pct(g.share_then),
            "measure": "-" if g.change is None else f"{g.change * 100:+.1f} points",
            "tolerance": _points(check.tolerance) if check else "not checked",
            "passed": None if check is None else row not in failed,
        }
        for row, g in enumerate(drift.genres)
    ]


def _measure_rows(drift: Drift, checks: Mapping[tuple[str, str], Check]) -> list[dict[str, Any]]:
    rows = []
    for measure, value in drift.measures.items():
        words = measure_words(drift, measure) or MeasureWords(measure, _num(value), "", "", "")
        check = checks.get((MEASURES_TABLE, measure))
        rows.append(
            {
                "field": words.field,
                "now": words.now or "-",
                "then": words.then or "-",
                "measure": words.value,
                "tolerance": words.tolerance(check.tolerance) if check else "not checked",
                "passed": None if check is None else not check.failed_rows,
            }
        )
    return rows


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _points(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.3g} points"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or value != value:  # None or NaN: not measurable
        return "n/a"
    return f"{value:.{digits}g}" if digits else f"{value:.0f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
