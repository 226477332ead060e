"""The fault proxy itself, against an echo server: it passes bytes, delays them, cuts and refuses on command."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from chaos.faultproxy import FaultProxy


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    server.close()


@pytest.fixture
def proxy(echo: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(echo).start()
    yield proxy
    proxy.stop()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(4096)


def test_bytes_pass_through_and_latency_delays_them(proxy: FaultProxy) -> None:
    assert _roundtrip(proxy.port) == b"ping"
    proxy.latency(0.2)
    started = time.monotonic()
    assert _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started >= 0.4  # 0.2 s each way
    proxy.up()
    started = time.monotonic()
    _roundtrip(proxy.port)
    assert time.monotonic() - started < 0.2


def _answered(conn: socket.socket, payload: bytes) -> bool:
    """Whether the echo came back on this connection (False: reset, or closed with nothing more to read)."""
    try:
        conn.sendall(payload)
        return conn.recv(10) == payload
    except OSError:
        return False


def test_cut_resets_open_connections_and_down_refuses_new_ones(proxy: FaultProxy) -> None:
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    assert _answered(conn, b"a")
    assert proxy.cut() == 1
    assert not _answered(conn, b"b")
    conn.close()
    proxy.down()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
        assert not _answered(refused, b"c")
    proxy.up()
    assert _roundtrip(proxy.port) == b"ping"
