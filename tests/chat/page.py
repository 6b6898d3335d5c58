"""Driving the chat page in headless Chromium: open it, fill settings, send, wait for the answer."""

from __future__ import annotations

import json
from typing import Any

import httpx

from browser import Page
from metrics.scrape import Scrape
from seekserve.chat import assets

NOT_LOADED = ("/chat/vendor/licenses/", "/chat/vendor/README.md")
"""Files served for people to read, which the page itself never loads."""


def page_files() -> dict[str, int]:
    """Gzipped size of every file the page loads, by URL path."""
    return {
        path: len(asset.gzipped)
        for path, asset in assets().items()
        if not any(path.startswith(prefix) for prefix in NOT_LOADED)
    }


ANSWER = "document.querySelector('#messages .message.assistant:last-child')"
"""The newest answer on screen."""
MODELS = "[...document.getElementById('model').options].map(o => o.value)"
"""The models the page offers."""


async def open_chat(page: Page, base_url: str) -> None:
    """Load the page from `/` (the redirect) and wait until it has listed the models."""
    await page.goto(f"{base_url}/")
    await page.wait_for("document.getElementById('model').options.length > 0")


async def set_value(page: Page, element_id: str, value: str) -> None:
    """Set a control as a user would: its value, then the events a user's edit fires."""
    await page.evaluate(
        f"(e => {{ e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input')); "
        f"e.dispatchEvent(new Event('change')); }})(document.getElementById({json.dumps(element_id)}))"
    )


async def click(page: Page, selector: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


async def send(page: Page, text: str) -> None:
    """Type `text` into the message box and press Enter, as a user does."""
    await page.evaluate("document.getElementById('prompt').focus()")
    await page.type_text(text)
    await page.press("Enter")


async def wait_answered(page: Page, timeout_s: float = 20.0) -> None:
    """Until the newest answer has ended (its request is over and Send is back)."""
    await page.wait_for(f"{ANSWER} !== null && document.getElementById('stop').hidden", timeout_s)


async def answer_text(page: Page) -> str:
    return str(await page.evaluate(f"{ANSWER}.querySelector('.body').textContent"))


async def record_growth(page: Page) -> None:
    """Record the newest answer's text length at every animation frame, in `window.lengths`."""
    await page.evaluate(
        "window.lengths = []; (function sample() { const a = document.querySelector("
        "'#messages .message.assistant:last-child .body'); if (a) window.lengths.push(a.textContent.length);"
        " requestAnimationFrame(sample); })()"
    )


async def in_answer(page: Page, expression: str) -> Any:
    """`expression` evaluated with `a` bound to the newest answer's element."""
    return await page.evaluate(f"(a => {expression})({ANSWER})")


async def color_scheme(page: Page, scheme: str) -> str:
    """The page's background colour under the system theme `scheme` ("dark" or "light")."""
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    await page.send("Emulation.setEmulatedMedia", {"features": features})
    return str(await page.evaluate("getComputedStyle(document.body).backgroundColor"))


def scrape(base_url: str) -> Scrape:
    return Scrape(httpx.get(f"{base_url}/metrics").text)


def same_origin(requests: list[str], base_url: str) -> list[str]:
    """The requests that left `base_url`'s origin."""
    return [url for url in requests if not url.startswith(f"{base_url}/")]


def asset_bytes(page: Page, base_url: str) -> dict[str, int]:
    """Bytes the page received per file of the chat page (its API calls left out)."""
    return {
        url.removeprefix(base_url): n
        for url, n in page.encoded_bytes.items()
        if url.startswith(f"{base_url}/chat")
    }
