"""TensorFlow Serving in docker-compose.yaml is the TensorFlow release that exports the models.

A SavedModel written by TensorFlow 2.N may use ops or op attributes that an older model server lacks (it
then refuses the model at load time), so the serving image's tag (`tensorflow/serving:X.Y.Z`, the CPU
image; its version is the TensorFlow it is built on) must have the minor version of the `tensorflow` pin in
requirements.txt. The TF Text pin, whose ops the exported graph holds, follows the same minor version.
"""

from __future__ import annotations

import re

import yaml

from tests.sample_data import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
SERVING_IMAGE = re.compile(r"^tensorflow/serving:(?P<version>\d+\.\d+\.\d+)$")
DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(?P<default>[^}]+)\}$")  # ${TF_SERVING_IMAGE:-tensorflow/serving:…}


def serving_image(compose_text: str) -> str:
    """The tensorflow-serving service's image, its `${VAR:-default}` resolved to the default."""
    image = yaml.safe_load(compose_text)["services"]["tensorflow-serving"]["image"]
    default = DEFAULT.match(image)
    return default["default"] if default else image


def pinned(requirements_text: str, package: str) -> str:
    """The exact `package==version` pin of a requirements file."""
    pins = re.findall(rf"^{re.escape(package)}==([^\s#;]+)", requirements_text, re.MULTILINE)
    assert len(pins) == 1, f"requirements.txt must pin {package} exactly once: {pins}"
    return pins[0]


def minor(version: str) -> tuple[int, int]:
    major, minor_version, *_ = version.split(".")
    return int(major), int(minor_version)


def test_the_serving_image_is_the_exporting_tensorflow_release() -> None:
    image = serving_image(COMPOSE_FILE.read_text())
    match = SERVING_IMAGE.match(image)
    assert match, f"{image}: TF Serving's CPU image is tagged tensorflow/serving:X.Y.Z"
    tensorflow = pinned(REQUIREMENTS.read_text(), "tensorflow")
    assert minor(match["version"]) == minor(tensorflow), f"{image} serves models exported by tensorflow=={tensorflow}"


def test_tensorflow_text_matches_tensorflow() -> None:
    requirements = REQUIREMENTS.read_text()
    assert minor(pinned(requirements, "tensorflow-text")) == minor(pinned(requirements, "tensorflow"))


def test_the_readers_see_a_mismatch() -> None:
    """On the file as it was before this check: 2.18.0 against tensorflow==2.21.0 disagrees."""
    old = "services:\n  tensorflow-serving:\n    image: ${TF_SERVING_IMAGE:-tensorflow/serving:2.18.0}\n"
    assert serving_image(old) == "tensorflow/serving:2.18.0"
    requirements = "tensorflow==2.21.0\ntensorflow-text==2.21.1\ntf-keras==2.21.0\n"
    assert pinned(requirements, "tensorflow") == "2.21.0"
    assert minor(SERVING_IMAGE.match(serving_image(old))["version"]) != minor(pinned(requirements, "tensorflow"))
