"""Stage: embed every prepared description once, into the embedding cache.

Train and evaluate then read vectors from the cache; a weekly retrain embeds only new or changed
descriptions. The module is loaded only if something is missing from the cache.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tasks.data.prepare import MOVIES_FILE
from tasks.embedding.cache import EmbeddingCache, fill_cache
from tasks.results import EmbedResult

log = logging.getLogger(__name__)


class ModuleEmbedder:
    """Calls a TF Hub text-embedding module on batches of strings; loads it on first use."""

    def __init__(self, handle: str):
        self.handle = handle

    @functools.cached_property
    def _layer(self) -> Any:
        from tasks.tensorflow_runtime import hub

        log.info("loading embedding module %s", self.handle)
        return hub.KerasLayer(self.handle, trainable=False)

    def __call__(self, texts: list[str]) -> np.ndarray:
        from tasks.tensorflow_runtime import tf

        vectors: np.ndarray = self._layer(tf.constant(texts)).numpy()
        return vectors


def embed_dataset(prepared_dir: Path, module_handle: str, cache: EmbeddingCache) -> EmbedResult:
    """Make sure every overview in `prepared_dir` has a cached vector; return what was computed."""
    texts = pq.read_table(prepared_dir / MOVIES_FILE, columns=["overview"]).column("overview").to_pylist()
    stats = fill_cache(texts, ModuleEmbedder(module_handle), cache)
    return {
        "texts": stats["texts"],
        "from_cache": stats["from_cache"],
        "computed": stats["computed"],
        "module_fingerprint": cache.module_fingerprint,
    }
