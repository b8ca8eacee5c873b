"""docker-compose.yaml: valid for Debian's docker-compose, the deployment's services, the project's folders
mounted in every Airflow container, TensorFlow Serving on loopback only, and no secret in the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sample_data import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
SERVICES = {*AIRFLOW_SERVICES, "postgres", "redis", "tensorflow-serving", "mailpit"}
# Project folder -> where every Airflow container sees it.
PROJECT_MOUNTS = {
    "dags": "/opt/airflow/dags",
    "tasks": "/opt/airflow/project/tasks",
    "orchestration": "/opt/airflow/project/orchestration",
    "expectations": "/opt/airflow/project/expectations",
}
# Pipeline setting -> its mount inside the Airflow containers.
DATA_MOUNTS = {
    "GENRE_DATA_ROOT": "/opt/airflow/data",
    "GENRE_ARTIFACTS_DIR": "/opt/airflow/artifacts",
    "GENRE_MODEL_DIR": "/opt/airflow/models",
}
SECRET_VARIABLES = (
    "_AIRFLOW_WWW_USER_PASSWORD",
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|^KEY$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/@\s:]*:(.+?)@")
FROM_ENV = re.compile(r"\$\{[A-Z_]+(:[?-][^}]*)?\}")
COMPOSE_TIMEOUT = 120


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.skip("the docker-compose binary is missing (apt-get install -y docker-compose): cannot validate")
    return path


def compose_config(env_file: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", *flags],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT,
    )


def env_values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Za-z_]\w*=", line))
    return {name: value for name, value in pairs}


@pytest.fixture(scope="module")
def sentinels() -> dict[str, str]:
    """A unique value per secret, to trace where each one lands."""
    return {name: f"sentinel-{name.lower().strip('_')}-{uuid.uuid4().hex}" for name in SECRET_VARIABLES}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory, sentinels: dict[str, str]) -> dict[str, Any]:
    """`docker-compose config` with .env.example's settings and sentinel secrets."""
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    values = {**env_values(ENV_EXAMPLE), **sentinels}
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def volume_pairs(service: dict[str, Any]) -> dict[str, str]:
    """target -> source, from docker-compose 1.x strings or the long syntax of Compose v2."""
    pairs = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            pairs[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target, *_ = volume.split(":")
            pairs[target] = source
    return pairs


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host ip, container port) of each published port, from short or long syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((str(port.get("host_ip", "")), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            ports.append((parts[0] if len(parts) == 3 else "", int(parts[-1])))
    return ports


def test_compose_file_validates_with_the_example_env() -> None:
    result = compose_config(ENV_EXAMPLE, "-q")
    assert result.returncode == 0, result.stderr


def test_the_deployment_services_exist(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) >= SERVICES
    for name in AIRFLOW_SERVICES:
        service = resolved["services"][name]
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert re.match(r"redis://(:[^@]*@)?redis:6379/", service["environment"]["AIRFLOW__CELERY__BROKER_URL"])
        assert Path(service["build"]["context"]) == PROJECT_ROOT, f"{name} runs the project image"
    assert resolved["services"]["airflow-worker"]["command"] in ("celery worker", ["celery", "worker"])
    assert "healthcheck" in resolved["services"]["airflow-apiserver"]


def test_the_image_is_the_official_one_plus_the_project() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", dockerfile, re.M)
    assert re.search(r"pip install .*-r \"?\$\{PROJECT_DIR\}/requirements\.txt", dockerfile)
    assert "pip install --no-cache-dir --no-deps -e" in dockerfile
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text()


def test_airflow_containers_mount_the_project_and_the_pipeline_folders(resolved: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        service = resolved["services"][name]
        mounts = volume_pairs(service)
        for folder, target in PROJECT_MOUNTS.items():
            assert Path(mounts.get(target, "")) == PROJECT_ROOT / folder, f"{name}: {folder}/ -> {target}"
        for setting, target in DATA_MOUNTS.items():
            assert target in mounts, f"{name}: nothing mounted at {target}"
            assert service["environment"][setting] == target, f"{name}: {setting}"
        dataset = service["environment"]["MOVIES_DATASET_URL"]
        assert Path(dataset).parent == Path(DATA_MOUNTS["GENRE_DATA_ROOT"]), f"{name}: dataset in the data mount"


def test_tensorflow_serving_serves_the_promoted_models_on_loopback_only(resolved: dict[str, Any]) -> None:
    serving = resolved["services"]["tensorflow-serving"]
    assert serving["image"].startswith("tensorflow/serving")
    assert serving["environment"]["MODEL_NAME"] == "movie_genre"
    ports = published_ports(serving)
    assert ("127.0.0.1", 8501) in ports
    assert all(host == "127.0.0.1" for host, _ in ports), ports
    models = volume_pairs(resolved["services"]["airflow-worker"])["/opt/airflow/models"]
    assert volume_pairs(serving)["/models/movie_genre"] == f"{models}/movie_genre"


def test_alerts_go_to_mailpit_as_smtp_default(resolved: dict[str, Any]) -> None:
    assert resolved["services"]["mailpit"]["image"].startswith("axllent/mailpit")
    for name in AIRFLOW_SERVICES:
        environment = resolved["services"][name]["environment"]
        connection = json.loads(environment["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert (connection["conn_type"], connection["host"], connection["port"]) == ("smtp", "mailpit", 1025)
        assert environment["GENRE_ALERT_EMAILS"], name
    assert all(host == "127.0.0.1" for host, _ in published_ports(resolved["services"]["mailpit"]))


def _secret_settings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, value) of a setting named like a secret (a file path aside), or of a URL's password,
    in the raw YAML, JSON connection strings included."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if isinstance(value, str | int) and SECRET_NAME.search(str(key)) and not str(key).endswith("_FILE"):
                found.append((where, str(value)))
            found += _secret_settings(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _secret_settings(value, f"{path}[{index}]")
    elif isinstance(node, str) and node.startswith("{"):
        found += _secret_settings(json.loads(node), path)
    elif isinstance(node, str):
        found += [(path, match) for match in URL_CREDENTIALS.findall(node)]
    return found


def test_no_literal_secret_in_the_compose_file(raw: dict[str, Any]) -> None:
    settings = _secret_settings(raw)
    assert settings, "the secret settings should be found"
    literal = [(path, value) for path, value in settings if not FROM_ENV.fullmatch(value)]
    assert literal == [], "secrets must come from .env"
    text = COMPOSE_FILE.read_text()
    for name in SECRET_VARIABLES:
        assert f"${{{name}:?" in text, f"{name} must be required from .env, without a default"
        assert env_values(ENV_EXAMPLE)[name] == "change-me", f".env.example must not hold a real {name}"


def test_secrets_reach_the_containers_from_the_env_file(resolved: dict[str, Any], sentinels: dict[str, str]) -> None:
    scheduler = resolved["services"]["airflow-scheduler"]["environment"]
    assert sentinels["POSTGRES_PASSWORD"] in scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert scheduler["AIRFLOW__CORE__FERNET_KEY"] == sentinels["AIRFLOW_FERNET_KEY"]
    assert scheduler["AIRFLOW__API_AUTH__JWT_SECRET"] == sentinels["AIRFLOW_JWT_SECRET"]
    assert scheduler["AIRFLOW__API__SECRET_KEY"] == sentinels["AIRFLOW_API_SECRET_KEY"]
    init = resolved["services"]["airflow-init"]["environment"]
    assert init["_AIRFLOW_WWW_USER_PASSWORD"] == sentinels["_AIRFLOW_WWW_USER_PASSWORD"]
    assert "_AIRFLOW_WWW_USER_PASSWORD" not in scheduler, "the admin password only reaches airflow-init"
