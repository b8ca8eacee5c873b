"""Download against a real HTTP server on loopback, and from local files."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tasks.data.download import RAW_FILE_NAME, DownloadPolicy, download_dataset
from tasks.errors import DownloadError, PermanentError

CSV_BODY = b"id,overview,genres\n1,\"Two lines\nof overview\",\"[{'id': 35, 'name': 'Comedy'}]\"\n2,Short,[]\n"
GZIPPED = gzip.compress(CSV_BODY)

ROUTES: dict[str, tuple[int, str, bytes]] = {
    "/movies.csv": (200, "text/csv", CSV_BODY),
    "/missing.csv": (404, "text/plain", b"not found"),
    "/forbidden.csv": (403, "text/plain", b"no"),
    "/login": (200, "text/html; charset=utf-8", b"<html><body>Sign in</body></html>"),
    "/disguised.csv": (200, "text/csv", b"  <!DOCTYPE html><html></html>"),
    "/empty.csv": (200, "text/csv", b""),
    "/broken.csv": (500, "text/plain", b"oops"),
    "/movies.csv.gz": (200, "application/gzip", GZIPPED),
    "/truncated.csv.gz": (200, "application/gzip", GZIPPED[:-12]),
    "/big.csv": (200, "text/csv", CSV_BODY * 1000),
}
FLAKY_HITS: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        if self.path == "/flaky.csv":  # 500 on the first try, then the file
            FLAKY_HITS.append(self.path)
            self.path = "/broken.csv" if len(FLAKY_HITS) == 1 else "/movies.csv"
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


@pytest.fixture
def policy(tmp_path: Path) -> DownloadPolicy:
    return DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=10)


def test_http_download_records_size_sha256_and_rows(server: str, tmp_path: Path, policy: DownloadPolicy) -> None:
    summary = download_dataset(f"{server}/movies.csv", tmp_path, policy)
    assert (tmp_path / RAW_FILE_NAME).read_bytes() == CSV_BODY
    assert summary["size_bytes"] == summary["csv_bytes"] == len(CSV_BODY) and not summary["gzip"]
    assert summary["sha256"] == hashlib.sha256(CSV_BODY).hexdigest()
    assert summary["rows"] == 2  # the quoted overview spans two lines but is one record


def test_gzip_body_is_stored_as_csv(server: str, tmp_path: Path, policy: DownloadPolicy) -> None:
    summary = download_dataset(f"{server}/movies.csv.gz", tmp_path, policy)
    assert (tmp_path / RAW_FILE_NAME).read_bytes() == CSV_BODY
    assert summary["gzip"] and summary["size_bytes"] == len(GZIPPED) and summary["csv_bytes"] == len(CSV_BODY)
    assert summary["sha256"] == hashlib.sha256(GZIPPED).hexdigest(), "the hash is of what was downloaded"


def test_local_path_and_file_url_below_the_data_root(tmp_path: Path, policy: DownloadPolicy) -> None:
    source = tmp_path / "source.csv"
    source.write_bytes(CSV_BODY)
    by_path = download_dataset(str(source), tmp_path / "a", policy)
    by_url = download_dataset(source.as_uri(), tmp_path / "b", policy)
    assert by_path["sha256"] == by_url["sha256"] == hashlib.sha256(CSV_BODY).hexdigest()


@pytest.mark.parametrize("make_url", [str, Path.as_uri, lambda p: f"{p.parent}/../{p.parent.name}/{p.name}"])
def test_local_files_outside_the_data_root_are_refused(tmp_path: Path, make_url) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_bytes(CSV_BODY)
    (tmp_path / "root").mkdir()
    policy = DownloadPolicy(data_root=tmp_path / "root", max_bytes=1 << 20)
    with pytest.raises(DownloadError, match="outside the data root"):
        download_dataset(make_url(outside), tmp_path / "out", policy)
    link = tmp_path / "root" / "link.csv"
    link.symlink_to(outside)
    with pytest.raises(DownloadError, match="outside the data root"):
        download_dataset(str(link), tmp_path / "out", policy)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.csv", "HTTP 404"),
        ("/forbidden.csv", "HTTP 403"),
        ("/login", "HTML page"),
        ("/disguised.csv", "HTML page"),
        ("/empty.csv", "empty body"),
        ("/loop", "too many redirects"),
        ("/big.csv", "larger than max_download_bytes"),
        ("/truncated.csv.gz", "gzip stream is truncated"),
    ],
)
def test_answers_retrying_cannot_fix_are_permanent(server: str, tmp_path: Path, path: str, message: str) -> None:
    out = tmp_path / "out"
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=len(CSV_BODY) * 10, timeout_seconds=10)
    with pytest.raises(DownloadError, match=message):
        download_dataset(f"{server}{path}", out, policy)
    assert not out.exists() or list(out.iterdir()) == [], "a failed download must leave no file behind"


def test_server_errors_are_left_to_retries(server: str, tmp_path: Path, policy: DownloadPolicy) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        download_dataset(f"{server}/flaky.csv", tmp_path, policy)
    assert not isinstance(raised.value, PermanentError)
    assert download_dataset(f"{server}/flaky.csv", tmp_path, policy)["rows"] == 2, "the retry succeeds"


def test_unreachable_host_is_left_to_retries(tmp_path: Path, policy: DownloadPolicy) -> None:
    with pytest.raises(requests.ConnectionError):
        download_dataset("http://127.0.0.1:9/movies.csv", tmp_path, policy)


def test_missing_file_and_unknown_scheme(tmp_path: Path, policy: DownloadPolicy) -> None:
    with pytest.raises(DownloadError, match="no such file"):
        download_dataset(str(tmp_path / "nope.csv"), tmp_path / "out", policy)
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        download_dataset("ftp://example.org/movies.csv", tmp_path / "out", policy)


def test_credentials_never_reach_the_summary(server: str, tmp_path: Path, policy: DownloadPolicy) -> None:
    url = server.replace("http://", "http://user:s3cret@") + "/movies.csv"
    summary = download_dataset(url, tmp_path, policy)
    assert "s3cret" not in str(summary)


def test_a_new_download_replaces_the_old_one_whole(server: str, tmp_path: Path, policy: DownloadPolicy) -> None:
    (tmp_path / RAW_FILE_NAME).write_bytes(b"stale")
    download_dataset(f"{server}/movies.csv", tmp_path, policy)
    assert (tmp_path / RAW_FILE_NAME).read_bytes() == CSV_BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == [RAW_FILE_NAME]


class _RawServer:
    """A TCP server on loopback that answers each connection with `reply(sock)`: for faults the HTTP
    server above cannot produce (a reset in the middle of the body, a server that stops talking)."""

    def __init__(self, reply) -> None:
        import socket

        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)  # the request
                self.reply(conn, self.stop)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


def _reset_mid_body(conn, stop) -> None:
    import socket
    import struct

    body = CSV_BODY * 200
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n" % len(body))
    conn.sendall(body[: len(body) // 2])
    # SO_LINGER 0: close() sends a TCP RST instead of FIN, as a dropped connection does.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _stall_after_headers(conn, stop) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nid,overview,genres\n")
    stop.wait(30)  # then says nothing more until the test ends


def _stall_before_answering(conn, stop) -> None:
    stop.wait(30)


@pytest.mark.parametrize(
    ("reply", "transient"),
    [
        (_reset_mid_body, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)),
        (_stall_after_headers, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)),
        (_stall_before_answering, (requests.Timeout,)),
    ],
    ids=["connection_reset_mid_body", "timeout_mid_body", "timeout_before_headers"],
)
def test_dropped_or_silent_connections_are_left_to_retries_and_leave_no_file(tmp_path: Path, reply, transient) -> None:
    out = tmp_path / "out"
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=0.5)
    with _RawServer(reply) as url, pytest.raises(transient) as raised:
        download_dataset(f"{url}/movies.csv", out, policy)
    assert not isinstance(raised.value, PermanentError), "a network fault is retried, not a permanent failure"
    assert list(out.iterdir()) == [], "the partial body is not kept under any name"


def test_a_gzip_bomb_is_aborted_at_max_download_bytes(server: str, tmp_path: Path) -> None:
    """A small gzip body that inflates far beyond the limit is stopped without inflating it all."""
    bomb = tmp_path / "data" / "bomb.csv.gz"
    bomb.parent.mkdir()
    with gzip.open(bomb, "wb") as handle:
        handle.write(b"id,overview,genres\n")
        for _ in range(64):
            handle.write(b"0" * (1 << 20))
    assert bomb.stat().st_size < 200_000
    policy = DownloadPolicy(data_root=tmp_path / "data", max_bytes=1 << 20)
    with pytest.raises(DownloadError, match="larger than max_download_bytes"):
        download_dataset(str(bomb), tmp_path / "out", policy)
    assert list((tmp_path / "out").iterdir()) == []
