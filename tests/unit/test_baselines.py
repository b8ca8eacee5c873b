"""The baselines: one logistic regression per genre, fitted from zero or from last week's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier

from tasks.model.baselines import (
    EMBEDDING,
    TFIDF,
    GenreLogregs,
    fit_baselines,
    load_start,
)

GENRES = ["Action", "Comedy", "Drama"]
FEATURES = {TFIDF: "vocabulary-a", EMBEDDING: "module-a"}


def _rows(count: int, seed: int) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """TF-IDF-like sparse rows, dense vectors, and genre labels that both predict (a fixed hidden model)."""
    rng = np.random.default_rng(seed)
    tfidf = sparse.random(count, 300, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    vectors = rng.normal(size=(count, 16)).astype(np.float32)
    truth = np.random.default_rng(0)  # the same hidden weights for every sample
    logits = tfidf @ truth.normal(scale=3, size=(300, 3)) + vectors @ truth.normal(size=(16, 3))
    labels = (rng.random((count, 3)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return tfidf, vectors, labels


def _fit(tfidf, vectors, labels, start=None, features=FEATURES):
    return fit_baselines(lambda: tfidf, lambda: vectors, labels, features=features, start=start)


def test_probabilities_are_those_of_one_vs_rest_logistic_regression() -> None:
    """The weights give what scikit-learn's own one-vs-rest classifier predicts, which the baselines were."""
    tfidf, vectors, labels = _rows(2_000, seed=1)
    fitted = _fit(tfidf, vectors, labels).probabilities(tfidf, vectors)
    for name, rows, regularization in ((TFIDF, tfidf, 10.0), (EMBEDDING, vectors, 1.0)):
        reference = OneVsRestClassifier(LogisticRegression(C=regularization, solver="newton-cg", max_iter=1000))
        np.testing.assert_allclose(fitted[name], reference.fit(rows, labels).predict_proba(rows), atol=1e-5)
    np.testing.assert_allclose(fitted["baseline_average"], (fitted[TFIDF] + fitted[EMBEDDING]) / 2)


def test_last_weeks_weights_reach_the_same_fit_in_fewer_newton_steps(tmp_path: Path) -> None:
    """Warm: this week's rows (last week's and 5% more) fitted from last week's saved weights score as the
    cold fit does, AUC equal to 4 digits, in fewer iterations. (Both stop at scikit-learn's tolerance, not
    at the exact optimum: on weakly regularised TF-IDF weights a probability may differ by a few 0.01.)"""
    tfidf, vectors, labels = _rows(4_000, seed=2)
    last_week = slice(0, 3_800)
    _fit(tfidf[last_week], vectors[last_week], labels[last_week]).save(tmp_path / "baselines.npz", GENRES)

    cold = _fit(tfidf, vectors, labels)
    warm = _fit(tfidf, vectors, labels, start=load_start(tmp_path / "baselines.npz", GENRES))

    assert all(warm.fits[name]["warm_start"] and not cold.fits[name]["warm_start"] for name in (TFIDF, EMBEDDING))
    for name in (TFIDF, EMBEDDING):
        assert warm.fits[name]["newton_iterations"] < cold.fits[name]["newton_iterations"], name
    cold_p, warm_p = cold.probabilities(tfidf, vectors), warm.probabilities(tfidf, vectors)
    for name in cold_p:
        np.testing.assert_allclose(warm_p[name], cold_p[name], atol=0.05)
        for average in ("micro", "macro"):
            assert roc_auc_score(labels, warm_p[name], average=average) == pytest.approx(
                roc_auc_score(labels, cold_p[name], average=average), abs=1e-4
            ), (name, average)


def test_weights_of_other_features_or_genres_are_not_started_from(tmp_path: Path) -> None:
    """Another vocabulary (a challenger trained from scratch) or module, or other genres: a cold fit."""
    tfidf, vectors, labels = _rows(1_000, seed=3)
    saved = tmp_path / "baselines.npz"
    _fit(tfidf, vectors, labels).save(saved, GENRES)

    new_vocabulary = _fit(tfidf, vectors, labels, load_start(saved, GENRES), {**FEATURES, TFIDF: "vocabulary-b"})
    assert new_vocabulary.fits[TFIDF]["warm_start"] is False and new_vocabulary.fits[EMBEDDING]["warm_start"]
    assert load_start(saved, ["Action", "Comedy", "Horror"]) == {}
    assert load_start(None, GENRES) == {} and load_start(tmp_path / "absent.npz", GENRES) == {}
    whole = saved.read_bytes()
    for damaged in (b"not an npz", b"", whole[: len(whole) // 2]):  # garbage, empty, truncated by a full disk
        saved.write_bytes(damaged)
        assert load_start(saved, GENRES) == {}


def test_weights_of_another_width_are_not_started_from() -> None:
    """A vocabulary of another size under the same digest cannot happen, but a fit never trips on it."""
    tfidf, vectors, labels = _rows(500, seed=4)
    narrow = GenreLogregs(np.zeros((3, 10), dtype=np.float32), np.zeros(3, dtype=np.float32), FEATURES[TFIDF])
    fitted = _fit(tfidf, vectors, labels, start={TFIDF: narrow})
    assert fitted.fits[TFIDF]["warm_start"] is False and fitted.tfidf.coef.shape == (3, 300)


def test_a_genre_with_one_class_in_the_train_split_is_predicted_as_that_class() -> None:
    tfidf, vectors, labels = _rows(500, seed=5)
    labels[:, 0], labels[:, 2] = 0.0, 1.0
    probabilities = _fit(tfidf, vectors, labels).probabilities(tfidf, vectors)
    for name in (TFIDF, EMBEDDING, "baseline_average"):
        assert np.all(probabilities[name][:, 0] == 0.0) and np.all(probabilities[name][:, 2] == 1.0)
        assert np.all((probabilities[name][:, 1] > 0) & (probabilities[name][:, 1] < 1))


def test_a_genre_with_one_class_last_week_starts_from_zero_this_week(tmp_path: Path) -> None:
    """Last week's constant genre has no weights to start from (±inf intercept): this week it is fitted
    from zero, the other genres from last week's weights, and it scores as a cold fit does."""
    tfidf, vectors, labels = _rows(1_000, seed=6)
    last_week = labels.copy()
    last_week[:, 1] = 0.0
    _fit(tfidf, vectors, last_week).save(tmp_path / "baselines.npz", GENRES)
    start = load_start(tmp_path / "baselines.npz", GENRES)
    assert start[TFIDF].intercept[1] == -np.inf

    warm, cold = _fit(tfidf, vectors, labels, start=start), _fit(tfidf, vectors, labels)
    assert warm.fits[TFIDF]["warm_start"] and np.isfinite(warm.tfidf.intercept).all()
    warm_p, cold_p = warm.probabilities(tfidf, vectors), cold.probabilities(tfidf, vectors)
    for name in cold_p:
        assert roc_auc_score(labels[:, 1], warm_p[name][:, 1]) == pytest.approx(
            roc_auc_score(labels[:, 1], cold_p[name][:, 1]), abs=1e-4
        )
