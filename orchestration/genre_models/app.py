"""The "Genre models" FastAPI app, mounted by the Airflow api-server at `/genre-models` (see the plugin
in `orchestration/genre_models/plugin.py`).

    /                                  the page: every version, the history, "Serve this version again"
    /api/versions                      the same as JSON (`tasks.registry.catalogue.catalogue`)
    /runs/<run id>/report.html         the run's report
    /runs/<run id>/data_docs/<path>    the run's GX Data Docs, CDN URLs rewritten to /static
    /static/<npm package file>         Bootstrap, jQuery, Vega, Font Awesome … (see `cdn.py`)

Every route requires an authenticated Airflow user, the way Airflow's own API does
(`requires_authenticated`: the `Authorization: Bearer` token, else the UI's `_token` cookie); anonymous
requests get Airflow's 401 (or 403 for a bad token). Paths from the URL are resolved with
`tasks.registry.catalogue.inside`, so nothing outside the run's folder or the static folder is served.
The page's button calls Airflow's REST API itself (`POST /api/v2/dags/movie_genre_rollback/dagRuns`)
from the browser with the person's own cookie, so Airflow decides who may roll back.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orchestration.genre_models.cdn import rewrite_cdn_urls, static_root
from tasks.config import Settings
from tasks.registry.catalogue import DATA_DOCS_DIR, REPORT_FILE, catalogue, inside, run_folder

URL_PREFIX = "/genre-models"
RETRAIN_DAG = "movie_genre_retrain"
ROLLBACK_DAG = "movie_genre_rollback"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not found")


def _mount_prefix(request: Request) -> str:
    """Where this app is mounted (`/genre-models`, behind any base path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow_root(request: Request) -> str:
    prefix = _mount_prefix(request)
    return prefix[: -len(URL_PREFIX)] if prefix.endswith(URL_PREFIX) else ""


def _run_dir(run_id: str) -> Path:
    """The artifact folder of `run_id`; 404 unless it exists."""
    folder = run_folder(Settings.from_env(), run_id)
    if folder is None or not folder.is_dir():
        raise _not_found()
    return folder


def create_app() -> FastAPI:
    app = FastAPI(
        title="Genre models",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        data = catalogue(Settings.from_env())
        html = TEMPLATES.get_template("index.html").render(
            prefix=_mount_prefix(request),
            airflow=_airflow_root(request),
            retrain_dag=RETRAIN_DAG,
            rollback_dag=ROLLBACK_DAG,
            **data,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/versions")
    def versions() -> dict[str, Any]:
        return catalogue(Settings.from_env())

    @app.get("/runs/{run_id}/report.html")
    def report(run_id: str) -> Response:
        found = inside(_run_dir(run_id), REPORT_FILE)
        if found is None:
            raise _not_found()
        return FileResponse(found, media_type="text/html")

    @app.get("/runs/{run_id}/data_docs/{path:path}")
    def data_docs(request: Request, run_id: str, path: str) -> Response:
        found = inside(_run_dir(run_id) / DATA_DOCS_DIR, path or "index.html")
        if found is None:
            raise _not_found()
        if found.suffix.lower() in (".html", ".htm"):
            prefix = _mount_prefix(request)
            docs = f"{prefix}/runs/{quote(run_id, safe='')}/data_docs"
            html = rewrite_cdn_urls(found.read_text(encoding="utf-8"), f"{prefix}/static", docs)
            return HTMLResponse(html)
        return FileResponse(found, media_type=mimetypes.guess_type(found.name)[0] or "application/octet-stream")

    @app.get("/static/{path:path}")
    def static(path: str) -> Response:
        found = inside(static_root(), path)
        if found is None:
            raise _not_found()
        return FileResponse(
            found,
            media_type=mimetypes.guess_type(found.name)[0] or "application/octet-stream",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    return app
