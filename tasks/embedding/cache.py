"""Frozen text embeddings, computed once per (module fingerprint, text) and kept on disk.

The embedding module is frozen, so a text's vector never changes while the module does not: a weekly
retrain only needs to embed new or changed descriptions. The cache of one module is a folder of shard
files (`<fingerprint>/<shard>.npz`), each holding the sha256 keys of its texts, their float32 vectors
and a checksum. A run adds new shards (one per 20,000 new texts), each written under a temporary name
and renamed, so two runs writing at once never touch the same file. A shard that fails to load or to
verify is set aside and its texts are embedded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
import zipfile
from collections.abc import Callable, Collection, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from tasks.artifacts import atomic_path
from tasks.errors import ConfigError

log = logging.getLogger(__name__)

KEY_BYTES = 32
EMBED_BATCH_SIZE = 256
SHARD_TEXTS = 20_000  # 40 MB of 512-d vectors a shard: what the embed stage holds at most

Embedder = Callable[[list[str]], np.ndarray]
Read = TypeVar("Read")


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


# A module fingerprint names a folder: one path component, no "." or ".." (it may come from a
# module_info.json inside a module folder named by a run param).
FINGERPRINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,199}")


@dataclass(frozen=True)
class EmbeddingCache:
    root: Path
    module_fingerprint: str

    def __post_init__(self) -> None:
        if not FINGERPRINT.fullmatch(self.module_fingerprint) or ".." in self.module_fingerprint:
            raise ConfigError(
                f"embedding module fingerprint {self.module_fingerprint[:80]!r} is not a safe folder name"
            )

    @property
    def folder(self) -> Path:
        return self.root / self.module_fingerprint

    def lookup(self, keys: Collection[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of those `keys` the cache has, read one shard at a time: memory holds what
        was found and one shard, not the whole cache. A shard none of whose keys is
        asked for has only its keys read, so looking up a batch of rows at a time stays cheap."""
        wanted = set(keys)
        found: dict[bytes, np.ndarray] = {}
        for shard in self._shard_files():
            shard_keys = self._read(shard, _read_keys)
            if shard_keys is None or not any(bytes(key) in wanted for key in shard_keys):
                continue
            read = self._read(shard, _read_shard)
            if read is None:
                continue
            shard_keys, values = read
            rows = [row for row, key in enumerate(shard_keys) if bytes(key) in wanted]
            # Indexing copies the rows, so the shard's array is freed once the loop moves on.
            found.update(zip((bytes(shard_keys[row]) for row in rows), values[rows], strict=True))
        return found

    def keys(self) -> set[bytes]:
        """The keys of every cached vector (each shard verified, one at a time)."""
        return {bytes(key) for keys, _ in self._shards() for key in keys}

    def _shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for shard in self._shard_files():
            read = self._read(shard, _read_shard)
            if read is not None:
                yield read

    def _shard_files(self) -> list[Path]:
        return sorted(self.folder.glob("*.npz"))

    @staticmethod
    def _read(shard: Path, reader: Callable[[Path], Read]) -> Read | None:
        """`reader(shard)`, or None with the shard set aside if it is unreadable."""
        try:
            return reader(shard)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("embedding cache shard %s is unreadable (%s): setting it aside", shard, err)
            shard.replace(shard.with_suffix(".corrupt"))
            return None

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path | None:
        """Store new vectors as one new shard."""
        if not keys:
            return None
        shard = self.folder / f"{uuid.uuid4().hex}.npz"
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        values = np.ascontiguousarray(vectors, dtype=np.float32)
        with atomic_path(shard) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle, keys=key_array, vectors=values, checksum=np.frombuffer(_checksum(key_array, values), np.uint8)
            )
            handle.flush()
            os.fsync(handle.fileno())
        return shard


def embed_with_cache(texts: Sequence[str], embed: Embedder, cache: EmbeddingCache) -> tuple[np.ndarray, dict[str, int]]:
    """Vectors for `texts` in order: cached ones read (only theirs, a shard at a time), the others
    computed with `embed` and cached."""
    keys = [text_key(text) for text in texts]
    known = cache.lookup(keys)
    missing = _missing(keys, texts, known)
    for chunk_keys, vectors in _embed_and_store(missing, embed, cache):
        known.update(zip(chunk_keys, vectors, strict=True))
    return np.stack([known[key] for key in keys]).astype(np.float32, copy=False), _stats(keys, missing)


def fill_cache(texts: Sequence[str], embed: Embedder, cache: EmbeddingCache) -> dict[str, int]:
    """Embed and cache what the cache lacks of `texts`, a shard at a time: memory holds one shard's
    vectors, not all of them."""
    keys = [text_key(text) for text in texts]
    missing = _missing(keys, texts, cache.keys())
    for _ in _embed_and_store(missing, embed, cache):
        pass
    return _stats(keys, missing)


def _missing(keys: Sequence[bytes], texts: Sequence[str], known: Container[bytes]) -> dict[bytes, str]:
    missing: dict[bytes, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in known:
            missing.setdefault(key, text)
    return missing


def _embed_and_store(
    missing: dict[bytes, str], embed: Embedder, cache: EmbeddingCache
) -> Iterator[tuple[list[bytes], np.ndarray]]:
    """Embed `missing` texts and store them, one shard of SHARD_TEXTS at a time; yield each shard."""
    items = list(missing.items())
    for start in range(0, len(items), SHARD_TEXTS):
        chunk = items[start : start + SHARD_TEXTS]
        texts = [text for _, text in chunk]
        vectors = np.concatenate([embed(batch) for batch in _batches(texts, EMBED_BATCH_SIZE)])
        keys = [key for key, _ in chunk]
        cache.add(keys, vectors)
        yield keys, vectors


def _stats(keys: Sequence[bytes], missing: dict[bytes, str]) -> dict[str, int]:
    stats = {"texts": len(keys), "from_cache": len(set(keys) - set(missing)), "computed": len(missing)}
    log.info("embeddings: %s", stats)
    return stats


def _read_keys(shard: Path) -> np.ndarray:
    """A shard's keys alone (the file's other arrays are not read), unverified: a shard is verified when
    its vectors are read."""
    with np.load(shard, allow_pickle=False) as data:
        keys: np.ndarray = data["keys"]
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
        raise ValueError("keys have the wrong shape")
    return keys


def _read_shard(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shard, allow_pickle=False) as data:
        keys, values, checksum = data["keys"], data["vectors"], data["checksum"].tobytes()
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or values.ndim != 2 or len(keys) != len(values):
        raise ValueError("shapes do not match")
    if checksum != _checksum(keys, values):
        raise ValueError("checksum mismatch")
    return keys, values


def _checksum(keys: np.ndarray, values: np.ndarray) -> bytes:
    digest = hashlib.sha256(keys.tobytes())
    digest.update(values.tobytes())
    return digest.digest()


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
