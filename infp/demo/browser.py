"""Headless Chromium driven over the Chrome DevTools Protocol (for end-to-end tests and screenshots).

Uses the system's Chromium (Debian: ``apt-get install chromium``) and aiohttp's WebSocket client;
nothing is downloaded. A WAV file can stand in for the microphone.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable ($INFP_CHROMIUM first), or None."""
    env = os.environ.get("INFP_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


class CDPError(RuntimeError):
    pass


class Chromium:
    """``async with Chromium(fake_mic=WAV) as browser: page = await browser.open(url)``."""

    def __init__(self, exe: str | None = None, fake_mic: str | Path | None = None, window: tuple[int, int] = (1280, 900),
                 mic_loop: bool = True, extra_args: tuple[str, ...] = ()) -> None:
        self.exe = exe or find_chromium()
        if self.exe is None:
            raise CDPError("Chromium not found (apt-get install chromium)")
        self.fake_mic, self.window, self.mic_loop, self.extra_args = fake_mic, window, mic_loop, extra_args
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: list[dict] = []
        self._reader: asyncio.Task | None = None

    def args(self, profile: str) -> list[str]:
        a = [self.exe, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
             "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
             "--use-fake-device-for-media-stream", f"--window-size={self.window[0]},{self.window[1]}"]
        if self.fake_mic is not None:
            a.append(f"--use-file-for-fake-audio-capture={self.fake_mic}{'' if self.mic_loop else '%noloop'}")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            a.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        return a + list(self.extra_args) + ["about:blank"]

    async def __aenter__(self) -> "Chromium":
        self._tmp = tempfile.TemporaryDirectory(prefix="infp-chromium-", ignore_cleanup_errors=True)
        self.proc = subprocess.Popen(self.args(self._tmp.name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._tmp.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None:
                raise CDPError(f"Chromium exited with status {self.proc.returncode} at start-up")
            if time.monotonic() > deadline:
                raise CDPError("Chromium did not open its DevTools port within 30 s")
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id"), None) if "id" in data else None
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(CDPError(json.dumps(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))
            elif "method" in data:
                self._events.append(data)
                del self._events[:-200]

    async def send(self, method: str, session: str | None = None, timeout: float = 30.0, **params) -> dict:
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        msg: dict[str, Any] = {"id": i, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        await self._ws.send_str(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def open(self, url: str) -> "Page":
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        w, h = self.window
        await page.send("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        await page.send("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete'", timeout=30)
        return page

    def console_errors(self) -> list[str]:
        """Exceptions thrown on pages so far."""
        return [json.dumps(e["params"].get("exceptionDetails", {}))[:500] for e in self._events
                if e.get("method") == "Runtime.exceptionThrown"]


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session

    async def send(self, method: str, **params) -> dict:
        return await self.browser.send(method, session=self.session, **params)

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Value of a JavaScript expression (promises are awaited; the value is returned as JSON)."""
        res = await self.browser.send("Runtime.evaluate", session=self.session, timeout=timeout, expression=expression,
                                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise CDPError(json.dumps(res["exceptionDetails"])[:1000])
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except CDPError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression}")
            await asyncio.sleep(interval)

    async def screenshot(self, path: str | Path) -> Path:
        res = await self.send("Page.captureScreenshot", format="png")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(res["data"]))
        return path
