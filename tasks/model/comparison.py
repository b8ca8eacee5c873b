"""The paired difference of two models' ROC AUC on the same test movies, with its uncertainty.

Each movie is one cluster: its genre labels are not independent, so the variance is estimated from
per-movie sums. Two estimates: the clustered DeLong variance (Obuchowski 1997), and a movie-level
paired bootstrap as its cross-check and as the fallback where DeLong degenerates. No maintained
library handles the movie clusters (scikit-learn has no AUC variance at all), hence this module.

Derivation of the clustered DeLong variance. For one genre g with M_g positive and N_g negative cells,
the placement of a positive cell i is V10_i = (negatives below it + half the tied ones) / N_g and of a
negative cell j is V01_j = (positives above it + half the tied ones) / M_g; the AUC is the mean of
either. Its first-order (Hoeffding) expansion is A_g - theta_g ~ sum_i (V10_i - A_g) / M_g +
sum_j (V01_j - A_g) / N_g, so movie k contributes u_kg (its positive cell's term) and w_kg (its
negative cell's term). The micro AUC is one such statistic over all cells pooled, so a movie
contributes the sums over its cells, U_k and W_k; the macro AUC is the mean of the per-genre AUCs, a
linear function, so a movie contributes U_k = mean_g u_kg and W_k = mean_g w_kg. For the difference
a - b on the same movies the contributions subtract, and movies being independent,
Var(a - b) = c10 sum_k U_k^2 + c01 sum_k W_k^2 + 2 c11 sum_k U_k W_k with Obuchowski's small-sample
factors c10 = I10 / (I10 - 1), c01 = I01 / (I01 - 1), c11 = I / (I - 1) (I10 movies with a positive
cell, I01 with a negative one, I movies). With one cell per movie this is DeLong et al. (1988) exactly.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import numpy as np
from scipy.special import ndtr
from scipy.stats import rankdata

Metric = Literal["auc_micro", "auc_macro"]
METRICS: tuple[Metric, ...] = ("auc_micro", "auc_macro")
Z_TWO_SIDED_95 = 1.959963984540054
Z_ONE_SIDED_95 = 1.6448536269514722
# Resamples per block of the bootstrap: bounds memory at (block x cells) floats.
RESAMPLE_BLOCK = 100


class Comparison(TypedDict):
    """One paired comparison, a - b, ready for json.dumps."""

    metric: Metric
    a: float
    b: float
    difference: float
    standard_error: float
    ci_low: float
    ci_high: float
    lower_bound_one_sided_95: float
    p_value_one_sided: float
    method: Literal["delong_clustered", "bootstrap"]
    resamples: int
    seed: int
    bootstrap_standard_error: float


def compare(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    metric: Metric,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Model a against model b on the same movies (rows): the AUC difference a - b, its standard error,
    95% interval, one-sided lower bound and p-value for H0: a - b <= 0. The clustered DeLong variance
    gives a normal interval; where it degenerates, the bootstrap's percentiles do. The bootstrap runs
    either way, as the cross-check."""
    labels, scores_a, scores_b = _validated(labels, scores_a, scores_b, metric, resamples)
    if metric == "auc_macro":
        # As tasks/model/metrics.py: a genre without both classes has no AUC and leaves the macro mean.
        has_auc = _genres_with_both_classes(labels)
        labels, scores_a, scores_b = labels[:, has_auc], scores_a[:, has_auc], scores_b[:, has_auc]
    auc_a, positive_a, negative_a = _movie_contributions(labels, scores_a, metric)
    auc_b, positive_b, negative_b = _movie_contributions(labels, scores_b, metric)
    difference = auc_a - auc_b
    bootstrap = _bootstrap_differences(labels, scores_a, scores_b, metric, resamples, seed)
    bootstrap_se = float(np.std(bootstrap, ddof=1))
    delong_se = _delong_standard_error(labels, metric, positive_a - positive_b, negative_a - negative_b)
    if delong_se is not None:
        return _comparison(
            metric,
            (auc_a, auc_b),
            delong_se,
            (difference - Z_TWO_SIDED_95 * delong_se, difference + Z_TWO_SIDED_95 * delong_se),
            difference - Z_ONE_SIDED_95 * delong_se,
            float(ndtr(-difference / delong_se)),
            "delong_clustered",
            (resamples, seed, bootstrap_se),
        )
    low, high, one_sided = np.percentile(bootstrap, [2.5, 97.5, 5.0])
    return _comparison(
        metric,
        (auc_a, auc_b),
        bootstrap_se,
        (float(low), float(high)),
        float(one_sided),
        # The percentile bootstrap's p-value: the share of resampled differences at or below 0.
        float(np.mean(bootstrap <= 0)),
        "bootstrap",
        (resamples, seed, bootstrap_se),
    )


def _comparison(
    metric: Metric,
    aucs: tuple[float, float],
    standard_error: float,
    interval: tuple[float, float],
    lower_bound: float,
    p_value: float,
    method: Literal["delong_clustered", "bootstrap"],
    bootstrap: tuple[int, int, float],
) -> Comparison:
    return Comparison(
        metric=metric,
        a=aucs[0],
        b=aucs[1],
        difference=aucs[0] - aucs[1],
        standard_error=standard_error,
        ci_low=interval[0],
        ci_high=interval[1],
        lower_bound_one_sided_95=lower_bound,
        p_value_one_sided=p_value,
        method=method,
        resamples=bootstrap[0],
        seed=bootstrap[1],
        bootstrap_standard_error=bootstrap[2],
    )


def verdict(comparison: Comparison) -> str:
    """The claim the 95% interval supports, in issue 32's words."""
    if comparison["ci_low"] > 0:
        return "better"
    if comparison["ci_high"] < 0:
        return "worse"
    return "no detectable difference"


def _validated(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, metric: str, resamples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, scores_a, scores_b = np.asarray(labels), np.asarray(scores_a, float), np.asarray(scores_b, float)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (movies x genres), got shape {labels.shape}")
    if scores_a.shape != labels.shape or scores_b.shape != labels.shape:
        raise ValueError(f"shape mismatch: labels {labels.shape}, scores_a {scores_a.shape}, scores_b {scores_b.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    if not (np.isfinite(scores_a).all() and np.isfinite(scores_b).all()):
        raise ValueError("scores must be finite")
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2, got {resamples}")
    labels = labels.astype(np.int8)
    if metric == "auc_micro" and not 0 < labels.sum() < labels.size:
        raise ValueError("micro AUC needs both positive and negative labels")
    if metric == "auc_macro" and not _genres_with_both_classes(labels).any():
        raise ValueError("macro AUC needs a genre with both positive and negative labels")
    return labels, scores_a, scores_b


def _genres_with_both_classes(labels: np.ndarray) -> np.ndarray:
    positives = labels.sum(axis=0)
    has_both: np.ndarray = (positives > 0) & (positives < labels.shape[0])
    return has_both


def _movie_contributions(
    labels: np.ndarray, scores: np.ndarray, metric: Metric
) -> tuple[float, np.ndarray, np.ndarray]:
    """The AUC and each movie's first-order contributions to it from its positive cells (U_k) and its
    negative cells (W_k); see the module docstring."""
    if metric == "auc_micro":
        aucs, positive, negative = _placement_terms(labels.reshape(-1, 1), scores.reshape(-1, 1))
        return float(aucs[0]), positive.reshape(labels.shape).sum(axis=1), negative.reshape(labels.shape).sum(axis=1)
    aucs, positive, negative = _placement_terms(labels, scores)
    return float(aucs.mean()), positive.mean(axis=1), negative.mean(axis=1)


def _placement_terms(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (each with both classes): the AUC, and per cell (V10 - AUC) / M on positive cells and
    (V01 - AUC) / N on negative cells, zero elsewhere. Midranks count ties half."""
    positive = labels == 1
    n_positive = positive.sum(axis=0)
    n_negative = labels.shape[0] - n_positive
    rank_all = rankdata(scores, axis=0)
    # Ranks within one class: the other class set above every score so it cannot shift them.
    rank_among_positives = rankdata(np.where(positive, scores, np.inf), axis=0)
    rank_among_negatives = rankdata(np.where(positive, np.inf, scores), axis=0)
    placement_positive = (rank_all - rank_among_positives) / n_negative
    placement_negative = (n_positive - (rank_all - rank_among_negatives)) / n_positive
    aucs = np.where(positive, placement_positive, 0.0).sum(axis=0) / n_positive
    positive_terms = np.where(positive, (placement_positive - aucs) / n_positive, 0.0)
    negative_terms = np.where(positive, 0.0, (placement_negative - aucs) / n_negative)
    return aucs, positive_terms, negative_terms


def _delong_standard_error(
    labels: np.ndarray, metric: Metric, positive_difference: np.ndarray, negative_difference: np.ndarray
) -> float | None:
    """Obuchowski's clustered standard error of a - b from the per-movie contributions, or None where it
    degenerates: a column (the pooled cells for micro, any genre for macro) with fewer than two of a
    class has no placement variance on that side, and a variance <= 0 gives no interval."""
    columns = labels.reshape(-1, 1) if metric == "auc_micro" else labels
    n_positive = columns.sum(axis=0)
    if n_positive.min() < 2 or (columns.shape[0] - n_positive).min() < 2:
        return None
    movies_with_positive = int((labels.sum(axis=1) > 0).sum())
    movies_with_negative = int((labels.sum(axis=1) < labels.shape[1]).sum())
    movies = labels.shape[0]
    variance = (
        _small_sample_factor(movies_with_positive) * float(positive_difference @ positive_difference)
        + _small_sample_factor(movies_with_negative) * float(negative_difference @ negative_difference)
        + 2 * _small_sample_factor(movies) * float(positive_difference @ negative_difference)
    )
    return float(np.sqrt(variance)) if np.isfinite(variance) and variance > 0 else None


def _small_sample_factor(clusters: int) -> float:
    return clusters / (clusters - 1) if clusters > 1 else float("inf")


def _bootstrap_differences(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, metric: Metric, resamples: int, seed: int
) -> np.ndarray:
    """AUC(a) - AUC(b) on `resamples` movie-level resamples, the same movies for both models. A
    resample is a vector of how often each movie was drawn, and the AUC a weighted Mann-Whitney."""
    movies = labels.shape[0]
    draws = np.random.default_rng(seed).integers(0, movies, size=(resamples, movies))
    offsets = (np.arange(resamples) * movies)[:, None]
    weights = np.bincount((draws + offsets).ravel(), minlength=resamples * movies).reshape(resamples, movies)
    weights = weights.astype(float)
    differences: np.ndarray
    if metric == "auc_micro":
        cell_movie = np.repeat(np.arange(movies), labels.shape[1])
        differences = _weighted_aucs(labels.ravel(), scores_a.ravel(), cell_movie, weights)
        differences -= _weighted_aucs(labels.ravel(), scores_b.ravel(), cell_movie, weights)
    else:
        movie = np.arange(movies)
        per_genre = [
            _weighted_aucs(labels[:, g], scores_a[:, g], movie, weights)
            - _weighted_aucs(labels[:, g], scores_b[:, g], movie, weights)
            for g in range(labels.shape[1])
        ]
        # A genre a resample drew without both classes has no AUC there and leaves that macro mean, as in
        # metrics.py; both models share the labels, so the genre leaves both means.
        differences = np.nanmean(np.column_stack(per_genre), axis=1)
    finite: np.ndarray = differences[np.isfinite(differences)]
    return finite


def _weighted_aucs(
    cell_labels: np.ndarray, cell_scores: np.ndarray, cell_movie: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Per resample (row of `weights`, one weight per movie), the AUC with each cell weighted by its
    movie's weight: sum over positive cells of weight x (negative weight below + half the tied) / (total
    positive weight x total negative weight). The negatives are sorted once; each positive's place among
    them comes from searchsorted, so a resample costs a cumulative sum and two gathers."""
    positive = cell_labels == 1
    order = np.argsort(cell_scores[~positive], kind="stable")
    negative_scores = cell_scores[~positive][order]
    negative_movie = cell_movie[~positive][order]
    positive_scores = cell_scores[positive]
    positive_movie = cell_movie[positive]
    below = np.searchsorted(negative_scores, positive_scores, side="left")
    up_to_tied = np.searchsorted(negative_scores, positive_scores, side="right")
    untied = bool(np.array_equal(below, up_to_tied))
    aucs = np.empty(weights.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, weights.shape[0], RESAMPLE_BLOCK):
            block = weights[start : start + RESAMPLE_BLOCK]
            cumulative = np.zeros((block.shape[0], negative_movie.size + 1))
            np.cumsum(block[:, negative_movie], axis=1, out=cumulative[:, 1:])
            positive_weight = block[:, positive_movie]
            # Without ties (the usual case with probabilities) one gather gives both ends.
            ends = 2 * cumulative[:, below] if untied else cumulative[:, below] + cumulative[:, up_to_tied]
            half_pairs = np.einsum("rp,rp->r", positive_weight, ends)
            aucs[start : start + block.shape[0]] = 0.5 * half_pairs / (positive_weight.sum(axis=1) * cumulative[:, -1])
    return aucs
