"""Stage 1: fetch the raw CSV into the run's artifact folder, byte for byte.

The body is streamed into a temporary file beside the target and renamed only when complete, so a
half-written download is never read. Transient failures (connection errors, timeouts, HTTP 5xx) raise
ordinary exceptions for Airflow's retries; answers that retrying cannot fix (4xx, an HTML page, an
empty body, a missing file) raise `DownloadError`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

from tasks.artifacts import atomic_path
from tasks.errors import DownloadError

log = logging.getLogger(__name__)

RAW_FILE_NAME = "movies_metadata.csv"
CHUNK_BYTES = 1 << 20
HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body")


def download_dataset(url: str, out_dir: Path, *, timeout_seconds: float = 60.0) -> dict[str, Any]:
    """Copy the dataset at `url` to `out_dir/movies_metadata.csv`; return its size, sha256 and rows."""
    target = out_dir / RAW_FILE_NAME
    digest = hashlib.sha256()
    size = 0
    with atomic_path(target) as tmp, tmp.open("wb") as sink:
        for chunk in _open_chunks(url, timeout_seconds):
            if size == 0:
                _reject_html(chunk, url)
            digest.update(chunk)
            sink.write(chunk)
            size += len(chunk)
        if size == 0:
            raise DownloadError(f"{_redacted(url)} returned an empty body")
    rows = count_csv_records(target)
    summary = {
        "url": _redacted(url),
        "path": str(target),
        "size_bytes": size,
        "sha256": digest.hexdigest(),
        "rows": rows,
    }
    log.info("downloaded %s: %d bytes, %d rows, sha256 %s", summary["url"], size, rows, summary["sha256"])
    return summary


def count_csv_records(path: Path) -> int:
    """Data records in a CSV (quoted fields may span lines, so lines are not records)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def _open_chunks(url: str, timeout_seconds: float) -> Iterator[bytes]:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _http_chunks(url, timeout_seconds)
    if scheme == "file":
        return _file_chunks(Path(unquote(urlsplit(url).path)))
    if scheme == "" or len(scheme) == 1:  # a plain path (a one-letter "scheme" is a drive letter)
        return _file_chunks(Path(url))
    raise DownloadError(f"unsupported URL scheme {scheme!r} in {_redacted(url)}: use http(s)://, file:// or a path")


def _http_chunks(url: str, timeout_seconds: float) -> Iterator[bytes]:
    with requests.get(url, stream=True, timeout=timeout_seconds) as response:
        if 400 <= response.status_code < 500:
            raise DownloadError(f"HTTP {response.status_code} {response.reason} for {_redacted(url)}")
        response.raise_for_status()  # 5xx: transient, left to the task's retries
        if "text/html" in response.headers.get("Content-Type", "").lower():
            raise DownloadError(f"{_redacted(url)} returned an HTML page, not a CSV file")
        yield from response.iter_content(chunk_size=CHUNK_BYTES)


def _file_chunks(path: Path) -> Iterator[bytes]:
    if not path.is_file():
        raise DownloadError(f"no such file: {path}")
    with path.open("rb") as source:
        yield from iter(lambda: source.read(CHUNK_BYTES), b"")


def _reject_html(first_chunk: bytes, url: str) -> None:
    if first_chunk.lstrip()[:20].lower().startswith(HTML_PREFIXES):
        raise DownloadError(f"{_redacted(url)} returned an HTML page, not a CSV file")


def _redacted(url: str) -> str:
    """The URL without user:password, safe to log and to keep in artifacts."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
