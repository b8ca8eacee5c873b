from pathlib import Path

import pytest

from tasks.config import DEFAULT_GENRES, PARAM_SCHEMAS, RunConfig, Settings
from tasks.errors import ConfigError


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        model_dir=tmp_path / "models",
        artifacts_dir=tmp_path / "artifacts",
        dataset_url="/data/m.csv",
        data_root=tmp_path,
    )


def test_defaults(settings: Settings) -> None:
    config = RunConfig.from_params({}, settings)
    assert config.dataset_url == "/data/m.csv"
    assert config.genres == DEFAULT_GENRES
    assert config.auc_threshold == PARAM_SCHEMAS["auc_threshold"]["default"]


def test_params_override_defaults(settings: Settings) -> None:
    config = RunConfig.from_params({"epochs": 3, "auc_threshold": 0.5, "genres": ["Comedy", "Drama"]}, settings)
    assert (config.epochs, config.auc_threshold, config.genres) == (3, 0.5, ("Comedy", "Drama"))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"epochs": -1}, "epochs"),
        ({"auc_threshold": 7}, "auc_threshold"),
        ({"batch_size": "big"}, "batch_size"),
        ({"gate_metric": "accuracy"}, "gate_metric"),
        ({"genres": []}, "genres"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"no_such_param": 1}, "no_such_param"),
        ({"dataset_url": "ftp://example.org/movies.csv"}, "dataset_url"),
        ({"dataset_url": "gopher://127.0.0.1:6379/_FLUSHALL"}, "dataset_url"),
        ({"max_download_bytes": 0}, "max_download_bytes"),
        ({"test_fraction": 0.9}, "test_fraction"),
        ({"dataset_url": "data:text/csv,id,overview,genres"}, "dataset_url"),
        ({"dataset_url": "/data/../etc/passwd"}, "dataset_url"),
        ({"dataset_url": "file:///data/../../etc/passwd"}, "dataset_url"),
        ({"dataset_url": "movies.csv\n../../etc/passwd"}, "dataset_url"),
        ({"embedding_module": "../../../../tmp/evil_module"}, "embedding_module"),
        ({"embedding_module": "/models/use/../../tmp/evil"}, "embedding_module"),
        ({"embedding_module": "gs://bucket/module"}, "embedding_module"),
        ({"genres": ["Comedy", "../../etc"]}, "genres"),
        ({"genres": ["Comedy", "Horror\nDrama"]}, "genres"),
        ({"genres": ["Comedy", "overview"]}, "genres"),
        ({"genres": ["Comedy", "Comedy"]}, "genres"),
        ({"keep_versions": 0}, "keep_versions"),
        ({"keep_versions": -3}, "keep_versions"),
        ({"min_rows": -1}, "min_rows"),
        ({"max_auc_drop": -0.5}, "max_auc_drop"),
        ({"epochs": 10**9}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"candidates": [{"wide": True, "exec": "rm -rf /"}]}, "candidates"),
    ],
)
def test_bad_params_are_refused_by_name(settings: Settings, params: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RunConfig.from_params(params, settings)


def test_no_dataset_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path, artifacts_dir=tmp_path, dataset_url="", data_root=tmp_path)
    with pytest.raises(ConfigError, match="MOVIES_DATASET_URL"):
        RunConfig.from_params({}, settings)


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "GENRE_MODEL_DIR": str(tmp_path / "m"),
            "GENRE_ARTIFACTS_DIR": str(tmp_path / "a"),
            "MOVIES_DATASET_URL": "x",
            "GENRE_DATA_ROOT": str(tmp_path / "d"),
            "GENRE_DOWNLOAD_ALLOWED_HOSTS": "data.internal, 10.0.0.0/8:8080,",
        }
    )
    assert settings.data_root == tmp_path / "d"
    assert settings.download_allowed_hosts == ("data.internal", "10.0.0.0/8:8080")
    assert Settings.from_env({}).download_allowed_hosts == (), "no internal host unless the deployment names it"
    assert settings.served_model_dir == tmp_path / "m" / "movie_genre"
    assert settings.dataset_url == "x"


def test_run_dir_is_a_safe_folder_name(settings: Settings) -> None:
    run_dir = settings.run_dir("manual__2026-11-23T20:00:00+00:00/../../etc")
    assert run_dir.parent == settings.artifacts_dir / "runs"
    assert run_dir.name not in ("", ".", "..")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("embedding_module", "https://tfhub.dev/google/universal-sentence-encoder/4"),
        ("embedding_module", "/srv/modules/glove..v2/module"),
        ("dataset_url", "https://example.org/movies_metadata.csv.gz"),
        ("genres", ["Science Fiction", "TV Movie"]),
    ],
)
def test_ordinary_values_still_pass(settings: Settings, name: str, value: object) -> None:
    assert getattr(RunConfig.from_params({name: value}, settings), name) in (value, tuple(value))


def test_production_defaults_do_not_point_at_the_sample_beside_the_checkout() -> None:
    from tasks.config import PROJECT_ROOT

    settings = Settings.from_env({})
    assert settings.dataset_url == "" and settings.data_root == PROJECT_ROOT / "data"
