"""Download against a real HTTP server on loopback, and from local files."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tasks.download import RAW_FILE_NAME, download_dataset
from tasks.errors import DownloadError, PermanentError

CSV_BODY = b"id,overview,genres\n1,\"Two lines\nof overview\",\"[{'id': 35, 'name': 'Comedy'}]\"\n2,Short,[]\n"

ROUTES: dict[str, tuple[int, str, bytes]] = {
    "/movies.csv": (200, "text/csv", CSV_BODY),
    "/missing.csv": (404, "text/plain", b"not found"),
    "/forbidden.csv": (403, "text/plain", b"no"),
    "/login": (200, "text/html; charset=utf-8", b"<html><body>Sign in</body></html>"),
    "/disguised.csv": (200, "text/csv", b"  <!DOCTYPE html><html></html>"),
    "/empty.csv": (200, "text/csv", b""),
    "/broken.csv": (500, "text/plain", b"oops"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, content_type, body = ROUTES.get(self.path, (404, "text/plain", b""))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_download_records_size_sha256_and_rows(server: str, tmp_path: Path) -> None:
    summary = download_dataset(f"{server}/movies.csv", tmp_path)
    assert (tmp_path / RAW_FILE_NAME).read_bytes() == CSV_BODY
    assert summary["size_bytes"] == len(CSV_BODY)
    assert summary["sha256"] == hashlib.sha256(CSV_BODY).hexdigest()
    assert summary["rows"] == 2  # the quoted overview spans two lines but is one record


def test_local_path_and_file_url(tmp_path: Path) -> None:
    source = tmp_path / "source.csv"
    source.write_bytes(CSV_BODY)
    by_path = download_dataset(str(source), tmp_path / "a")
    by_url = download_dataset(source.as_uri(), tmp_path / "b")
    assert by_path["sha256"] == by_url["sha256"] == hashlib.sha256(CSV_BODY).hexdigest()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.csv", "HTTP 404"),
        ("/forbidden.csv", "HTTP 403"),
        ("/login", "HTML page"),
        ("/disguised.csv", "HTML page"),
        ("/empty.csv", "empty body"),
    ],
)
def test_answers_retrying_cannot_fix_are_permanent(server: str, tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        download_dataset(f"{server}{path}", tmp_path)
    assert list(tmp_path.iterdir()) == [], "a failed download must leave no file behind"


def test_server_errors_are_left_to_retries(server: str, tmp_path: Path) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        download_dataset(f"{server}/broken.csv", tmp_path)
    assert not isinstance(raised.value, PermanentError)


def test_unreachable_host_is_left_to_retries(tmp_path: Path) -> None:
    with pytest.raises(requests.ConnectionError):
        download_dataset("http://127.0.0.1:9/movies.csv", tmp_path, timeout_seconds=5)


def test_missing_file_and_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no such file"):
        download_dataset(str(tmp_path / "nope.csv"), tmp_path / "out")
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        download_dataset("ftp://example.org/movies.csv", tmp_path / "out")


def test_credentials_never_reach_the_summary(server: str, tmp_path: Path) -> None:
    url = server.replace("http://", "http://user:s3cret@") + "/movies.csv"
    summary = download_dataset(url, tmp_path)
    assert "s3cret" not in str(summary)


def test_a_new_download_replaces_the_old_one_whole(server: str, tmp_path: Path) -> None:
    (tmp_path / RAW_FILE_NAME).write_bytes(b"stale")
    download_dataset(f"{server}/movies.csv", tmp_path)
    assert (tmp_path / RAW_FILE_NAME).read_bytes() == CSV_BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == [RAW_FILE_NAME]
