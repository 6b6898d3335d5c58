"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), on aiohttp's websocket client.

async with Browser.launch(tmp_path) as browser:
    page = await browser.new_page()
    await page.goto(url)
    value = await page.evaluate("document.title")
    errors = page.errors          # console errors, uncaught exceptions, failed loads
    page.requests                 # every URL the page asked for, in order
    await page.type_text("hi"); await page.press("Enter")   # real key events, as a user types
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from factories import stop_process

_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)  # fmt: skip
_BINARIES = ("chromium", "chromium-browser", "google-chrome")


def chromium_or_skip() -> str:
    for name in _BINARIES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH: install Debian's `chromium` package (apt-get install chromium)")


class Page:
    """One tab, attached through the browser connection with a CDP session id."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self.session_id = session_id
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.encoded_bytes: dict[str, int] = {}
        """Bytes received per URL, as sent on the wire (compressed, headers included)."""
        self._urls: dict[str, str] = {}
        self.paused: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        """Requests held by the Fetch domain (after `Fetch.enable`), for the test to answer."""

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._browser.send(method, params, self.session_id)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                f"exception: {details.get('exception', {}).get('description') or details['text']}"
            )
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
            self._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Fetch.requestPaused":
            self.paused.put_nowait(params)
        elif method == "Network.loadingFinished" and params["requestId"] in self._urls:
            url = self._urls[params["requestId"]]
            self.encoded_bytes[url] = self.encoded_bytes.get(url, 0) + int(params["encodedDataLength"])

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """Poll `expression` until it is truthy; returns its value."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{expression!r} still false after {timeout_s} s")
            await asyncio.sleep(0.1)

    async def type_text(self, text: str) -> None:
        """Text into the focused element, as an input method commits it."""
        await self.send("Input.insertText", {"text": text})

    async def press(self, key: str, modifiers: int = 0) -> None:
        """One key down and up ("Enter", "Escape"); `modifiers`: 8 is Shift."""
        codes = {"Enter": 13, "Escape": 27, "Tab": 9}
        event = {"key": key, "code": key, "windowsVirtualKeyCode": codes[key], "modifiers": modifiers}
        await self.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", **event})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **event})

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))


class Browser:
    """A Chromium process and one CDP connection to it."""

    def __init__(self, process: subprocess.Popen[bytes], ws: aiohttp.ClientWebSocketResponse) -> None:
        self._process = process
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def launch(cls, profile: Path, width: int = 1400, height: int = 1000) -> AsyncIterator[Browser]:
        binary = chromium_or_skip()
        args = [
            binary,
            *_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = profile / "DevToolsActivePort"
            for _ in range(300):
                if port_file.is_file() and len(port_file.read_text().splitlines()) == 2:
                    break
                if process.poll() is not None:
                    raise AssertionError(f"chromium exited with {process.returncode} before listening")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().splitlines()
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
            ):
                browser = cls(process, ws)
                try:
                    yield browser
                finally:
                    browser._reader.cancel()
        finally:
            stop_process(process)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self._ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise AssertionError(f"CDP {method} failed: {reply['error']}")
        return reply.get("result", {})

    async def new_page(self, width: int = 1400, height: int = 1000) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session_id] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif "sessionId" in data and data["sessionId"] in self._pages:
                self._pages[data["sessionId"]].on_event(data["method"], data.get("params", {}))
