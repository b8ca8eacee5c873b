"""Import TensorFlow the one way this project supports.

`hub.KerasLayer` works with tf-keras (Keras 2) only; TF_USE_LEGACY_KERAS must be set before TensorFlow
is first imported. TensorFlow Text is imported for its ops: the USE module's graph tokenises with
`SentencepieceOp`, which must be registered before such a SavedModel loads. Modules that need
TensorFlow import it from here.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep INFO noise about CPU features out of task logs
# oneDNN keeps memory for every new input shape (each embedding batch is padded to its own length): after
# 5,000 overviews, 20,000 more grew the process by 225 MB with it and by 17 MB without, and the embed
# stage reached 3.2 GB at 200,000 rows. Without it, training is about 10% slower; set
# TF_ENABLE_ONEDNN_OPTS=1 to choose speed.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops the USE module uses)
import tf_keras

__all__ = ["hub", "tf", "tf_keras"]
