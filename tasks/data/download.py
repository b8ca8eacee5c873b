"""Stage: fetch the raw CSV into the run's artifact folder.

The body is streamed into a temporary file beside the target and renamed only when complete, so a
half-written download is never read. A gzip-compressed body is decompressed on the way (the stored
file is the CSV). Transient failures (connection errors, timeouts, HTTP 5xx) raise ordinary exceptions
for Airflow's retries; answers that retrying cannot fix raise `DownloadError`: a 4xx, a redirect loop,
an HTML page, an empty body, a body over `max_bytes`, a missing file, a local file outside the data
root, or a URL scheme other than http(s) or file.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
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
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class DownloadPolicy:
    data_root: Path  # local files (paths, file://) must lie below it
    max_bytes: int  # of CSV, after decompression
    timeout_seconds: float = 60.0


def download_dataset(url: str, out_dir: Path, policy: DownloadPolicy) -> dict[str, Any]:
    """Copy the dataset at `url` to `out_dir/movies_metadata.csv`; return its sizes, sha256 and rows."""
    target = out_dir / RAW_FILE_NAME
    received = hashlib.sha256()
    received_bytes = csv_bytes = 0
    decompress: Any = None
    with atomic_path(target) as tmp, tmp.open("wb") as sink:
        for chunk in _open_chunks(url, policy):
            if received_bytes == 0 and chunk.startswith(GZIP_MAGIC):
                decompress = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            received.update(chunk)
            received_bytes += len(chunk)
            data = decompress.decompress(chunk, policy.max_bytes + 1 - csv_bytes) if decompress else chunk
            if csv_bytes == 0 and data:
                _reject_html(data, url)
            csv_bytes += len(data)
            if csv_bytes > policy.max_bytes:
                raise DownloadError(f"{_redacted(url)} is larger than max_download_bytes ({policy.max_bytes:,} bytes)")
            sink.write(data)
        if decompress is not None and not decompress.eof:
            raise DownloadError(f"{_redacted(url)}: the gzip stream is truncated")
        if csv_bytes == 0:
            raise DownloadError(f"{_redacted(url)} returned an empty body")
    rows = count_csv_records(target)
    summary = {
        "url": _redacted(url),
        "path": str(target),
        "size_bytes": received_bytes,
        "sha256": received.hexdigest(),
        "gzip": decompress is not None,
        "csv_bytes": csv_bytes,
        "rows": rows,
    }
    log.info("downloaded %s: %d bytes, %d rows, sha256 %s", summary["url"], received_bytes, rows, summary["sha256"])
    return summary


def count_csv_records(path: Path) -> int:
    """Data records in a CSV (quoted fields may span lines, so lines are not records)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def _open_chunks(url: str, policy: DownloadPolicy) -> Iterator[bytes]:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _http_chunks(url, policy.timeout_seconds)
    if scheme == "file":
        return _file_chunks(_local_path(Path(unquote(urlsplit(url).path)), policy.data_root))
    if scheme == "" or len(scheme) == 1:  # a plain path (a one-letter "scheme" is a drive letter)
        return _file_chunks(_local_path(Path(url), policy.data_root))
    raise DownloadError(f"unsupported URL scheme {scheme!r} in {_redacted(url)}: use http(s)://, file:// or a path")


def _local_path(path: Path, data_root: Path) -> Path:
    """`path` with links resolved, if it lies below `data_root`; a path elsewhere is refused."""
    resolved = path.resolve()
    if not resolved.is_relative_to(data_root.resolve()):
        raise DownloadError(f"{path} is outside the data root {data_root} (GENRE_DATA_ROOT): refused")
    return resolved


def _http_chunks(url: str, timeout_seconds: float) -> Iterator[bytes]:
    try:
        response = requests.get(url, stream=True, timeout=timeout_seconds)
    except requests.TooManyRedirects as err:
        raise DownloadError(f"{_redacted(url)}: too many redirects ({err})") from None
    with response:
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
