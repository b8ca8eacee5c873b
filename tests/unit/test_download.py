"""Download against a real HTTP server on loopback, and from local files. The server is internal, so
the policies here admit it as GENRE_DOWNLOAD_ALLOWED_HOSTS would (`LOOPBACK`); without that, a loopback,
private or otherwise internal address is refused before any request is sent."""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from tasks.config import DEFAULT_GENRES, Settings
from tasks.data.download import RAW_FILE_NAME, DownloadPolicy, _vetted_session, download_dataset, parse_allowed_hosts
from tasks.data.prepare import prepare_dataset
from tasks.errors import ConfigError, DataError, DownloadError, PermanentError

CSV_BODY = b"id,overview,genres\n1,\"Two lines\nof overview\",\"[{'id': 35, 'name': 'Comedy'}]\"\n2,Short,[]\n"
GZIPPED = gzip.compress(CSV_BODY)
# What an internal service answers: it must never reach an error message or a log.
HEALTH_BODY = b'{"metadatabase":{"status":"healthy"},"scheduler":{"status":"healthy","token":"s3cret-7f2e"}}'
LOOPBACK = parse_allowed_hosts(["127.0.0.1"])

ROUTES: dict[str, tuple[int, str, bytes]] = {
    "/movies.csv": (200, "text/csv", CSV_BODY),
    "/missing.csv": (404, "application/json", HEALTH_BODY),
    "/health": (200, "application/json", HEALTH_BODY),
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
    requests_seen: list[str]  # each server's own (see _serve)

    def do_GET(self) -> None:
        self.requests_seen.append(self.path)
        if self.path == "/loop" or self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", "/loop" if self.path == "/loop" else unquote(self.path.split("=", 1)[1]))
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


class _Served:
    """A _Handler server on 127.0.0.1 with the paths it was asked for."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"requests_seen": self.requests})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served() -> Iterator[_Served]:
    instance = _Served()
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def server(served: _Served) -> str:
    return served.url


@pytest.fixture
def policy(tmp_path: Path) -> DownloadPolicy:
    return DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=10, allowed_hosts=LOOPBACK)


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
    policy = DownloadPolicy(
        data_root=tmp_path, max_bytes=len(CSV_BODY) * 10, timeout_seconds=10, allowed_hosts=LOOPBACK
    )
    with pytest.raises(DownloadError, match=message) as raised:
        download_dataset(f"{server}{path}", out, policy)
    assert "metadatabase" not in str(raised.value), "an answer's body is never repeated"
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
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=0.5, allowed_hosts=LOOPBACK)
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


# ---------------------------------------------------------------- internal hosts (server-side request forgery)


def _refused(url: str, tmp_path: Path, allowed: tuple = ()) -> str:
    """The DownloadError's message for `url` under a policy that allows `allowed`."""
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=2, allowed_hosts=allowed)
    with pytest.raises(DownloadError) as raised:
        download_dataset(url, tmp_path / "out", policy)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    return str(raised.value)


def test_a_loopback_url_is_refused_before_any_request(served: _Served, tmp_path: Path) -> None:
    before = len(served.requests)
    message = _refused(f"{served.url}/health", tmp_path)
    assert f"host 127.0.0.1 port {served.port} has the address 127.0.0.1, which is loopback" in message
    assert "GENRE_DOWNLOAD_ALLOWED_HOSTS" in message
    assert len(served.requests) == before, "the worker never sent the request"


@pytest.mark.parametrize(
    ("host", "address", "kind"),
    [
        ("localhost", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),  # decimal
        ("0177.0.0.1", "127.0.0.1", "loopback"),  # octal
        ("0x7f.1", "127.0.0.1", "loopback"),  # hexadecimal, short form
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 (IPv4 127.0.0.1)", "loopback"),  # IPv4-mapped IPv6
        ("[2002:7f00:1::]", "2002:7f00:1:: (IPv4 127.0.0.1)", "loopback"),  # 6to4
        ("[::1]", "::1", "loopback"),
        ("10.1.2.3", "10.1.2.3", "private"),
        ("172.16.0.1", "172.16.0.1", "private"),
        ("192.168.1.1", "192.168.1.1", "private"),
        ("[fd00::1]", "fd00::1", "private"),
        ("169.254.169.254", "169.254.169.254", "link-local"),  # cloud metadata
        ("[fe80::1]", "fe80::1", "link-local"),
        ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254 (IPv4 169.254.169.254)", "link-local"),
        ("224.0.0.1", "224.0.0.1", "multicast"),
        ("[ff02::1]", "ff02::1", "multicast"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("240.0.0.1", "240.0.0.1", "reserved"),
        ("100.64.0.1", "100.64.0.1", "special-purpose"),  # carrier-grade NAT
    ],
)
def test_internal_addresses_are_refused_however_written(tmp_path: Path, host: str, address: str, kind: str) -> None:
    message = _refused(f"http://{host}:8093/api/v2/monitor/health", tmp_path)
    assert f"has the address {address}, which is {kind}, not public" in message
    assert "GENRE_DOWNLOAD_ALLOWED_HOSTS" in message


class _Resolver:
    """The system resolver, except for `answers`: {name: [addresses, one list per lookup; the last repeats]}.
    Names that resolve as an attacker's DNS would, with no DNS server in the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        self.real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: str, port: object, *args: object, **kwargs: object) -> list:
        self.lookups.append(host)
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        answer = self.answers[host][min(self.lookups.count(host), len(self.answers[host])) - 1]
        return [info for address in answer for info in self.real(address, port, *args, **kwargs)]


def test_a_name_resolving_to_a_private_address_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _Resolver(monkeypatch, {"movies.example.org": [["10.20.30.40"]]})
    message = _refused("https://movies.example.org/movies.csv", tmp_path)
    assert "host movies.example.org port 443 has the address 10.20.30.40, which is private" in message


def test_every_resolved_address_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A public address first does not excuse an internal one after it."""
    _Resolver(monkeypatch, {"movies.example.org": [["8.8.8.8", "169.254.169.254"]]})
    assert "169.254.169.254, which is link-local" in _refused("http://movies.example.org/movies.csv", tmp_path)


def test_the_connection_goes_to_the_address_checked(
    served: _Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers an allowed address to the check, then another. The download
    connects to the address it checked, with one lookup of the name: a second lookup would connect to the
    unroutable 192.0.2.1 and time out."""
    resolver = _Resolver(monkeypatch, {"rebind.example": [["127.0.0.1"], ["192.0.2.1"]]})
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=2, allowed_hosts=LOOPBACK)
    assert download_dataset(f"http://rebind.example:{served.port}/movies.csv", tmp_path, policy)["rows"] == 2
    assert resolver.lookups.count("rebind.example") == 1


def test_a_redirect_to_an_internal_address_is_refused(served: _Served, tmp_path: Path) -> None:
    message = _refused(f"{served.url}/redirect?to=http://169.254.169.254/latest/meta-data/", tmp_path, LOOPBACK)
    assert "redirected to http://169.254.169.254/latest/meta-data/" in message
    assert "has the address 169.254.169.254, which is link-local" in message


def test_a_redirect_to_a_port_the_setting_does_not_name_is_refused(served: _Served, tmp_path: Path) -> None:
    other = _Served()
    try:
        allowed = parse_allowed_hosts([f"127.0.0.1:{served.port}"])
        message = _refused(f"{served.url}/redirect?to={other.url}/movies.csv", tmp_path, allowed)
        assert f"port {other.port} has the address 127.0.0.1, which is loopback" in message
        assert other.requests == [], "the hop was refused before its request"
    finally:
        other.close()


def test_redirects_are_followed_hop_by_hop(served: _Served, tmp_path: Path, policy: DownloadPolicy) -> None:
    assert download_dataset(f"{served.url}/redirect?to=/movies.csv", tmp_path, policy)["rows"] == 2
    message = _refused(f"{served.url}/redirect?to=file:///etc/passwd", tmp_path, LOOPBACK)
    assert "only http(s) redirects are followed" in message


@pytest.mark.parametrize(
    ("entries", "host", "admitted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "localhost", True),  # an address admits the names that resolve to it
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.1:{port}"], "127.0.0.1", True),
        (["127.0.0.1:{other}"], "127.0.0.1", False),
        (["localhost"], "localhost", True),
        (["LocalHost."], "localhost", True),
        (["localhost"], "127.0.0.1", False),  # a name admits that name, not its address written out
        (["localhost:{other}"], "localhost", False),
        (["10.0.0.0/8", "example.org", "::1"], "127.0.0.1", False),
    ],
)
def test_the_setting_admits_exactly_what_it_names(
    served: _Served, tmp_path: Path, entries: list[str], host: str, admitted: bool
) -> None:
    allowed = parse_allowed_hosts(e.format(port=served.port, other=served.port + 1) for e in entries)
    url = f"http://{host}:{served.port}/movies.csv"
    if admitted:
        policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, timeout_seconds=10, allowed_hosts=allowed)
        assert download_dataset(url, tmp_path, policy)["rows"] == 2
    else:
        assert "which is loopback" in _refused(url, tmp_path, allowed)


def test_the_setting_reaches_the_policy_from_the_environment(served: _Served, tmp_path: Path) -> None:
    settings = Settings.from_env({"GENRE_DOWNLOAD_ALLOWED_HOSTS": f" data.internal , 127.0.0.1:{served.port}"})
    assert settings.download_allowed_hosts == ("data.internal", f"127.0.0.1:{served.port}")
    allowed = parse_allowed_hosts(settings.download_allowed_hosts)
    policy = DownloadPolicy(data_root=tmp_path, max_bytes=1 << 20, allowed_hosts=allowed)
    assert download_dataset(f"{served.url}/movies.csv", tmp_path, policy)["rows"] == 2


def test_allowed_host_entries_parse_or_are_refused_by_name() -> None:
    (v6,) = parse_allowed_hosts(["[fd00::1]:8080"])
    assert (str(v6.network), v6.port, v6.name) == ("fd00::1/128", 8080, None)
    (network,) = parse_allowed_hosts(["fd00::/8"])
    assert (str(network.network), network.port) == ("fd00::/8", None)
    assert parse_allowed_hosts(["", " "]) == ()
    for bad in ["10.0.0.0/33", "two words", "host:0", "host:99999", "[::1", "http://data.internal"]:
        with pytest.raises(ConfigError, match=re.escape(f"GENRE_DOWNLOAD_ALLOWED_HOSTS: '{bad}'")):
            parse_allowed_hosts([bad])


def test_a_json_answer_served_as_the_dataset_fails_without_repeating_it(
    served: _Served, tmp_path: Path, policy: DownloadPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """An internal service's answer, fetched because the setting admits its host: prepare says what is
    wrong with it, and its text reaches neither the error nor the logs."""
    caplog.set_level(logging.DEBUG)
    raw = download_dataset(f"{served.url}/health", tmp_path / "raw", policy)
    with pytest.raises(DataError) as raised:
        prepare_dataset(Path(raw["path"]), tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    message = str(raised.value)
    assert "missing required column(s) id, overview, genres; the file looks like JSON, not a CSV" in message
    for text in ("metadatabase", "healthy", "s3cret-7f2e"):
        assert text not in message and text not in caplog.text


def test_https_keeps_sni_and_verifies_the_name_not_the_vetted_address(tmp_path: Path) -> None:
    """The vetted connection connects to an address, yet TLS still sends the host name (SNI) and checks
    the certificate against it: a certificate for `localhost` serves https://localhost, not 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl program to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _context: names.append(name)
    tls = _Served()
    tls.httpd.socket = context.wrap_socket(tls.httpd.socket, server_side=True)
    try:
        with _vetted_session(parse_allowed_hosts(["127.0.0.1"])) as session:
            answer = session.get(f"https://localhost:{tls.port}/movies.csv", verify=str(cert), timeout=10)
            assert answer.content == CSV_BODY and names == ["localhost"]
            with pytest.raises(requests.exceptions.SSLError):
                session.get(f"https://127.0.0.1:{tls.port}/movies.csv", verify=str(cert), timeout=10)
    finally:
        tls.close()
