"""The data of the "Genre models" page without Airflow: `tasks.registry.catalogue` over real promoted
versions (a real exported model, manifests with metrics, real GX validation summaries and Data Docs),
the path check that keeps URLs inside their folders, the CDN rewrite that lets Data Docs render
offline from the npm packages installed in the venv, and that every relative link of a run's report.html
and Data Docs names a file of the run folder (the page serves them at the same relative paths).

`publish_sample_versions` is shared with tests/deployment/test_genre_models_page.py.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from orchestration.genre_models.app import with_back_link
from orchestration.genre_models.cdn import CDN_FILES, NPM_PACKAGES, rewrite_cdn_urls, static_root
from tasks.artifacts import read_json
from tasks.config import EXPECTATIONS_DIR, PARAM_SCHEMAS, Settings, run_folder_name
from tasks.data.drift import TOLERANCE_PARAMS, ServedProfile
from tasks.data.validate import validate_dataset
from tasks.model.report import write_report
from tasks.registry.catalogue import catalogue, inside
from tasks.registry.promote import promote_model
from tasks.registry.rollback import rollback_model, run_actor
from tasks.registry.versions import ModelRegistry
from tasks.run_folder import PROFILE_FILE

RUN_IDS = ("manual__2026-12-01T10:00:00+00:00", "manual__2026-12-02T10:00:00+00:00")
AUCS = ((0.861, 0.802), (0.874, 0.815))


def publish_sample_versions(settings: Settings, model: Path, prepared: Path) -> list[dict[str, Any]]:
    """Two promoted versions of `model`, each from a run folder with real GX results and Data Docs
    (`validate_dataset` on `prepared`; the second measures drift against the first) and the report.html
    the pipeline writes from them; the manifests carry metrics, data rows, the champion comparison and
    the validate summary."""
    parameters = {"min_rows": 200, **{name: PARAM_SCHEMAS[name]["default"] for name in TOLERANCE_PARAMS}}
    published = []
    for number, (run_id, (micro, macro)) in enumerate(zip(RUN_IDS, AUCS, strict=True), start=1):
        folder = settings.run_folder(run_id)
        registry = ModelRegistry(settings.served_model_dir)
        served = registry.serving_version()
        profile = read_json(registry.version_dir(served) / PROFILE_FILE) if served else None
        validation = validate_dataset(
            prepared,
            EXPECTATIONS_DIR,
            folder.validation,
            parameters,
            served=ServedProfile(served, profile),
            run_name=run_id,
        )
        champion = (
            {"passed": True, "metric": "auc_micro", "value": micro, "reason": "no model in production"}
            if served is None
            else {"passed": True, "metric": "auc_micro", "value": micro, "reason": f"champion version {served}"}
        )
        manifest = {
            "dag_run_id": run_id,
            "metrics": {"auc_micro": micro, "auc_macro": macro},
            "data": read_json(prepared / "summary.json"),
            "champion_comparison": champion,
            "stages": {"validate": validation},
        }
        promoted = promote_model(
            model,
            settings.served_model_dir,
            manifest,
            actor=run_id,
            reason=f"sample version {number}",
            keep_versions=5,
            extras={PROFILE_FILE: folder.validation.profile},
        )
        write_report(
            folder, None, settings.served_model_dir, dag_id="movie_genre_retrain", run_id=run_id, version=number
        )
        published.append(promoted)
    return published


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def page_links(html: str) -> list[str]:
    """Every <a href> of `html`, as written."""
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def relative_links(html: str) -> list[str]:
    """The <a href>s of `html` that name a path relative to the page (no scheme, no leading /, no
    fragment-only link), without their fragment."""
    return [
        href.split("#")[0]
        for href in page_links(html)
        if not re.match(r"([a-z][a-z0-9+.-]*:|/|#)", href, re.IGNORECASE)
    ]


@pytest.fixture(scope="module")
def published(
    glove_export: Path, prepared_sample: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("genre-models")
    settings = Settings.from_env(
        {"GENRE_MODEL_DIR": str(root / "models"), "GENRE_ARTIFACTS_DIR": str(root / "artifacts")}
    )
    return settings, publish_sample_versions(settings, glove_export, prepared_sample)


def test_catalogue_lists_every_version_with_its_origin(published: tuple[Settings, list[dict[str, Any]]]) -> None:
    settings, _ = published
    rollback_model(settings.served_model_dir, 1, actor="test", reason="v2 mislabels", keep_versions=5)
    shown = catalogue(settings)
    json.dumps(shown)  # the page's JSON

    assert shown["served_version"] == 3
    assert [(v["version"], v["served"], v["rollback_of"]) for v in shown["versions"]] == [
        (3, True, 1),
        (2, False, None),
        (1, False, None),
    ]
    three, two, one = shown["versions"]
    assert (one["auc_micro"], one["auc_macro"], two["auc_micro"]) == (0.861, 0.802, 0.874)
    assert three["auc_micro"] == one["auc_micro"] and three["dag_run_id"] == RUN_IDS[0], "a copy keeps its origin"
    assert one["champion"] == {
        "passed": True,
        "reason": "no model in production",
        "metric": "auc_micro",
        "value": 0.861,
    }
    assert one["rows"]["kept"] > 200 and one["rows"]["records"] == 800
    assert one["drift"] == {"checked": False, "reason": one["drift"]["reason"]} and one["drift"]["reason"]
    assert two["drift"]["checked"] and two["drift"]["served_version"] == 1 and two["drift"]["passed"]
    assert "new_share" in json.dumps(two["drift"]["measures"])
    for row, run_id in ((one, RUN_IDS[0]), (two, RUN_IDS[1])):
        assert row["dag_run_id"] == run_id and row["has_report"] and row["has_data_docs"]
        assert row["run_folder"] == settings.run_dir(run_id).name
        assert row["published_at"] and row["published_by"] == run_id
    assert three["published_by"] == "test" and three["reason"] == "v2 mislabels"
    # Only version 2 can be served again: 3 is served, and 1 is what 3 is a copy of.
    assert two["already_served"] is None
    assert three["already_served"] == "version 3 is already served"
    assert one["already_served"] == "version 1 is already served (as version 3, a rollback of it)"
    assert [(e["event"], e["version"]) for e in shown["history"]] == [("rollback", 3), ("promote", 2), ("promote", 1)]


def test_report_and_data_docs_links_resolve_in_the_run_folder(
    published: tuple[Settings, list[dict[str, Any]]],
) -> None:
    """Opened from disk, every relative link of report.html and the Data Docs pages names a file; the page
    serves the run folder at the same relative paths, so they resolve there too."""
    settings, _ = published
    folder = settings.run_folder(RUN_IDS[1])
    report = folder.report
    assert relative_links(report.read_text(encoding="utf-8")) == [folder.relative(folder.validation.data_docs_index)]
    followed = 0
    for page in [report, *sorted(folder.validation.data_docs.rglob("*.html"))]:
        for href in relative_links(page.read_text(encoding="utf-8")):
            assert (page.parent / href).resolve().is_file(), (page, href)
            followed += 1
    assert followed > 2, "the Data Docs index links its validation pages"


def test_a_served_report_links_back_to_the_list() -> None:
    page = "<html><head><title>t</title></head><BODY class=x><h1>Report</h1></body></html>"
    assert with_back_link(page, '/genre-models/"x') == (
        '<html><head><title>t</title></head><BODY class=x><p><a href="/genre-models/&quot;x">&larr; Genre models</a>'
        "</p><h1>Report</h1></body></html>"
    )


def test_a_rollback_names_its_run_and_who_triggered_it() -> None:
    assert run_actor("manual__1", "admin") == "dag_run:manual__1 (triggered by admin)"
    assert run_actor("scheduled__1", None) == "dag_run:scheduled__1", "a run no person triggered"


def test_catalogue_of_an_empty_registry(tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRE_MODEL_DIR": str(tmp_path / "m"), "GENRE_ARTIFACTS_DIR": str(tmp_path)})
    assert catalogue(settings) == {"served_version": None, "versions": [], "history": []}
    assert not (tmp_path / "m").exists(), "looking creates nothing"


def test_catalogue_survives_a_missing_run_folder_and_a_bare_manifest(tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRE_MODEL_DIR": str(tmp_path / "m"), "GENRE_ARTIFACTS_DIR": str(tmp_path)})
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "saved_model.pb").write_bytes(b"graph")
    for manifest in ({"dag_run_id": "gone__run"}, {"dag_run_id": ".."}, {}):
        promote_model(exported, settings.served_model_dir, manifest, actor="t", reason="t", keep_versions=5)
    rows = catalogue(settings)["versions"]
    assert [(r["version"], r["has_report"], r["has_data_docs"], r["run_folder"]) for r in rows] == [
        (3, False, False, None),
        (2, False, False, run_folder_name("..")),  # a folder name of its own, absent
        (1, False, False, "gone__run"),
    ]
    assert rows[0]["auc_micro"] is None and rows[0]["drift"] is None and rows[0]["rows"]["kept"] is None


@pytest.mark.parametrize(
    "relative",
    [
        "../secret.txt",
        "..",
        "a/../../secret.txt",
        "a/../b.txt",
        "./b.txt",
        "/etc/passwd",
        "//etc/passwd",
        "a\\..\\..\\secret.txt",
        "a//b.txt",
        "a/",
        "",
        "b.txt\x00.html",
        "link/secret.txt",
        "escape.txt",
        "a",  # a folder is not a file
        "missing.txt",
    ],
)
def test_inside_refuses_every_way_out(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b.txt").write_text("fine")
    (root / "a" / "b.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path, root / "link")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    assert inside(root, relative) is None
    assert inside(root, "b.txt") == (root / "b.txt").resolve()
    assert inside(root, "a/b.txt") == (root / "a" / "b.txt").resolve()


def test_data_docs_render_from_local_copies_of_their_cdn_files(
    published: tuple[Settings, list[dict[str, Any]]],
) -> None:
    """Every CDN URL in a real Data Docs page is known and rewritten; every local file it names is
    installed (make venv's npm step, NPM_PACKAGES); and GX names the run and the asset after ours."""
    settings, _ = published
    docs = settings.run_folder(RUN_IDS[1]).validation.data_docs
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) >= 2, pages
    for page in pages:
        html = rewrite_cdn_urls(page.read_text(encoding="utf-8"), "/genre-models/static", "/docs")
        assert "great-expectations-web-assets" not in html, "GX's logo comes from the site's own copy"
        for image in re.findall(r"/docs/static/images/([\w.-]+)", html):
            assert (docs / "static" / "images" / image).is_file(), image
        tags = re.findall(r"<(?:script|link)\b[^>]*>", html)
        assert not [t for t in tags if re.search(r"(src|href)=[\"'](https?:)?//", t)], page
        assert "integrity=" not in html, "no CDN hashes on local copies"
        for local in re.findall(r"/genre-models/static/([^\"']+)", html):
            assert (static_root() / local).is_file(), f"{local} is not installed: make static"
    assert all((static_root() / local).is_file() for local in CDN_FILES.values())
    packages = {re.sub(r"(.)@.*", r"\1", package) for package in NPM_PACKAGES}
    assert {re.match(r"(@[^/]+/)?[^/]+", local).group(0) for local in CDN_FILES.values()} <= packages
    validations = "\n".join(p.read_text(encoding="utf-8") for p in pages if "validations" in p.parts)
    assert RUN_IDS[1] in validations, "the GX run is named after the Airflow run"
    assert any(p.name.endswith("movies_metadata.movies.html") for p in pages), "the asset: the dataset and table"
    assert any(RUN_IDS[1] in p.parts for p in pages), "the validation pages are filed under the run's name"


def test_rewrite_leaves_unknown_urls_and_links_alone() -> None:
    html = (
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
        '<script src="https://example.org/other.js" integrity="sha384-x" crossorigin="anonymous"></script>'
        '<a href="https://greatexpectations.io">GX</a>'
    )
    assert rewrite_cdn_urls(html, "/p/static") == (
        '<script src="/p/static/vega/build/vega.min.js"></script>'
        '<script src="https://example.org/other.js" integrity="sha384-x" crossorigin="anonymous"></script>'
        '<a href="https://greatexpectations.io">GX</a>'
    )
