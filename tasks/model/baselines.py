"""Strong simple baselines, fitted on the same split in every run: a model that does not beat them is
not worth promoting.

- `tfidf_logreg`: one logistic regression per genre on TF-IDF rows of word 1-2-grams (evaluate computes
  them with the run's own vocabulary and IDF: `features.baseline_tfidf`);
- `embedding_logreg`: one logistic regression per genre on the frozen embedding's cached vectors;
- `baseline_average`: the mean of the two probabilities.

Warm start: the served version keeps its baselines' weights (`tasks.run_folder.BASELINES_FILE`, published beside it),
and the next run's fit starts from them where its rows mean the same (the same genres, and the same
vocabulary or embedding module). Each regression is L2-regularised, so it has one optimum; the start
changes how many Newton steps reach it, and where within the solver's tolerance they stop (how close:
bench/FINDINGS.md, "Baselines"). A week with 5% new movies starts close to it. From the same start, a fit is the same
run to run.

Light on purpose: the caller turns texts into rows, so fitting and scoring need no TensorFlow.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from tasks.artifacts import atomic_path

log = logging.getLogger(__name__)

TFIDF, EMBEDDING = "tfidf_logreg", "embedding_logreg"
INVERSE_REGULARIZATION = {TFIDF: 10.0, EMBEDDING: 1.0}
MAX_ITERATIONS = 1000

Rows: TypeAlias = sparse.csr_matrix | np.ndarray


@dataclass(frozen=True)
class GenreLogregs:
    """One logistic regression per genre on the same rows: its weights, a row of `coef` per genre, and
    the genres' features (`features`: what the rows' columns mean, e.g. the vocabulary's digest)."""

    coef: np.ndarray
    intercept: np.ndarray
    features: str

    def probabilities(self, rows: Rows) -> np.ndarray:
        # What LogisticRegression.predict_proba gives for the positive class; ±inf intercepts (a genre
        # with one class in the train split, zero weights) give the constant 1 or 0 OneVsRestClassifier did.
        probabilities: np.ndarray = expit(np.asarray(rows @ self.coef.T) + self.intercept)
        return probabilities


@dataclass(frozen=True)
class Baselines:
    """The baselines fitted on the train split; they score the test split a chunk at a time."""

    tfidf: GenreLogregs
    embedding: GenreLogregs
    fits: dict[str, dict[str, Any]]  # per baseline: warm_start (bool) and newton_iterations over its genres

    def probabilities(self, tfidf_rows: sparse.csr_matrix, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Each baseline's probabilities for some texts, given their TF-IDF rows and embedding vectors."""
        results = {TFIDF: self.tfidf.probabilities(tfidf_rows), EMBEDDING: self.embedding.probabilities(vectors)}
        results["baseline_average"] = (results[TFIDF] + results[EMBEDDING]) / 2
        return results

    def save(self, path: Path, genres: Sequence[str]) -> None:
        """Write the weights for the next run's warm start."""
        arrays: dict[str, Any] = {}  # Any: numpy's stubs would match a dict of arrays against allow_pickle
        for name, logregs in ((TFIDF, self.tfidf), (EMBEDDING, self.embedding)):
            arrays |= {f"{name}_coef": logregs.coef, f"{name}_intercept": logregs.intercept}
            arrays[f"{name}_features"] = np.array(logregs.features)
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(handle, genres=np.array(list(genres)), **arrays)


def fit_baselines(
    train_tfidf: Callable[[], sparse.csr_matrix],
    train_vectors: Callable[[], np.ndarray],
    train_labels: np.ndarray,
    features: dict[str, str],
    start: dict[str, GenreLogregs] | None = None,
) -> Baselines:
    """Fit each baseline on the train split's labels and its rows: TF-IDF rows, then embedding vectors,
    each made just before its fit, so the two never sit in memory together (bench/FINDINGS.md, "Data
    preparation and memory").
    `features`: what each baseline's columns mean ({TFIDF: vocabulary digest, EMBEDDING: module
    fingerprint}); `start`: last run's weights (`load_start`), used where their features are the same."""
    start = start or {}
    fitted, fits = {}, {}
    for name, rows in ((TFIDF, train_tfidf), (EMBEDDING, train_vectors)):
        previous = start.get(name)
        usable = previous if previous is not None and previous.features == features[name] else None
        fitted[name], iterations, warm = _fit_per_genre(rows(), train_labels, name, features[name], usable)
        fits[name] = {"warm_start": warm, "newton_iterations": iterations}
    return Baselines(fitted[TFIDF], fitted[EMBEDDING], fits)


def load_start(path: Path | None, genres: Sequence[str]) -> dict[str, GenreLogregs]:
    """The weights saved at `path` (a served version's `BASELINES_FILE`), if they are for `genres`; none
    if there is no such file, it is unreadable, or it predicts other genres: the fit then starts cold."""
    if path is None or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as saved:
            if saved["genres"].tolist() != list(genres):
                log.info("baselines in %s predict other genres: fitted from zero", path)
                return {}
            return {
                name: GenreLogregs(saved[f"{name}_coef"], saved[f"{name}_intercept"], str(saved[f"{name}_features"]))
                for name in (TFIDF, EMBEDDING)
            }
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # empty, truncated, damaged
        log.warning("baselines in %s unreadable (%s): fitted from zero", path, err)
        return {}


def _fit_per_genre(
    rows: Rows, labels: np.ndarray, name: str, features: str, start: GenreLogregs | None
) -> tuple[GenreLogregs, int, bool]:
    """One regression per genre column of `labels`, from `start`'s weights when given (and the right
    shape); the weights, the Newton iterations they took in all, and whether they started warm."""
    genres = labels.shape[1]
    if start is not None and start.coef.shape != (genres, rows.shape[1]):
        start = None
    coef = np.zeros((genres, rows.shape[1]), dtype=rows.dtype)  # newton-cg keeps float32 rows' precision
    intercept, iterations = np.zeros(genres, dtype=rows.dtype), 0
    for genre in range(genres):
        column = labels[:, genre]
        if column.min() == column.max():  # one class only: predict it, as OneVsRestClassifier does
            intercept[genre] = np.inf if column[0] else -np.inf
            continue
        model = _logreg(name, start, genre).fit(rows, column)
        coef[genre], intercept[genre] = model.coef_[0], model.intercept_[0]
        iterations += int(model.n_iter_[0])
    return GenreLogregs(coef, intercept, features), iterations, start is not None


def _logreg(name: str, start: GenreLogregs | None, genre: int) -> Any:
    # newton-cg: Newton steps through Hessian-vector products (sparse or BLAS matrix products) reach
    # liblinear's optimum faster than liblinear itself; lbfgs, saga and newton-cholesky were slower
    # (bench/FINDINGS.md, "Baselines").
    # It draws no random numbers, so the probabilities are the same run to run.
    model = LogisticRegression(
        C=INVERSE_REGULARIZATION[name], solver="newton-cg", max_iter=MAX_ITERATIONS, warm_start=start is not None
    )
    if start is not None and np.isfinite(start.intercept[genre]):
        model.coef_ = start.coef[genre : genre + 1].copy()
        model.intercept_ = start.intercept[genre : genre + 1].copy()
    return model
