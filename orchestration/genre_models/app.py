"""The "Genre models" FastAPI app, mounted by the Airflow api-server at `/genre-models` (see the plugin
in `orchestration/genre_models/plugin.py`).

    /                                             the page: every version, the history, "Serve this
                                                  version again"
    /api/versions                                 the same as JSON (`tasks.registry.catalogue.catalogue`)
    /runs/<run id>/report.html                    the run's report
    /runs/<run id>/validation/data_docs/<path>    the run's GX Data Docs, CDN URLs rewritten to /static
    /static/<npm package file>                    Bootstrap, jQuery, Vega, Font Awesome … (see `cdn.py`)

The run routes mirror the run folder's layout on disk, so report.html's relative link to its Data Docs
(`validation/data_docs/index.html`) and the Data Docs' own relative links resolve the same whether the
files are opened from disk or from here.

Airflow 3.3 shows the page in an iframe sandboxed without allow-popups and allow-top-navigation, and
mirrors the frame's same-origin location into the address bar (`/plugin/genre-models/<path>`; Back and
Forward follow the frame's history). So the report and Data Docs open in the frame itself (report.html
gets a "← Genre models" link back), and links to Airflow's own pages go to the top window through the UI's
router (see the template's script).

Every route requires an authenticated Airflow user, the way Airflow's own API does
(`requires_authenticated`: the `Authorization: Bearer` token, else the UI's `_token` cookie); anonymous
requests get Airflow's 401 (or 403 for a bad token). Paths from the URL are resolved with
`tasks.registry.catalogue.inside`, so nothing outside the run's folder or the static folder is served.
The page's button calls Airflow's REST API itself (`POST /api/v2/dags/movie_genre_rollback/dagRuns`)
from the browser with the person's own cookie, so Airflow decides who may roll back.

Every response carries `X-Content-Type-Options: nosniff` and a Content-Security-Policy that lets only the
UI frame it (`frame-ancestors 'self'`), as tight as each kind of page allows: the page runs only its own
script (a per-response nonce), report.html only inline styles and data: images, Data Docs GX's inline
scripts and styles and the local copies of their CDN files; anything else (JSON, static files, errors)
nothing at all.
"""

from __future__ import annotations

import html
import mimetypes
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orchestration.genre_models.cdn import rewrite_cdn_urls, static_root
from tasks.config import Settings
from tasks.registry.catalogue import catalogue, inside, run_folder
from tasks.run_folder import RunFolder

URL_PREFIX = "/genre-models"
RETRAIN_DAG = "movie_genre_retrain"
ROLLBACK_DAG = "movie_genre_rollback"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)

_FRAMED = "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; object-src 'none'"
DEFAULT_CSP = f"default-src 'none'; {_FRAMED}"
# report.py's page: a <style> block and matplotlib figures as data: PNGs, no script.
REPORT_CSP = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; {_FRAMED}"
# GX's pages: inline scripts and styles, the local CDN copies (fonts, data: images in Bootstrap's CSS).
DATA_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data:; font-src 'self' data:; {_FRAMED}"
)
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def page_csp(nonce: str) -> str:
    """The page: its own <style> and <script> (by nonce), and fetch to Airflow's REST API."""
    return f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; {_FRAMED}"


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not found")


def _mount_prefix(request: Request) -> str:
    """Where this app is mounted (`/genre-models`, behind any base path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow_root(request: Request) -> str:
    prefix = _mount_prefix(request)
    return prefix[: -len(URL_PREFIX)] if prefix.endswith(URL_PREFIX) else ""


def _run_folder(run_id: str) -> RunFolder:
    """The artifact folder of `run_id`; 404 unless it exists."""
    folder = run_folder(Settings.from_env(), run_id)
    if folder is None or not folder.path.is_dir():
        raise _not_found()
    return folder


# The run routes' paths: a run folder's layout, relative to the folder.
_LAYOUT = RunFolder(Path())
REPORT_PATH = _LAYOUT.relative(_LAYOUT.report)
DATA_DOCS_PATH = _LAYOUT.relative(_LAYOUT.validation.data_docs)


def with_back_link(page: str, href: str) -> str:
    """`page` with a "← Genre models" link to `href` at the top of its body: inside the UI's frame the
    browser's Back is the only other way back to the list."""
    link = f'<p><a href="{html.escape(href)}">&larr; Genre models</a></p>'
    return _BODY.sub(lambda body: body.group(0) + link, page, count=1)


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """nosniff everywhere; the route's own CSP, else one that allows nothing (JSON, static files, errors)."""
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app() -> FastAPI:
    app = FastAPI(
        title="Genre models",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.middleware("http")(security_headers)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        data = catalogue(Settings.from_env())
        nonce = secrets.token_urlsafe(16)
        rendered = TEMPLATES.get_template("index.html").render(
            prefix=_mount_prefix(request),
            airflow=_airflow_root(request),
            retrain_dag=RETRAIN_DAG,
            rollback_dag=ROLLBACK_DAG,
            nonce=nonce,
            **data,
        )
        return HTMLResponse(rendered, headers={"Cache-Control": "no-store", "Content-Security-Policy": page_csp(nonce)})

    @app.get("/api/versions")
    def versions() -> dict[str, Any]:
        return catalogue(Settings.from_env())

    @app.get("/runs/{run_id}/" + REPORT_PATH)
    def report(request: Request, run_id: str) -> Response:
        found = inside(_run_folder(run_id).path, REPORT_PATH)
        if found is None:
            raise _not_found()
        page = with_back_link(found.read_text(encoding="utf-8"), f"{_mount_prefix(request)}/")
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})

    @app.get(f"/runs/{{run_id}}/{DATA_DOCS_PATH}/{{path:path}}")
    def data_docs(request: Request, run_id: str, path: str) -> Response:
        found = inside(_run_folder(run_id).validation.data_docs, path or "index.html")
        if found is None:
            raise _not_found()
        headers = {"Content-Security-Policy": DATA_DOCS_CSP}
        if found.suffix.lower() in (".html", ".htm"):
            prefix = _mount_prefix(request)
            docs = f"{prefix}/runs/{quote(run_id, safe='')}/{DATA_DOCS_PATH}"
            rewritten = rewrite_cdn_urls(found.read_text(encoding="utf-8"), f"{prefix}/static", docs)
            return HTMLResponse(rewritten, headers=headers)
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media_type, headers=headers)

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
