"""A small TCP fault proxy of the project's own: between the app and PostgreSQL, Redis or anvil.

    proxy = FaultProxy(upstream_port=5432).start()   # listens on 127.0.0.1:proxy.port
    proxy.latency(0.3)    # every chunk, either way, waits 0.3 s before it is passed on
    proxy.cut()           # every open connection is closed at once, as a dead network path would
    proxy.down()          # cut, and refuse new connections (closed as soon as accepted): a server restarting
    proxy.up()            # accept again, no latency
    proxy.stop()

It runs an asyncio loop in a daemon thread of the calling process; the commands are thread-safe. Also a
command line for use by hand: `python -m chaos.faultproxy LISTEN_PORT UPSTREAM_PORT` then type
`latency 0.3`, `cut`, `down`, `up` on its standard input.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from concurrent.futures import Future
from typing import Any

HOST = "127.0.0.1"
CHUNK = 65536


class FaultProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = HOST, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.delay = 0.0
        self.refusing = False
        self.cuts = 0  # connections cut on command
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"faultproxy-{upstream_port}", daemon=True)

    @property
    def url_port(self) -> int:
        return self.port

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen()).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close()).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # --- Commands (any thread) ---------------------------------------------------------

    def latency(self, seconds: float) -> None:
        self.delay = max(0.0, seconds)

    def cut(self) -> int:
        """Close every open connection now; returns how many client connections were cut."""
        return int(self._call(self._cut()).result(10))

    def down(self) -> int:
        self.refusing = True
        return self.cut()

    def up(self) -> None:
        self.refusing = False
        self.delay = 0.0

    # --- The loop ------------------------------------------------------------------------

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    async def _cut(self) -> int:
        cut = 0
        for writer in list(self._writers):
            transport = writer.transport
            if not transport.is_closing():
                cut += 1
            sock = transport.get_extra_info("socket")
            if sock is not None:  # a reset, as a dead path looks to a client mid-read; not a polite FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            transport.abort()
        self._writers.clear()
        self.cuts += cut // 2
        return cut // 2

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for end in (writer, up_writer):
            self._writers.discard(end)
            end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m chaos.faultproxy LISTEN_PORT UPSTREAM_PORT", file=sys.stderr)
        return 2
    proxy = FaultProxy(int(argv[1]), port=int(argv[0])).start()
    print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{argv[1]}; commands: latency SECONDS, cut, down, up, quit")
    for line in sys.stdin:
        command, *args = line.split() or [""]
        if command == "latency" and args:
            proxy.latency(float(args[0]))
        elif command == "cut":
            print(f"cut {proxy.cut()}")
        elif command == "down":
            print(f"down, cut {proxy.down()}")
        elif command == "up":
            proxy.up()
        elif command == "quit":
            break
    proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
