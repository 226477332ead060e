"""Fetching a URL a client registered (its jwks_uri), safe against DNS rebinding: the one seam for it.

The host is resolved once; every address it resolves to must be public (global) unless the settings
allow private ones (tests, a development machine); the connection goes to that resolved address, with
the URL's own host name in the Host header and, over HTTPS, in the TLS SNI and the certificate check.
A second lookup between the check and the connection, which a rebinding DNS server would answer with
an internal address, never happens. No redirects; a time limit on the whole fetch and a size limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import certifi
import urllib3


class FetchRefused(Exception):
    """The URL was not fetched, or what it served is out of bounds; the message says why, without the body."""


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise FetchRefused("the host name does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def _address(host: str, port: int, *, private_allowed: bool) -> str:
    """The one address to connect to: the resolver's first answer, when every answer is allowed."""
    addresses = _resolve(host, port)
    if not addresses:
        raise FetchRefused("the host name does not resolve")
    if not private_allowed and not all(ipaddress.ip_address(a).is_global for a in addresses):
        # A registered URL must not turn the server into a probe of its own network (SSRF).
        raise FetchRefused("the URL must name a public host")
    return addresses[0]


def ca_bundle() -> str:
    """The certificate authorities an HTTPS fetch trusts."""
    return certifi.where()


def _pool(scheme: str, address: str, host: str, port: int, timeout: float) -> urllib3.HTTPConnectionPool:
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=limits,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle(),
            server_hostname=host,  # SNI: the name, not the address
            assert_hostname=host,  # the certificate must be the name's
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=limits, retries=False, maxsize=1)


def fetch_pinned(url: str, *, timeout: float, limit: int, http_allowed: bool, private_allowed: bool) -> bytes:
    """GET `url` (200 only) through the address its host resolved to once; FetchRefused for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if http_allowed else ("https",)) or not parts.hostname:
        raise FetchRefused("the URL must be https")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchRefused("the URL's port is not valid") from exc
    address = _address(host, port, private_allowed=private_allowed)
    deadline = time.monotonic() + timeout
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = f"[{host}]" if ":" in host else host
    headers = {"Host": netloc if parts.port is None else f"{netloc}:{port}", "Accept": "application/json"}
    pool = _pool(parts.scheme, address, host, port, timeout)
    try:
        response = pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False)
        try:
            if response.status != 200:
                raise FetchRefused(f"the URL answered {response.status}")
            body = b""
            for chunk in response.stream(8192):
                body += chunk
                if len(body) > limit:
                    raise FetchRefused("the URL served more than the size limit")
                if time.monotonic() > deadline:  # a server dripping bytes holds no worker past the limit
                    raise FetchRefused("the URL took longer than the time limit")
            return body
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise FetchRefused("the URL could not be fetched") from exc
    finally:
        pool.close()
