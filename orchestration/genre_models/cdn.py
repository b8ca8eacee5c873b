"""Data Docs without internet: GX's pages load Bootstrap, bootstrap-table, jQuery, Popper, Vega and Font
Awesome from CDNs. The same files come from the npm registry at install time (`make venv` puts them in
`.venv/share/genre-models-static/node_modules`, or `$GENRE_STATIC_DIR`), and each Data Docs page is
rewritten on the fly to load them from the app (`<prefix>/static/<package>/<file>`).

`CDN_FILES` maps every CDN URL GX 1.24's templates use to its file in the npm packages; `NPM_PACKAGES`
is what to install (the Makefile's list must match: a unit test checks every mapped file exists).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

NPM_PACKAGES = (
    "bootstrap@4.3.1",
    "bootstrap-table@1.19.1",
    "jquery@3.7.1",
    "popper.js@1.12.9",
    "bootstrap-datepicker@1.9.0",
    "@forevolve/bootstrap-dark@1.1.0",
    "vega@5",
    "vega-lite@5",
    "vega-embed@6",
    "@fortawesome/fontawesome-free@6.6.0",
)

# CDN URL (without scheme) → file below node_modules.
CDN_FILES = {
    "unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/dist/bootstrap-table.min.css",
    "unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/dist/bootstrap-table.min.js",
    "unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css"
    ),
    "cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js"
    ),
    "cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css"
    ),
    "cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
    "cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free/css/all.min.css"
    ),
    "code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
}

# GX's logo comes from its web-assets bucket, with the data context's id in the query (a visit counter);
# the Data Docs site has its own copy in static/images/.
_GX_WEB_ASSET = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/([\w.-]+)(\?[^\"')\s]*)?"
)
GX_WEB_ASSETS = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long-vector.svg"}

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r'\b(src|href)\s*=\s*(["\'])(https?:)?//([^"\']+)\2', re.IGNORECASE)
# Subresource integrity names the CDN's bytes; the local copy is checked at install time instead.
_SRI_ATTRS = re.compile(r'\s(integrity|crossorigin)\s*=\s*(["\'])[^"\']*\2|\scrossorigin(?=[\s>/])', re.IGNORECASE)


def static_root() -> Path:
    """The node_modules folder holding the npm packages above."""
    configured = os.environ.get("GENRE_STATIC_DIR")
    if configured:
        return Path(configured)
    return Path(sys.prefix) / "share" / "genre-models-static" / "node_modules"


def rewrite_cdn_urls(html: str, static_prefix: str, docs_prefix: str | None = None) -> str:
    """`html` with every known CDN URL in a <script> or <link> tag replaced by `static_prefix`/<file>, and
    (given `docs_prefix`, where the Data Docs site is served) GX's web-asset images by the site's copies."""
    if docs_prefix is not None:

        def image(match: re.Match[str]) -> str:
            local = GX_WEB_ASSETS.get(match.group(1))
            return f"{docs_prefix}/static/images/{local}" if local else match.group(0)

        html = _GX_WEB_ASSET.sub(image, html)

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)

        def url(attr: re.Match[str]) -> str:
            local = CDN_FILES.get(attr.group(4))
            if local is None:
                return attr.group(0)
            return f"{attr.group(1)}={attr.group(2)}{static_prefix}/{local}{attr.group(2)}"

        rewritten = _URL_ATTR.sub(url, text)
        return _SRI_ATTRS.sub("", rewritten) if rewritten != text else text

    return _TAG.sub(tag, html)
