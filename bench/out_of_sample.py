"""Out-of-sample quality (issue 31): the served model against the baselines on movies it has never seen.

Two protocols, both on real rows (`../shared/data`, never copied):
- A: train on the 5,000-row sample (the pipeline's own prepare and split), score every movie of the later
  rows that prepare keeps (an id, an overview, one of the nine genres: all three of its splits), and, for
  reference, the sample's own test split;
- B: train on the later rows (the pipeline's own split of that file), score their own test split.

Everything goes through the project's stage functions: `prepare_dataset` and `read_split`, `embed_dataset`
and the embedding cache, `fit_head` (what `train_model` fits before its export; the head is scored on
cached vectors and raw texts, as evaluate's `head_probabilities` does), `adapt_vectorizer`, `baseline_tfidf`
and `fit_baselines`. Each (protocol, configuration, seed) writes its probabilities (validation and
test sets) to `WORK/runs/`; `report` reads them back and gives micro / macro AUC with movie-level
paired bootstrap intervals, the bisect's differences and the stacking numbers.

Configurations toggle one part of c4ed586 at a time on top of today's code (see CONFIGS). Baselines
come in four flavours, today's and c4ed586^'s, and the two hybrids (see `BASELINE_FLAVOURS`).

    PYTHONPATH=. python -m bench.out_of_sample run --work /work/oos31 --protocols A B --configs main --seeds 0 1
    PYTHONPATH=. python -m bench.out_of_sample report --work /work/oos31 [--bootstrap 1000] [--out FILE.md]

Bootstraps are cached by run name in WORK/bootstrap_cache/: delete it if runs are redone with other code.
Run it on one core when the machine is shared: `taskset -c 1` and TF_NUM_INTRAOP_THREADS=1
TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 (the script also sets TensorFlow's thread pools to what those
say). Nothing is downloaded: the USE module is built from its PyPI package into WORK/modules.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.sample import SHARED_SAMPLE_CSV

LATER_CSV = SHARED_SAMPLE_CSV.parent / "movies_metadata_later_rows.csv"  # the rows after the sample's 5,000
DATASETS = {"sample": SHARED_SAMPLE_CSV, "later": LATER_CSV}
# protocol -> (training dataset, {evaluation set name: (dataset, splits)})
PROTOCOLS = {
    "A": ("sample", {"later_all": ("later", ("train", "validation", "test")), "sample_test": ("sample", ("test",))}),
    "B": ("later", {"later_test": ("later", ("test",))}),
}
PRIMARY_SET = {"A": "later_all", "B": "later_test"}
ENCODERS = ("bf16", "f32")
F32_MODULE = "use-m3-f32products"  # the same builder with float32 products (c4ed586^'s arithmetic)

log = logging.getLogger("out_of_sample")


@dataclass(frozen=True)
class Config:
    """How the served model is trained: today's defaults unless a field says otherwise."""

    trainer: str = "sparse"  # "sparse": today's fit_head; "dense": the head on raw texts, TF-IDF inside (c4ed586^)
    batch_size: int = 512
    learning_rate: float = 0.003
    deep_learning_rate: float = 0.006  # the deep-only candidate's override (today's default candidates)
    patience: int = 3
    encoder: str = "bf16"
    epochs: int = 60
    hidden_units: int = 256


CONFIGS = {
    "main": Config(),
    # c4ed586's parts, each reverted alone on top of today's code:
    "dense_tfidf": Config(trainer="dense"),
    "old_hparams": Config(batch_size=64, learning_rate=0.001, deep_learning_rate=0.001, patience=8),
    "old_batch_lr": Config(batch_size=64, learning_rate=0.001, deep_learning_rate=0.001),
    "patience8": Config(patience=8),
    "f32_encoder": Config(encoder="f32"),
    # the hyperparameters' parts, and candidates for keeping most of the speed:
    "b512_lr001": Config(learning_rate=0.001, deep_learning_rate=0.001),
    "b64_lr003": Config(batch_size=64),
    "b128_lr001": Config(batch_size=128, learning_rate=0.001, deep_learning_rate=0.001),
    "b128_lr002": Config(batch_size=128, learning_rate=0.002),
    "b256_lr001": Config(batch_size=256, learning_rate=0.001, deep_learning_rate=0.002),
    # all of them reverted at once: about the model c4ed586^ trained
    "all_reverted": Config(
        trainer="dense", batch_size=64, learning_rate=0.001, deep_learning_rate=0.001, patience=8, encoder="f32"
    ),
}
BASELINE_FLAVOURS = ("today", "c4ed586^", "vocab+liblinear", "sklearn+newton-cg")


# ---------------------------------------------------------------------------------------------- set-up


def setup_threads() -> None:
    """TensorFlow's pools as the environment says (the project does not set them itself)."""
    from tasks.tensorflow_runtime import tf

    intra = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
    inter = int(os.environ.get("TF_NUM_INTEROP_THREADS", "0"))
    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # already initialised
        pass


def encoder_module(work: Path, encoder: str) -> tuple[str, Any]:
    """(module path, embedding cache) of an encoder; builds the module once into WORK/modules."""
    from tasks.embedding.cache import EmbeddingCache
    from tasks.embedding.modules import ensure_default_module, module_fingerprint

    info = ensure_default_module(work / "modules")
    if encoder == "bf16":
        return info["path"], EmbeddingCache(work / "embedding_cache", info["fingerprint"])
    target = work / "modules" / F32_MODULE
    if not (target / "module_info.json").is_file():
        from tasks.embedding.use_module import build_use_module
        from tasks.tensorflow_runtime import tf

        build_use_module(target, products=tf.float32)
    # Same weights and revision, so the same recorded fingerprint: its vectors get a cache of their own.
    return str(target), EmbeddingCache(work / "embedding_cache", module_fingerprint(str(target)) + "-f32products")


def prepared(work: Path, dataset: str) -> Path:
    """The pipeline's prepare stage on a shared CSV (default genres and fractions), once."""
    from tasks.config import DEFAULT_GENRES, RunConfig
    from tasks.data.prepare import SUMMARY_FILE, prepare_dataset

    out = work / "prepared" / dataset
    if not (out / SUMMARY_FILE).is_file():
        defaults = {
            f: RunConfig.__dataclass_fields__[f].metadata["param"]["default"]
            for f in ("test_fraction", "validation_fraction")
        }
        summary = prepare_dataset(
            DATASETS[dataset], out, DEFAULT_GENRES, defaults["test_fraction"], defaults["validation_fraction"]
        )
        log.info(
            "prepared %s: %s",
            dataset,
            {k: summary[k] for k in ("records", "kept", "dropped", "train_rows", "validation_rows", "test_rows")},
        )
    return out


def embedded(work: Path, dataset: str, encoder: str) -> None:
    from tasks.embedding.embed import embed_dataset

    module, cache = encoder_module(work, encoder)
    started = time.monotonic()
    stats = embed_dataset(prepared(work, dataset), module, cache)
    log.info("embed %s with %s: %s in %.1f s", dataset, encoder, stats, time.monotonic() - started)


def read_rows(work: Path, dataset: str, splits: Sequence[str]) -> tuple[list[str], np.ndarray]:
    from tasks.data.prepare import read_split

    texts: list[str] = []
    labels = []
    for split in splits:
        t, y, _ = read_split(prepared(work, dataset), split)
        texts += t
        labels.append(y)
    return texts, np.concatenate(labels)


def vectors_of(work: Path, encoder: str, texts: list[str]) -> np.ndarray:
    from tasks.embedding.cache import embed_with_cache
    from tasks.embedding.embed import ModuleEmbedder

    module, cache = encoder_module(work, encoder)
    vectors, _ = embed_with_cache(texts, ModuleEmbedder(module), cache)
    return vectors


# ---------------------------------------------------------------------------------------------- training


def train_config(config: Config, module: str, seed: int, wide: bool) -> Any:
    from tasks.model.train import TrainConfig

    return TrainConfig(
        embedding_module=module,
        epochs=config.epochs,
        batch_size=config.batch_size,
        hidden_units=config.hidden_units,
        learning_rate=config.learning_rate if wide else config.deep_learning_rate,
        seed=seed,
        wide=wide,
        patience=config.patience,
    )


def fit_dense(tc: Any, train: tuple[list[str], np.ndarray], valid: tuple[list[str], np.ndarray], cache: Any) -> Any:
    """c4ed586^'s training loop on today's head: the head itself trains on raw texts (its TextVectorization
    computes dense TF-IDF rows every batch, every epoch), its dataset a shuffle buffer of the rows."""
    from tasks.embedding.cache import embed_with_cache
    from tasks.embedding.embed import ModuleEmbedder
    from tasks.model.features import adapt_vectorizer
    from tasks.model.train import build_head
    from tasks.tensorflow_runtime import tf, tf_keras

    (train_texts, train_labels), (valid_texts, valid_labels) = train, valid
    both, _ = embed_with_cache([*train_texts, *valid_texts], ModuleEmbedder(tc.embedding_module), cache)
    train_vectors, valid_vectors = both[: len(train_texts)], both[len(train_texts) :]
    tf_keras.utils.set_random_seed(tc.seed)
    vectorizer = adapt_vectorizer(train_texts, tc.vocabulary_size) if tc.wide else None
    head = build_head(tc, both.shape[1], train_labels.shape[1], vectorizer)
    head.compile(
        optimizer=tf_keras.optimizers.Adam(tc.learning_rate),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC(name="auc_micro")],
    )

    def dataset(texts: list[str], vectors: np.ndarray, labels: np.ndarray, batch: int, seed: int | None) -> Any:
        data = tf.data.Dataset.from_tensor_slices(({"text": tf.constant(texts), "embedding": vectors}, labels))
        if seed is not None:
            data = data.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
        return data.batch(batch).prefetch(tf.data.AUTOTUNE)

    history = head.fit(
        dataset(train_texts, train_vectors, train_labels, tc.batch_size, tc.seed),
        validation_data=dataset(valid_texts, valid_vectors, valid_labels, tc.batch_size, None),
        epochs=tc.epochs,
        callbacks=[
            tf_keras.callbacks.EarlyStopping(
                monitor="val_auc_micro", mode="max", patience=tc.patience, restore_best_weights=True
            )
        ],
        verbose=0,
    )
    return head, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def head_probabilities(head: Any, texts: list[str], vectors: np.ndarray) -> np.ndarray:
    """What the export's `head_probabilities` computes: the head on raw texts and their cached vectors."""
    from tasks.tensorflow_runtime import tf

    out = []
    for start in range(0, len(texts), 1024):
        batch = {"text": tf.constant(texts[start : start + 1024]), "embedding": vectors[start : start + 1024]}
        out.append(head(batch, training=False).numpy())
    return np.concatenate(out)


def run_one(work: Path, protocol: str, config_name: str, seed: int) -> Path:
    """Train both default candidates (wide & deep at the run's rate, deep-only at its own), select on
    validation micro-AUC as select_model does, and save every probability this run makes."""
    from tasks.model.train import fit_head

    config = CONFIGS[config_name]
    out = work / "runs" / protocol / config_name / f"seed{seed}.npz"
    if out.is_file():
        log.info("have %s", out)
        return out
    train_set, eval_sets = PROTOCOLS[protocol]
    module, cache = encoder_module(work, config.encoder)
    for dataset in {train_set, *(d for d, _ in eval_sets.values())}:
        embedded(work, dataset, config.encoder)
    train = read_rows(work, train_set, ("train",))
    valid = read_rows(work, train_set, ("validation",))
    arrays: dict[str, Any] = {"valid_labels": valid[1]}
    record: dict[str, Any] = {"protocol": protocol, "config": config_name, "settings": asdict(config), "seed": seed}
    evaluation = {name: read_rows(work, d, splits) for name, (d, splits) in eval_sets.items()}
    for name, (_, labels) in evaluation.items():
        arrays[f"{name}_labels"] = labels
    candidates = {}
    for candidate, wide in (("wide", True), ("deep", False)):
        tc = train_config(config, module, seed, wide)
        started = time.monotonic()
        if config.trainer == "dense":
            head, history = fit_dense(tc, train, valid, cache)
        else:
            fitted = fit_head(tc, train, valid, cache)
            head, history = fitted.head, fitted.history
        seconds = time.monotonic() - started
        val_auc = max(history["val_auc_micro"])
        candidates[candidate] = {
            "validation_auc_micro": val_auc,
            "epochs_run": len(history["val_auc_micro"]),
            "best_epoch": int(np.argmax(history["val_auc_micro"])) + 1,
            "seconds": round(seconds, 1),
        }
        arrays[f"valid_{candidate}"] = head_probabilities(head, valid[0], vectors_of(work, config.encoder, valid[0]))
        for name, (texts, _) in evaluation.items():
            arrays[f"{name}_{candidate}"] = head_probabilities(head, texts, vectors_of(work, config.encoder, texts))
        log.info("%s %s seed %d %s: %s", protocol, config_name, seed, candidate, candidates[candidate])
    selected = max(candidates, key=lambda c: candidates[c]["validation_auc_micro"])  # select_model's rule
    record["candidates"], record["selected"] = candidates, selected
    for key in [k for k in arrays if k.endswith(f"_{selected}")]:
        arrays[key[: -len(selected)] + "model"] = arrays[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------- baselines


def run_baselines(work: Path, protocol: str, encoder: str) -> Path:
    """Every baseline flavour's probabilities on validation and the evaluation sets (deterministic: once per
    protocol and encoder). The TF-IDF vocabulary is the one the wide candidate adapts on the train split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from tasks.model.baselines import EMBEDDING, TFIDF, fit_baselines
    from tasks.model.features import adapt_vectorizer, baseline_tfidf, vocabulary_digest

    out = work / "runs" / protocol / f"baselines-{encoder}.npz"
    if out.is_file():
        return out
    train_set, eval_sets = PROTOCOLS[protocol]
    _, cache = encoder_module(work, encoder)
    for dataset in {train_set, *(d for d, _ in eval_sets.values())}:
        embedded(work, dataset, encoder)
    train_texts, train_labels = read_rows(work, train_set, ("train",))
    sets = {"valid": read_rows(work, train_set, ("validation",))}
    sets |= {name: read_rows(work, d, splits) for name, (d, splits) in eval_sets.items()}
    train_vectors = vectors_of(work, encoder, train_texts)
    set_vectors = {name: vectors_of(work, encoder, texts) for name, (texts, _) in sets.items()}
    arrays: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    started = time.monotonic()
    vectorizer = adapt_vectorizer(train_texts, 20_000)
    today = fit_baselines(
        lambda: baseline_tfidf(vectorizer, train_texts),
        lambda: train_vectors,
        train_labels,
        features={TFIDF: vocabulary_digest(vectorizer), EMBEDDING: cache.module_fingerprint},
    )
    seconds["today"] = time.monotonic() - started
    set_rows = {name: baseline_tfidf(vectorizer, texts) for name, (texts, _) in sets.items()}
    for name in sets:
        arrays[f"{name}_tfidf_today"] = today.tfidf.probabilities(set_rows[name])
        arrays[f"{name}_use_today"] = today.embedding.probabilities(set_vectors[name])

    def ovr(c: float, solver: str) -> OneVsRestClassifier:
        if solver == "liblinear":  # c4ed586^'s
            return OneVsRestClassifier(
                LogisticRegression(C=c, solver="liblinear", max_iter=2000, random_state=0), n_jobs=1
            )
        return OneVsRestClassifier(LogisticRegression(C=c, solver="newton-cg", max_iter=1000), n_jobs=1)

    started = time.monotonic()
    sk = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    sk_train = sk.fit_transform(train_texts)
    sk_rows = {name: sk.transform(texts) for name, (texts, _) in sets.items()}
    old_tfidf = ovr(10.0, "liblinear").fit(sk_train, train_labels)
    old_use = ovr(1.0, "liblinear").fit(train_vectors, train_labels)
    seconds["c4ed586^"] = time.monotonic() - started
    hybrid_tfidf_ll = ovr(10.0, "liblinear").fit(baseline_tfidf(vectorizer, train_texts), train_labels)
    hybrid_tfidf_ncg = ovr(10.0, "newton-cg").fit(sk_train, train_labels)
    for name in sets:
        arrays[f"{name}_tfidf_c4ed586^"] = old_tfidf.predict_proba(sk_rows[name])
        arrays[f"{name}_use_c4ed586^"] = old_use.predict_proba(set_vectors[name])
        arrays[f"{name}_tfidf_vocab+liblinear"] = hybrid_tfidf_ll.predict_proba(set_rows[name])
        arrays[f"{name}_use_vocab+liblinear"] = arrays[f"{name}_use_c4ed586^"]  # liblinear on the vectors
        arrays[f"{name}_tfidf_sklearn+newton-cg"] = hybrid_tfidf_ncg.predict_proba(sk_rows[name])
        arrays[f"{name}_use_sklearn+newton-cg"] = arrays[f"{name}_use_today"]  # newton-cg on the vectors
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    out.with_suffix(".json").write_text(json.dumps({"seconds": seconds}, indent=1), encoding="utf-8")
    log.info("baselines %s %s in %s", protocol, encoder, seconds)
    return out


# ---------------------------------------------------------------------------------------------- metrics


def weighted_aucs(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, owner: np.ndarray | None = None
) -> np.ndarray:
    """ROC AUC of `scores` against 0/1 `labels` under each row of `weights` ([resamples, movies], a movie's
    count in a bootstrap resample; `owner[e]`: the movie of score e, default e itself): the AUC of the
    resampled data, ties counted half, as roc_auc_score counts them."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(bool)
    movie = order if owner is None else owner[order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(s)]  # exclusive
    pos = np.flatnonzero(y)
    w = weights[:, movie]  # one gather pass
    negative_weights = np.where(y, 0, w)
    cumulative = np.zeros((len(w), len(s) + 1), dtype=np.int64)
    np.cumsum(negative_weights, axis=1, out=cumulative[:, 1:])
    below = cumulative[:, starts[group[pos]]]  # negatives strictly below each positive's tie group
    tied = cumulative[:, ends[group[pos]]] - below
    wp = w[:, pos]
    num = (wp * (2 * below + tied)).sum(axis=1) / 2.0
    return num / (wp.sum(axis=1) * cumulative[:, -1].astype(np.float64))


def auc_pair(
    labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, macro: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(micro, macro) AUC under each row of movie `weights` (integer counts), 100 resamples at a time."""
    n, genres = labels.shape
    owner = np.repeat(np.arange(n), genres)
    weights = weights.astype(np.int32)
    micro, macros = [], []
    for start in range(0, len(weights), 100):
        w = weights[start : start + 100]
        micro.append(weighted_aucs(probs.ravel(), labels.ravel(), w, owner))
        if macro:
            macros.append(np.mean([weighted_aucs(probs[:, g], labels[:, g], w) for g in range(genres)], axis=0))
    return np.concatenate(micro), (np.concatenate(macros) if macro else None)


def bootstrap_weights(n: int, resamples: int, seed: int = 20261207) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]).astype(np.float64)


# ---------------------------------------------------------------------------------------------- stacking


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_stack(valid_heads: list[np.ndarray], valid_labels: np.ndarray, method: str) -> Any:
    """A stacker fit on the validation split over the heads' probabilities; returns f(heads) -> probs."""
    from scipy.optimize import minimize
    from scipy.special import expit

    genres = valid_labels.shape[1]
    k = len(valid_heads)
    logits_ = np.stack([logit(h) for h in valid_heads], axis=-1)  # [n, genres, k]
    y = valid_labels
    if method == "nn_logit":  # non-negative weights on the logits, shared by the genres; a bias per genre

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            z = logits_ @ w + b
            p = expit(z)
            eps = 1e-9
            value = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
            g = (p - y) / y.size
            return value, np.r_[np.einsum("ngk,ng->k", logits_, g), g.sum(axis=0)]

        theta0 = np.r_[np.full(k, 1.0 / k), np.zeros(genres)]
        bounds = [(0, None)] * k + [(None, None)] * genres
        theta = minimize(loss, theta0, jac=True, bounds=bounds, method="L-BFGS-B").x
        w, b = theta[:k], theta[k:]
        return (lambda heads: expit(np.stack([logit(h) for h in heads], -1) @ w + b)), {"weights": w.tolist()}
    if method == "lr_per_genre":  # a logistic regression on the logits per genre
        from sklearn.linear_model import LogisticRegression

        models = [LogisticRegression(C=1.0).fit(logits_[:, g, :], y[:, g]) for g in range(genres)]

        def apply(heads: list[np.ndarray]) -> np.ndarray:
            logits_in = np.stack([logit(h) for h in heads], -1)
            return np.stack([m.predict_proba(logits_in[:, g, :])[:, 1] for g, m in enumerate(models)], axis=1)

        return apply, {"weights": [m.coef_[0].tolist() for m in models]}
    if method == "simplex_prob":  # non-negative weights summing to 1 on the probabilities, best validation micro-AUC
        best, best_w = -1.0, None
        ones = np.ones((1, y.size))
        for w in _simplex(k, 20):
            p = sum(wi * h for wi, h in zip(w, valid_heads, strict=True))
            auc = float(weighted_aucs(p.ravel(), y.ravel(), ones)[0])
            if auc > best:
                best, best_w = auc, w
        return (lambda heads: sum(wi * h for wi, h in zip(best_w, heads, strict=True))), {"weights": list(best_w)}
    raise ValueError(method)


def _simplex(k: int, steps: int) -> list[tuple[float, ...]]:
    """Every k weights in multiples of 1/steps that sum to 1."""

    def parts(k: int, total: int) -> list[tuple[int, ...]]:
        return [(total,)] if k == 1 else [(a, *rest) for a in range(total + 1) for rest in parts(k - 1, total - a)]

    return [tuple(a / steps for a in p) for p in parts(k, steps)]


STACK_HEADS = {
    "deep+tfidf+use": ("deep", "tfidf_today", "use_today"),  # the issue's three heads
    "wide+tfidf+use": ("wide", "tfidf_today", "use_today"),
    "wide+deep+tfidf+use": ("wide", "deep", "tfidf_today", "use_today"),
}
STACK_METHODS = ("nn_logit", "lr_per_genre", "simplex_prob")


# ---------------------------------------------------------------------------------------------- report


def load_runs(work: Path) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    runs = []
    for record_file in sorted((work / "runs").glob("*/*/seed*.json")):
        record = json.loads(record_file.read_text())
        with np.load(record_file.with_suffix(".npz")) as z:
            arrays = dict(z)
        with np.load(work / "runs" / record["protocol"] / f"baselines-{record['settings']['encoder']}.npz") as z:
            arrays |= dict(z)
        runs.append((record, arrays))
    return runs


class BootCache:
    """Bootstrap AUCs kept on disk by (run, evaluation set, head, resamples): a run's files never change once
    written, so a later report only bootstraps what is new."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get(
        self, key: str, labels: np.ndarray, probs: np.ndarray, w: np.ndarray, macro: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.folder / f"{key}-r{len(w)}.npz"
        if path.is_file():
            with np.load(path) as z:
                if "macro" in z or not macro:
                    return z["micro"], z.get("macro")
        micro, mac = auc_pair(labels, probs, w, macro=macro)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, micro=micro, **({"macro": mac} if mac is not None else {}))
        return micro, mac


def ci(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def summarize(work: Path, resamples: int, all_stacks: bool = False) -> dict[str, Any]:
    """Every run's heads on every evaluation set: AUCs, and the paired bootstrap difference to today's
    baselines' average; the bisect (each reverted part against main, paired by seed and movie resample);
    the baselines' flavours against today's."""
    runs = load_runs(work)
    rows: list[dict[str, Any]] = []
    weights_of: dict[tuple[str, int], np.ndarray] = {}
    boot: dict[tuple[str, str, str, int, str], tuple[float, np.ndarray]] = {}  # (p, set, config, seed, head)
    baseline_rows: list[dict[str, Any]] = []
    seen_baselines: set[tuple[str, str, str]] = set()
    references: dict[tuple[str, str, str], Any] = {}
    cache = BootCache(work / "bootstrap_cache")
    for record, arrays in runs:
        protocol, config, seed = record["protocol"], record["config"], record["seed"]
        encoder = record["settings"]["encoder"]
        valid = {name: arrays[f"valid_{name}"] for name in ("model", "wide", "deep")}
        valid |= {"tfidf_today": arrays["valid_tfidf_today"], "use_today": arrays["valid_use_today"]}
        stackers: dict[str, Any] = {}  # fitted on the validation split once per run
        for hname, names in STACK_HEADS.items():
            for method in STACK_METHODS:
                if all_stacks or config == "main" or (hname, method) == ("deep+tfidf+use", "nn_logit"):
                    apply, info = fit_stack([valid[h] for h in names], arrays["valid_labels"], method)
                    stackers[f"stack:{hname}:{method}"] = (names, apply, info)
        for eval_set in PROTOCOLS[protocol][1]:
            labels = arrays[f"{eval_set}_labels"]
            n = len(labels)
            if (eval_set, n) not in weights_of:
                weights_of[eval_set, n] = bootstrap_weights(n, resamples)
            w, full = weights_of[eval_set, n], np.ones((1, n))
            heads = {name: arrays[f"{eval_set}_{name}"] for name in ("model", "wide", "deep")}
            for flavour in BASELINE_FLAVOURS:
                heads[f"tfidf_{flavour}"] = arrays[f"{eval_set}_tfidf_{flavour}"]
                heads[f"use_{flavour}"] = arrays[f"{eval_set}_use_{flavour}"]
                heads[f"average_{flavour}"] = (heads[f"tfidf_{flavour}"] + heads[f"use_{flavour}"]) / 2
            for key, (names, apply, _) in stackers.items():
                heads[key] = apply([heads[h] for h in names])
            stacks = {key: info for key, (_, _, info) in stackers.items()}
            baselines_once = (protocol, eval_set, encoder) not in seen_baselines and config in ("main", "f32_encoder")
            if baselines_once:
                seen_baselines.add((protocol, eval_set, encoder))
            shown = [
                h
                for h in heads
                if h in ("model", "wide", "deep")
                or h.startswith("stack:")
                or (baselines_once and (h.endswith("_today") or config == "main"))
            ]
            if (protocol, eval_set, encoder) not in references:  # today's baselines' average: once per encoder
                references[protocol, eval_set, encoder] = (
                    [float(a[0]) for a in auc_pair(labels, heads["average_today"], full)],
                    cache.get(
                        f"{protocol}/{eval_set}-{encoder}-average_today", labels, heads["average_today"], w, True
                    ),
                )
            ref_full, (ref_micro, ref_macro) = references[protocol, eval_set, encoder]
            with_macro = config == "main"  # the macro bootstrap costs twice the micro one: main's rows only
            for name in shown:
                probs = heads[name]
                micro_full, macro_full = (float(a[0]) for a in auc_pair(labels, probs, full))
                point_only = name in ("wide", "deep") and config != "main"  # the bisect reads the model
                if point_only:
                    micro, macro = np.full(len(w), micro_full), None
                else:
                    micro, macro = cache.get(
                        f"{protocol}/{config}/seed{seed}-{eval_set}-{name}", labels, probs, w, with_macro
                    )
                boot[protocol, eval_set, config, seed, name] = (micro_full, micro)
                rows.append(
                    {
                        "protocol": protocol,
                        "eval_set": eval_set,
                        "config": config,
                        "seed": seed,
                        "head": name,
                        "selected": record["selected"],
                        "n": n,
                        "micro": micro_full,
                        "macro": macro_full,
                        "micro_ci": ci(micro) if point_only is False else None,
                        "macro_ci": ci(macro) if macro is not None else None,
                        "diff_micro": micro_full - ref_full[0],
                        "diff_micro_ci": ci(micro - ref_micro) if point_only is False else None,
                        "diff_macro": macro_full - ref_full[1],
                        "diff_macro_ci": ci(macro - ref_macro) if macro is not None else None,
                        "stack": stacks.get(name),
                        "candidates": record["candidates"] if name == "model" else None,
                    }
                )
            if baselines_once and config == "main":
                for flavour in BASELINE_FLAVOURS[1:]:
                    for kind in ("tfidf", "use", "average"):
                        a, b = (
                            boot[protocol, eval_set, config, seed, f"{kind}_{flavour}"],
                            boot[protocol, eval_set, config, seed, f"{kind}_today"],
                        )
                        baseline_rows.append(
                            {
                                "protocol": protocol,
                                "eval_set": eval_set,
                                "encoder": encoder,
                                "baseline": kind,
                                "flavour": flavour,
                                "flavour_micro": a[0],
                                "today_micro": b[0],
                                "diff": a[0] - b[0],
                                "ci": ci(a[1] - b[1]),
                            }
                        )
    bisect = []
    keys = sorted(
        {(p, e, c, h) for (p, e, c, s, h) in boot if c != "main" and h in ("model", "stack:deep+tfidf+use:nn_logit")}
    )
    for protocol, eval_set, config, head in keys:
        seeds = sorted(
            s
            for (p, e, c, s, h) in boot
            if (p, e, c, h) == (protocol, eval_set, config, head) and (p, e, "main", s, h) in boot
        )
        if not seeds:
            continue
        diffs = [
            boot[protocol, eval_set, config, s, head][0] - boot[protocol, eval_set, "main", s, head][0] for s in seeds
        ]
        diffs_boot = np.mean(
            [
                boot[protocol, eval_set, config, s, head][1] - boot[protocol, eval_set, "main", s, head][1]
                for s in seeds
            ],
            axis=0,
        )
        bisect.append(
            {
                "protocol": protocol,
                "eval_set": eval_set,
                "config": config,
                "head": head,
                "seeds": seeds,
                "reverted_minus_main": float(np.mean(diffs)),
                "per_seed": diffs,
                "seed_sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
                "ci": ci(diffs_boot),
            }
        )
    # The encoder's part in the baselines: today's baselines on float32-product vectors against bfloat16 ones.
    for protocol, eval_set, config, seed, head in sorted(boot):
        if config != "f32_encoder" or not head.endswith("_today"):
            continue
        mains = sorted(k for k in boot if k[:3] == (protocol, eval_set, "main") and k[4] == head)
        if mains:
            a, b = boot[protocol, eval_set, config, seed, head], boot[mains[0]]
            baseline_rows.append(
                {
                    "protocol": protocol,
                    "eval_set": eval_set,
                    "encoder": "f32 vs bf16",
                    "baseline": head.removesuffix("_today"),
                    "flavour": "today, f32 products",
                    "flavour_micro": a[0],
                    "today_micro": b[0],
                    "diff": a[0] - b[0],
                    "ci": ci(a[1] - b[1]),
                }
            )
    # Per configuration, over its seeds: what validation said (what a default would be chosen on), what the
    # primary evaluation set said, and what training cost (both candidates, one core, a shared machine).
    configs = []
    for protocol in PROTOCOLS:
        for config in CONFIGS:
            chosen = [(rec, arr) for rec, arr in runs if rec["protocol"] == protocol and rec["config"] == config]
            if not chosen:
                continue
            primary = [
                r
                for r in rows
                if (r["protocol"], r["eval_set"], r["config"], r["head"])
                == (protocol, PRIMARY_SET[protocol], config, "model")
            ]
            stacked = [
                r
                for r in rows
                if (r["protocol"], r["eval_set"], r["config"], r["head"])
                == (protocol, PRIMARY_SET[protocol], config, "stack:deep+tfidf+use:nn_logit")
            ]
            cand = [rec["candidates"] for rec, _ in chosen]
            configs.append(
                {
                    "protocol": protocol,
                    "config": config,
                    "seeds": sorted(rec["seed"] for rec, _ in chosen),
                    "selected": dict(collections.Counter(rec["selected"] for rec, _ in chosen)),
                    "valid_wide": float(np.mean([c["wide"]["validation_auc_micro"] for c in cand])),
                    "valid_deep": float(np.mean([c["deep"]["validation_auc_micro"] for c in cand])),
                    "epochs_wide": float(np.mean([c["wide"]["epochs_run"] for c in cand])),
                    "train_seconds": float(np.mean([c["wide"]["seconds"] + c["deep"]["seconds"] for c in cand])),
                    "model_micro": float(np.mean([r["micro"] for r in primary])) if primary else None,
                    "model_minus_avg": float(np.mean([r["diff_micro"] for r in primary])) if primary else None,
                    "model_seed_sd": float(np.std([r["micro"] for r in primary], ddof=1)) if len(primary) > 1 else None,
                    "stack_minus_avg": float(np.mean([r["diff_micro"] for r in stacked])) if stacked else None,
                    "stack_worst_lower": float(min(r["diff_micro_ci"][0] for r in stacked)) if stacked else None,
                }
            )
    return {"rows": rows, "bisect": bisect, "baselines": baseline_rows, "configs": configs, "resamples": resamples}


def render(summary: dict[str, Any]) -> str:
    lines = [
        "| protocol | eval set | config | seed | head | micro [95% CI] | macro "
        "| micro - avg [95% CI] | macro - avg [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        head = r["head"] + (f" ({r['selected']})" if r["head"] == "model" else "")
        lines.append(
            f"| {r['protocol']} | {r['eval_set']} | {r['config']} | {r['seed']} | {head} | {r['micro']:.4f} "
            + (f"[{r['micro_ci'][0]:.4f}, {r['micro_ci'][1]:.4f}]" if r["micro_ci"] else "")
            + f" | {r['macro']:.4f} | {r['diff_micro']:+.4f} "
            + (f"[{r['diff_micro_ci'][0]:+.4f}, {r['diff_micro_ci'][1]:+.4f}]" if r["diff_micro_ci"] else "")
            + " | "
            + (
                f"{r['diff_macro']:+.4f} [{r['diff_macro_ci'][0]:+.4f}, {r['diff_macro_ci'][1]:+.4f}] |"
                if r["diff_macro_ci"]
                else f"{r['diff_macro']:+.4f} |"
            )
        )
    lines += [
        "",
        "| protocol | eval set | part reverted | head | seeds | reverted - main, micro (mean) | per seed | seed sd "
        "| 95% CI (movies, seed mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in summary["bisect"]:
        sd = f"{b['seed_sd']:.4f}" if b["seed_sd"] is not None else "-"
        lines.append(
            f"| {b['protocol']} | {b['eval_set']} | {b['config']} | {b['head']} | {','.join(map(str, b['seeds']))} | "
            f"{b['reverted_minus_main']:+.4f} | {' '.join(f'{d:+.4f}' for d in b['per_seed'])} | {sd} | "
            f"[{b['ci'][0]:+.4f}, {b['ci'][1]:+.4f}] |"
        )
    lines += [
        "",
        "| protocol | eval set | encoder | baseline | flavour | its micro | today's micro | flavour - today [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in summary["baselines"]:
        lines.append(
            f"| {b['protocol']} | {b['eval_set']} | {b['encoder']} | {b['baseline']} | {b['flavour']} | "
            f"{b['flavour_micro']:.4f} | "
            f"{b['today_micro']:.4f} | {b['diff']:+.4f} [{b['ci'][0]:+.4f}, {b['ci'][1]:+.4f}] |"
        )
    lines += [
        "",
        "| protocol | config | seeds | selected | valid micro wide / deep | wide epochs | train s (both) "
        "| model micro (primary) | seed sd | model - avg | stack - avg (worst lower bound) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in summary.get("configs", []):
        sd = f"{c['model_seed_sd']:.4f}" if c["model_seed_sd"] is not None else "-"
        lines.append(
            f"| {c['protocol']} | {c['config']} | {','.join(map(str, c['seeds']))} | {c['selected']} | "
            f"{c['valid_wide']:.4f} / {c['valid_deep']:.4f} | "
            f"{c['epochs_wide']:.1f} | {c['train_seconds']:.1f} | {c['model_micro']:.4f} | {sd} | "
            f"{c['model_minus_avg']:+.4f} | "
            f"{c['stack_minus_avg']:+.4f} ({c['stack_worst_lower']:+.4f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--protocols", nargs="+", default=["A", "B"], choices=sorted(PROTOCOLS))
    run.add_argument("--configs", nargs="+", default=["main"], choices=sorted(CONFIGS))
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    rep = sub.add_parser("report")
    rep.add_argument("--work", type=Path, required=True)
    rep.add_argument("--bootstrap", type=int, default=1000)
    rep.add_argument("--out", type=Path)
    rep.add_argument("--all-stacks", action="store_true", help="every stacker for every config, not only main")
    args = parser.parse_args()
    try:  # large arrays from the heap, not fresh mmaps (page faults made the bootstrap ten times slower)
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except OSError:
        pass
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.work.resolve()
    if args.command == "run":
        setup_threads()
        for protocol in args.protocols:
            for config in args.configs:
                run_baselines(work, protocol, CONFIGS[config].encoder)
                for seed in args.seeds:
                    started = time.monotonic()
                    run_one(work, protocol, config, seed)
                    log.info("TIMING %s %s seed %d: %.1f s", protocol, config, seed, time.monotonic() - started)
    else:
        summary = summarize(work, args.bootstrap, args.all_stacks)
        text = render(summary)
        print(text)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
