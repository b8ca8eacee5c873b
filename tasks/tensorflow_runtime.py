"""Import TensorFlow the one way this project supports.

`hub.KerasLayer` works with tf-keras (Keras 2) only; TF_USE_LEGACY_KERAS must be set before TensorFlow
is first imported. Modules that need TensorFlow import it from here.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep INFO noise about CPU features out of task logs

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

__all__ = ["hub", "tf", "tf_keras"]
