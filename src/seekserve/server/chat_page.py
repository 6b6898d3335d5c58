"""GET /chat: the chat page (seekserve.chat), and GET / redirecting there.

The page and its files are open like /health; what it does with the model goes through /v1/*,
which asks for the API key where one is set.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from seekserve.chat import page_reply

__all__ = ["router"]

router = APIRouter()


@router.get("/", include_in_schema=False)
@router.get("/chat", include_in_schema=False)
@router.get("/chat/{name:path}", include_in_schema=False)
async def chat_page(request: Request) -> Response:
    headers = request.headers
    reply = page_reply(request.url.path, headers.get("accept-encoding", ""), headers.get("if-none-match", ""))
    if reply is None:
        raise HTTPException(404)
    return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))
