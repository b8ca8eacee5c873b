"""Every op in an exported model's graph is one TensorFlow Serving's standard build has: core TensorFlow's
or TensorFlow Text's (the model server links the TF Text ops; any other custom op would fail to load there
with "Op type not registered").

The ops are read from `saved_model.pb` itself (each MetaGraphDef's graph and every function of its library),
and the two registries are taken in a fresh interpreter: the ops registered by `import tensorflow`, then
those `import tensorflow_text` adds. A test process has usually imported TensorFlow Text already, so the
core set cannot be read here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sample_data import PROJECT_ROOT

# Prints {"graph": [op types of the SavedModel argv[1]], "core": [...], "text": [...]} as JSON.
_OPS_PROBE = """
import json, sys
from pathlib import Path

import tensorflow  # noqa: F401  (registers core TensorFlow's ops, and nothing else)
from tensorflow.core.framework import op_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.client import pywrap_tf_session


def registered():
    ops = op_def_pb2.OpList()
    ops.ParseFromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
    return {op.name for op in ops.op}


saved = saved_model_pb2.SavedModel()
saved.ParseFromString((Path(sys.argv[1]) / "saved_model.pb").read_bytes())
graph = set()
for meta in saved.meta_graphs:
    functions = {f.signature.name for f in meta.graph_def.library.function}
    nodes = [*meta.graph_def.node, *(n for f in meta.graph_def.library.function for n in f.node_def)]
    graph |= {node.op for node in nodes if node.op not in functions}  # a call of a library function is no op
core = registered()
import tensorflow_text  # noqa: E402, F401
text = registered() - core
print(json.dumps({"graph": sorted(graph), "core": sorted(core), "text": sorted(text)}))
"""


def exported_ops(model_dir: Path) -> dict[str, set[str]]:
    """The op types in `model_dir`'s graph, and the ops core TensorFlow and TensorFlow Text register."""
    result = subprocess.run(
        [sys.executable, "-c", _OPS_PROBE, str(model_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: set(ops) for name, ops in json.loads(result.stdout.splitlines()[-1]).items()}


def unservable(ops: dict[str, set[str]]) -> set[str]:
    """The graph's ops that neither core TensorFlow nor TensorFlow Text registers."""
    return ops["graph"] - ops["core"] - ops["text"]


def test_the_registries_tell_core_from_text_ops(glove_export: Path) -> None:
    """The probe itself: the SentencePiece tokenizer is TF Text's, not core's; an op nobody registers is caught."""
    ops = exported_ops(glove_export)
    assert {"MatMul", "StatefulPartitionedCall", "LookupTableFindV2"} <= ops["core"]
    assert "SentencepieceTokenizeWithOffsetsOp" in ops["text"] - ops["core"]
    assert unservable({**ops, "graph": ops["graph"] | {"MyCustomOp"}}) == {"MyCustomOp"}


def test_a_glove_export_uses_only_ops_tf_serving_has(glove_export: Path) -> None:
    ops = exported_ops(glove_export)
    assert len(ops["graph"]) > 10 and "MatMul" in ops["graph"], "the function library was walked"
    assert unservable(ops) == set()


@pytest.fixture(scope="module")
def use_export(prepared_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real serving export on the project's default module (USE multilingual v3, SentencePiece in its graph)."""
    from tasks.embedding.cache import EmbeddingCache
    from tasks.embedding.modules import ensure_default_module
    from tasks.model.train import TrainConfig, train_model

    module = ensure_default_module(tmp_path_factory.mktemp("modules"))
    config = TrainConfig(
        embedding_module=module["path"], epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=0
    )
    out = tmp_path_factory.mktemp("use-run") / "model"
    train_model(prepared_sample, out, config, EmbeddingCache(tmp_path_factory.mktemp("cache"), module["fingerprint"]))
    return out


@pytest.mark.slow
def test_a_use_export_uses_only_ops_tf_serving_has(use_export: Path) -> None:
    """The promoted model's own embedding: its SentencePiece ops are TF Text's, which TF Serving links."""
    ops = exported_ops(use_export)
    assert "SentencepieceTokenizeWithOffsetsOp" in ops["graph"], "the tokenizer is in the exported graph"
    assert unservable(ops) == set()


# What the README tells users of the promoted model: load it after `import tensorflow_text`.
_LOAD = """
import sys
import tensorflow as tf
if sys.argv[2] == "with-text":
    import tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
print(serve(descriptions=tf.constant(["A detective hunts a killer."]))["probabilities"].shape)
"""


@pytest.mark.slow
def test_loading_a_use_export_needs_tensorflow_text(use_export: Path) -> None:
    def load(mode: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-c", _LOAD, str(use_export), mode]
        return subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)

    without = load("without-text")
    assert without.returncode != 0
    # The first SentencePiece op the loader meets (SentencepieceOp, the tokenizer's resource) names the gap.
    assert re.search(r"Op type not registered 'Sentencepiece\w*Op'", without.stderr), without.stderr[-2000:]
    with_text = load("with-text")
    assert with_text.returncode == 0, with_text.stderr[-3000:]
    assert with_text.stdout.splitlines()[-1] == "(1, 9)"
