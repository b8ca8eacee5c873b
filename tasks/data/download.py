"""Stage: fetch the raw CSV into the run's artifact folder.

The body is streamed into a temporary file beside the target and renamed only when complete, so a
half-written download is never read. A gzip-compressed body is decompressed on the way (the stored
file is the CSV). Transient failures (connection errors, timeouts, HTTP 5xx) raise ordinary exceptions
for Airflow's retries; answers that retrying cannot fix raise `DownloadError`: a 4xx, a redirect loop,
an HTML page, an empty body, a body over `max_bytes`, a missing file, a local file outside the data
root, a URL scheme other than http(s) or file, or a host that is not public.

An http(s) URL reaches only public addresses: a run param must not make the worker probe its own network
(loopback, private ranges, link-local cloud metadata) and copy the answers into logs. Every address a host
resolves to is checked, on every redirect hop, by the connection itself (`_VettedConnection`); internal
hosts a deployment downloads from are named in GENRE_DOWNLOAD_ALLOWED_HOSTS (`parse_allowed_hosts`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import re
import socket
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from tasks.artifacts import atomic_path
from tasks.errors import ConfigError, DownloadError
from tasks.results import DownloadResult

log = logging.getLogger(__name__)

RAW_FILE_NAME = "movies_metadata.csv"
CHUNK_BYTES = 1 << 20
HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body")
GZIP_MAGIC = b"\x1f\x8b"
MAX_REDIRECTS = 10
ALLOWED_HOSTS_SETTING = "GENRE_DOWNLOAD_ALLOWED_HOSTS"

IPAddress = IPv4Address | IPv6Address

# How an address that is not public is named in errors, most telling first (::1 is also "reserved",
# 127.0.0.1 also "private"). IPv4 addresses have no is_site_local: getattr's False.
_INTERNAL_KINDS = (
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("unspecified", "is_unspecified"),
    ("site-local", "is_site_local"),
    ("reserved", "is_reserved"),
    ("private", "is_private"),
)
# An allowlist entry: HOST or HOST:PORT, HOST in brackets when an IPv6 address or network has a port.
_HOST_PORT = re.compile(r"(?:\[(?P<bracketed>[^\]]+)\]|(?P<plain>[^\[\]:]+))(?::(?P<port>\d{1,5}))?")
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*")


@dataclass(frozen=True)
class AllowedHost:
    """One entry of GENRE_DOWNLOAD_ALLOWED_HOSTS: a host name as URLs write it, or an IP network (an
    address is a network of one), on one port or on any."""

    name: str | None
    network: IPv4Network | IPv6Network | None
    port: int | None

    def admits(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return self.name == host.lower().rstrip(".")
        return self.network is not None and address in self.network


@dataclass(frozen=True)
class DownloadPolicy:
    data_root: Path  # local files (paths, file://) must lie below it
    max_bytes: int  # of CSV, after decompression
    timeout_seconds: float = 60.0
    allowed_hosts: tuple[AllowedHost, ...] = ()  # internal hosts http(s) may reach (GENRE_DOWNLOAD_ALLOWED_HOSTS)


def parse_allowed_hosts(entries: Iterable[str]) -> tuple[AllowedHost, ...]:
    """GENRE_DOWNLOAD_ALLOWED_HOSTS' entries: `name`, `10.1.2.3`, `10.0.0.0/8`, `fd00::/8`, each with an
    optional `:port` (`[fd00::1]:8080` for IPv6). A malformed entry is a `ConfigError` naming it."""
    return tuple(_allowed_host(entry.strip().lower()) for entry in entries if entry.strip())


def _allowed_host(entry: str) -> AllowedHost:
    found = _HOST_PORT.fullmatch(entry)
    # No match: a bare IPv6 address or network, whose colons are not a port.
    host, port_text = (found["bracketed"] or found["plain"], found["port"]) if found else (entry, None)
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} has port {port}, outside 1 to 65535")
    with contextlib.suppress(ValueError):
        return AllowedHost(name=None, network=ip_network(host, strict=False), port=port)
    if not _HOST_NAME.fullmatch(host.rstrip(".")):
        raise ConfigError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} is not a host name, an IP address or a network")
    return AllowedHost(name=host.rstrip("."), network=None, port=port)


def download_dataset(url: str, out_dir: Path, policy: DownloadPolicy) -> DownloadResult:
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
    summary: DownloadResult = {
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
        return _http_chunks(url, policy)
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


def _http_chunks(url: str, policy: DownloadPolicy) -> Iterator[bytes]:
    with _vetted_session(policy.allowed_hosts) as session, _get(session, url, policy.timeout_seconds) as response:
        if 400 <= response.status_code < 500:
            raise DownloadError(f"HTTP {response.status_code} {response.reason} for {_redacted(url)}")
        response.raise_for_status()  # 5xx: transient, left to the task's retries
        if "text/html" in response.headers.get("Content-Type", "").lower():
            raise DownloadError(f"{_redacted(url)} returned an HTML page, not a CSV file")
        yield from response.iter_content(chunk_size=CHUNK_BYTES)


def _get(session: requests.Session, url: str, timeout_seconds: float) -> requests.Response:
    """GET `url`, following redirects one hop at a time (at most MAX_REDIRECTS): every hop opens its own
    vetted connection, and a redirect's body is never read (requests' own loop reads it whole)."""
    hop = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = session.get(hop, stream=True, timeout=timeout_seconds, allow_redirects=False)
        except DownloadError as refused:  # from _VettedConnection: say which URL, and whether redirected
            where = _redacted(url) if hop == url else f"{_redacted(url)} redirected to {_redacted(hop)}"
            raise DownloadError(f"{where}: {refused}") from None
        if not response.is_redirect:
            return response
        response.close()
        hop = urljoin(hop, session.get_redirect_target(response))
        if urlsplit(hop).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"{_redacted(url)} redirected to {_redacted(hop)}: only http(s) redirects are followed")
        log.info("%s redirects to %s", _redacted(url), _redacted(hop))
    raise DownloadError(f"{_redacted(url)}: too many redirects (more than {MAX_REDIRECTS})")


def _vetted_session(allowed_hosts: tuple[AllowedHost, ...]) -> requests.Session:
    session = requests.Session()
    # No proxy from the environment: a proxy connects on our behalf, to an address this code never checks.
    session.trust_env = False
    adapter = _VettedAdapter(allowed_hosts)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _vetted_addresses(host: str, port: int, allowed_hosts: tuple[AllowedHost, ...]) -> list[str]:
    """Every address the system resolver gives `host`, if each is public or admitted by `allowed_hosts`;
    else `DownloadError` naming the host, the first other address and the setting. The resolver reads
    what URLs may write (decimal 2130706433, octal 0177.0.0.1, [::ffff:127.0.0.1]) as the address it is."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for text in addresses:
        address = _as_reached(ip_address(text))
        kind = _internal_kind(address)
        if kind and not any(entry.admits(host, port, address) for entry in allowed_hosts):
            seen_as = "" if str(address) == text else f" (IPv4 {address})"
            raise DownloadError(
                f"refused: host {host} port {port} has the address {text}{seen_as}, which is {kind}, not public; "
                f"internal hosts may be downloaded from only where {ALLOWED_HOSTS_SETTING} names them"
            )
    return addresses


def _as_reached(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped ::ffff:a.b.c.d, 6to4 2002::/16), else itself."""
    if isinstance(address, IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def _internal_kind(address: IPAddress) -> str | None:
    """Why `address` is not public ("loopback", "private", ...), or None when it is."""
    for kind, flag in _INTERNAL_KINDS:
        if getattr(address, flag, False):
            return kind
    # Multicast is "global" to ipaddress, hence checked above; what remains is e.g. 100.64.0.0/10.
    return None if address.is_global else "special-purpose"


class _VettedConnection(HTTPConnection):
    """urllib3's connection, connecting only to addresses it vetted itself, against DNS rebinding.

    It resolves the host once, checks every address (`_vetted_addresses`), and connects to those very
    addresses, written as numbers so that no second lookup can answer differently between the check and
    the connect. The request's Host header, TLS SNI and certificate check still use the host name
    (`self.host`), so HTTPS verifies the name as usual. Resolution and connection failures map to urllib3's
    errors as its own `_new_conn` does, so requests still reports them as transient."""

    def __init__(self, *args: Any, allowed_hosts: tuple[AllowedHost, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_hosts = allowed_hosts

    def _new_conn(self) -> socket.socket:
        try:
            addresses = _vetted_addresses(self.host, self.port, self.allowed_hosts)
            return _connect(addresses, self.port, self.timeout, self.source_address, self.socket_options)
        except socket.gaierror as err:
            raise NameResolutionError(self.host, self, err) from err
        except TimeoutError as err:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out (timeout={self.timeout})") from err
        except OSError as err:
            raise NewConnectionError(self, f"Failed to establish a new connection: {err}") from err


class _VettedHTTPSConnection(_VettedConnection, HTTPSConnection):
    pass


class _VettedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _VettedConnection


class _VettedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _VettedHTTPSConnection


class _VettedAdapter(HTTPAdapter):
    """requests' adapter whose pools open `_VettedConnection`s (a pool passes unknown keywords on to its
    connections: that is how `allowed_hosts` reaches them)."""

    def __init__(self, allowed_hosts: tuple[AllowedHost, ...]) -> None:
        self.allowed_hosts = allowed_hosts  # before super().__init__, which calls init_poolmanager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # The pool manager only calls these (as it would a class), so a partial serves; urllib3 types them as classes.
        self.poolmanager.pool_classes_by_scheme = {
            "http": partial(_VettedHTTPPool, allowed_hosts=self.allowed_hosts),  # type: ignore[dict-item]
            "https": partial(_VettedHTTPSPool, allowed_hosts=self.allowed_hosts),  # type: ignore[dict-item]
        }


def _connect(addresses: list[str], port: int, timeout: Any, source_address: Any, options: Any) -> socket.socket:
    """A socket to the first of the vetted `addresses` that accepts (as create_connection tries each)."""
    for address in addresses[:-1]:
        with contextlib.suppress(OSError):
            return create_connection((address, port), timeout, source_address, options)
    return create_connection((addresses[-1], port), timeout, source_address, options)


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
