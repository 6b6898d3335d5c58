"""The chat page that `seekserve serve` and `seekserve gateway` both serve at /chat.

`static/` holds the page (HTML, CSS, ES modules) and the libraries it vendors (markdown-it, highlight.js,
with their licences); `assets.py` reads them once and answers GET requests for them. The page talks
only to the OpenAI-compatible API of the origin it came from (docs/chat.md).
"""

from __future__ import annotations

from seekserve.chat.assets import (
    BUDGET_GZIP_BYTES,
    CHAT_PATH,
    CSP,
    Asset,
    PageReply,
    assets,
    page_reply,
)

__all__ = ["BUDGET_GZIP_BYTES", "CHAT_PATH", "CSP", "Asset", "PageReply", "assets", "page_reply"]
