"""The bearer token: checked on every HTTP and WebSocket endpoint but the open ones."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]
OPEN_PATHS = frozenset({"/healthz"})


def presented_token(scope: Scope) -> str | None:
    """The token a request carries: ``Authorization: Bearer T`` or ``?token=T``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token:
                return token.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


def token_ok(expected: str, scope: Scope) -> bool:
    """Constant-time comparison of the presented token with ``expected``."""
    given = presented_token(scope)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenGuard:
    """ASGI middleware: 401 (HTTP) or a refused handshake (WebSocket, 403) without the token."""

    def __init__(self, app: ASGIApp, token: str | None,
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app, self.token, self.open_paths = app, token, open_paths

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if (self.token is None or scope["type"] not in ("http", "websocket")
                or scope["path"] in self.open_paths or token_ok(self.token, scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "missing or wrong token"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
