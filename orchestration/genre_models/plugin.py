"""The "Genre models" page of the Airflow UI, as an Airflow 3 plugin.

Registered through the `airflow.plugins` entry point in pyproject.toml (`pip install -e .` in the
Makefile and the Dockerfile), so every api-server finds it without copying files into a plugins folder.
It mounts the FastAPI app of `app.py` at `/genre-models` and adds "Genre models" to the UI's navigation
(shown inside the UI, at /plugin/genre-models).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from orchestration.genre_models.app import URL_PREFIX, create_app


class GenreModelsPlugin(AirflowPlugin):
    name = "genre_models"
    # Declared as AirflowPlugin declares them (plain class attributes, which mypy reads as instance ones).
    fastapi_apps: list[Any] = [  # noqa: RUF012
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Genre models"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Genre models",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "genre-models",
            "nav_top_level": True,
        }
    ]
