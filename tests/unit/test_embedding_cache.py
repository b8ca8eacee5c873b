"""The embedding cache, with the real default module behind it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from tasks.embedding.cache import EmbeddingCache, embed_with_cache, fill_cache
from tasks.embedding.embed import ModuleEmbedder, embed_dataset

pytestmark = pytest.mark.slow

TEXTS = ["A heist goes wrong.", "Two strangers fall in love in Paris.", "A heist goes wrong.", ""]


class CountingEmbedder:
    """The real module, counting every text it is asked to embed."""

    def __init__(self, handle: str):
        self.module = ModuleEmbedder(handle)
        self.embedded: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return self.module(texts)


def test_each_text_is_embedded_once(glove_module: str, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "fp")
    embedder = CountingEmbedder(glove_module)
    first, stats = embed_with_cache(TEXTS, embedder, cache)
    assert sorted(embedder.embedded) == sorted(set(TEXTS)), "duplicates within a call are embedded once"
    assert stats == {"texts": 4, "from_cache": 0, "computed": 3}
    again, stats = embed_with_cache([*TEXTS, "A new movie."], embedder, cache)
    assert embedder.embedded.count("A heist goes wrong.") == 1
    assert embedder.embedded[-1] == "A new movie." and stats["computed"] == 1
    np.testing.assert_array_equal(again[:4], first)
    np.testing.assert_allclose(first[0], ModuleEmbedder(glove_module)(["A heist goes wrong."])[0], rtol=1e-6)


def test_corrupt_shard_falls_back_to_computing(glove_module: str, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "fp")
    expected, _ = embed_with_cache(TEXTS, ModuleEmbedder(glove_module), cache)
    shard = next(cache.folder.glob("*.npz"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    embedder = CountingEmbedder(glove_module)
    vectors, stats = embed_with_cache(TEXTS, embedder, cache)
    assert stats["computed"] == 3
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert list(cache.folder.glob("*.corrupt")), "the corrupt shard is set aside for diagnosis"


def test_a_cache_is_per_module_fingerprint(glove_module: str, tmp_path: Path) -> None:
    embed_with_cache(TEXTS, ModuleEmbedder(glove_module), EmbeddingCache(tmp_path, "module-a"))
    embedder = CountingEmbedder(glove_module)
    _, stats = embed_with_cache(TEXTS, embedder, EmbeddingCache(tmp_path, "module-b"))
    assert stats["computed"] == 3


def _embed_in_process(handle: str, root: str, texts: list[str]) -> None:
    embed_with_cache(texts, ModuleEmbedder(handle), EmbeddingCache(Path(root), "fp"))


def test_concurrent_writers_do_not_corrupt(glove_module: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    batches = [[f"Movie {i} of writer {w}." for i in range(50)] + TEXTS for w in range(3)]
    writers = [context.Process(target=_embed_in_process, args=(glove_module, str(tmp_path), b)) for b in batches]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    cached = EmbeddingCache(tmp_path, "fp").keys()
    assert len(cached) == 3 * 50 + 3
    assert not list((tmp_path / "fp").glob("*.corrupt"))


def test_embed_stage_fills_the_cache_for_every_prepared_movie(
    glove_module: str, prepared_sample: Path, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path, "fp")
    first = embed_dataset(prepared_sample, glove_module, cache)
    second = embed_dataset(prepared_sample, glove_module, cache)
    assert first["computed"] > 0 and first["from_cache"] == 0
    assert second["computed"] == 0 and second["from_cache"] == first["computed"]


def test_filling_a_large_cache_writes_a_shard_at_a_time(
    glove_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tasks.embedding.cache.SHARD_TEXTS", 3)
    texts = [f"Movie {number}: a story of {word}." for number, word in enumerate(["love", "war", "ghosts"] * 3)]
    cache = EmbeddingCache(tmp_path, "fp")
    embedder = CountingEmbedder(glove_module)
    assert fill_cache([*texts, texts[0]], embedder, cache) == {"texts": 10, "from_cache": 0, "computed": 9}
    assert len(list(cache.folder.glob("*.npz"))) == 3, "nine new texts, three to a shard"
    assert len(cache.keys()) == 9
    assert fill_cache(texts, embedder, cache)["computed"] == 0 and len(embedder.embedded) == 9
    cached, stats = embed_with_cache(texts, embedder, cache)
    assert stats["from_cache"] == 9
    np.testing.assert_allclose(cached, ModuleEmbedder(glove_module)(texts), atol=1e-6)  # batch order rounding


class _Payload:
    """Unpickling this runs open(marker, "w"): proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_shard_holding_a_pickle_is_set_aside_unread(tmp_path: Path) -> None:
    """A cache shard is data from disk: loaded with allow_pickle=False, so a pickled object in it never runs."""
    cache = EmbeddingCache(tmp_path, "fp")
    cache.folder.mkdir(parents=True)
    armed = tmp_path / "armed"
    shard = cache.folder / "evil.npz"
    np.savez(shard, keys=np.array([_Payload(tmp_path / "pwned")], dtype=object), vectors=np.zeros((1, 2)))
    np.savez(tmp_path / "live.npz", keys=np.array([_Payload(armed)], dtype=object))
    with np.load(tmp_path / "live.npz", allow_pickle=True) as live:
        live["keys"]
    assert armed.exists(), "the payload is live when pickles are allowed"
    assert cache.keys() == set()
    assert not (tmp_path / "pwned").exists()
    assert [p.name for p in cache.folder.iterdir()] == ["evil.corrupt"]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_an_empty_or_truncated_shard_is_set_aside(tmp_path: Path, content: bytes) -> None:
    cache = EmbeddingCache(tmp_path, "fp")
    cache.add([b"k" * 32], np.ones((1, 4), "float32"))
    (cache.folder / "broken.npz").write_bytes(content)
    assert cache.keys() == {b"k" * 32}, "the good shard is still read"
    assert (cache.folder / "broken.corrupt").read_bytes() == content


@pytest.mark.parametrize("fingerprint", ["..", "../../elsewhere", "a/b", "", ".hidden", "x\n"])
def test_a_fingerprint_that_is_not_a_folder_name_is_refused(tmp_path: Path, fingerprint: str) -> None:
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="not a safe folder name"):
        EmbeddingCache(tmp_path / "cache", fingerprint)
    assert not (tmp_path / "cache").exists()


def test_lookup_reads_the_vectors_only_of_shards_holding_asked_keys(tmp_path: Path) -> None:
    """A shard whose vectors are damaged is caught when they are needed, and only then: a lookup of other
    keys reads just its keys (what lets validate and evaluate look up a batch of rows at a time)."""
    cache = EmbeddingCache(tmp_path, "fp")
    cache.add([b"a" * 32], np.full((1, 4), 1.0, "float32"))
    damaged = cache.add([b"b" * 32], np.full((1, 4), 2.0, "float32"))
    with np.load(damaged) as data:
        arrays = dict(data)
    np.savez(damaged, **(arrays | {"vectors": arrays["vectors"] + 1}))  # the checksum no longer matches

    found = cache.lookup([b"a" * 32])
    assert list(found) == [b"a" * 32] and found[b"a" * 32].tolist() == [1.0] * 4
    assert damaged.exists(), "its vectors were not read, so it was not verified"
    assert cache.lookup([b"a" * 32, b"b" * 32]).keys() == {b"a" * 32}
    assert damaged.with_suffix(".corrupt").exists(), "read when asked for, it fails to verify and is set aside"
