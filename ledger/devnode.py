"""Start a throwaway anvil node (npm @foundry-rs/anvil) for benchmarks and integration tests.

The binary is run directly, not through npx, so the process id we hold is anvil's own and
terminating it really stops the node. By default no state file: the chain lives and dies with the process;
with `state=` the chain is dumped there every second and on exit, and loaded on the next start.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ANVIL_BINARY = (
    Path(__file__).resolve().parent.parent / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    # Only ever the http://127.0.0.1 URL that anvil_running built.
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def anvil_running(
    *, startup_timeout: float = 20.0, port: int | None = None, state: Path | None = None
) -> Iterator[str]:
    """Run anvil on a local port (a free one unless given); yields its RPC URL and stops it on exit, even on error.

    Stop and start it again with the same `port` and `state` to take a node down and bring the same chain back.
    """
    if not ANVIL_BINARY.exists():
        raise FileNotFoundError(f"anvil binary missing at {ANVIL_BINARY}: run npm install")
    port = port or free_port()
    arguments = [str(ANVIL_BINARY), "--host", "127.0.0.1", "--port", str(port), "--silent"]
    if state is not None:
        arguments += ["--state", str(state), "--state-interval", "1"]
    process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        arguments,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"anvil exited with code {process.returncode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError("anvil did not answer in time")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
