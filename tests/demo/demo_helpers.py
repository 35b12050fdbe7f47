"""Helpers of the live-demo tests: a demo server process, and a page session over its WebSocket.

The server's stderr goes to a file and its stdout is drained after the address line, so that a chatty server
never blocks on a full pipe; each wait has a deadline, so that a server that does not answer fails the test.
"""

from __future__ import annotations

import asyncio
import queue
import re
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

START_TIMEOUT = 120.0
"""Seconds a demo server may take to print its address."""


@contextmanager
def demo_process(args: list[str], start_timeout: float = START_TIMEOUT) -> Iterator[dict]:
    """Run ``args`` (a command that serves the demo on a free port and prints its address) until the block ends:
    yields ``{"port", "url", "ws", "proc", "log"}`` (``log``: the file of its stderr)."""
    log = Path(tempfile.mkstemp(prefix="infp-demo-", suffix=".log")[1])
    with open(log, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=start_timeout)
        except queue.Empty:
            first = ""
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        if not m:
            raise AssertionError(f"the demo server did not start within {start_timeout:.0f} s: {first!r}\n"
                                 + log.read_text(errors="replace")[-4000:])
        port = int(m.group(1))
        yield {"port": port, "url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "proc": proc,
               "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.unlink(missing_ok=True)


async def connect(http, url: str, wait: float = 15.0):
    """Open a page session; while the previous one is still being torn down the server answers busy: retry.
    Returns the socket and its first message (``hello``, or ``busy`` after ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        ws = await http.ws_connect(url)
        first = await ws.receive_json()
        if first["type"] == "hello" or time.monotonic() > deadline:
            return ws, first
        await ws.close()
        await asyncio.sleep(0.2)


async def until_free(http, url: str, wait: float = 30.0) -> None:
    """Wait until the server at ``url`` has closed its previous session (it is torn down after its page goes)."""
    deadline = time.monotonic() + wait
    while (await (await http.get(url + "/api/info")).json())["busy"]:
        assert time.monotonic() < deadline, f"the previous session was not closed within {wait:.0f} s"
        await asyncio.sleep(0.1)
