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


# Host and Origin ------------------------------------------------------------------------------
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MIN_TOKEN_CHARS = 16
MIN_TOKEN_DISTINCT = 6


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (latin-1), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(value: str) -> str:
    """``Host`` header or ``host:port`` -> the lower-case name without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def origin_netloc(origin: str) -> str | None:
    """``scheme://host[:port]`` -> ``host[:port]`` (the default port dropped), lower case;
    None for ``null`` or anything that is not an origin."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        return None
    default = ":443" if scheme == "https" else ":80"
    return rest[:-len(default)] if rest.endswith(default) else rest


class OriginGuard:
    """ASGI middleware against foreign web pages (DNS rebinding, cross-site requests).

    - ``Host`` must name one of ``hosts`` (``"*"``: any): a rebound DNS name is refused;
    - a request with an ``Origin`` header (every browser POST, fetch and WebSocket) must come
      from the page's own origin (same ``host:port`` as ``Host``) or one of ``origins``;
    - a browser request marked ``Sec-Fetch-Site: cross-site`` without an ``Origin`` (an
      ``<img>`` or ``<form>`` on another site) is refused as well.

    Refused: 403 JSON (HTTP) or a refused handshake (WebSocket). Clients that are not browsers
    (curl, robots) send no ``Origin`` and are unaffected.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str], origins: frozenset[str]) -> None:
        self.app, self.hosts = app, frozenset(host_name(h) for h in hosts)
        self.any_host = "*" in hosts
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in origins)

    def problem(self, scope: Scope) -> str | None:
        """Why the request is refused, or None."""
        host = header(scope, b"host")
        if host is None or (not self.any_host and host_name(host) not in self.hosts):
            return "host not allowed"
        origin = header(scope, b"origin")
        if origin is not None:
            own = origin_netloc(origin) == host.strip().lower()
            if not own and origin.strip().lower().rstrip("/") not in self.origins:
                return "cross-origin request refused (see --cors-origin)"
        elif (header(scope, b"sec-fetch-site") or "").lower() in ("cross-site", "same-site"):
            return "cross-site request refused"
        return None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        why = self.problem(scope) if scope["type"] in ("http", "websocket") else None
        if why is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why})
            return
        body = json.dumps({"error": why}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"vary", b"Origin")]})
        await send({"type": "http.response.body", "body": body})


def allowed_hosts(bound: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The ``Host`` names accepted: loopback names, the bound name when it is not a wildcard
    (for a wildcard bind: this machine's name and addresses), and ``extra``."""
    import socket

    names = set(LOOPBACK_NAMES) | {host_name(h) for h in extra}
    bound = host_name(bound)
    if bound in ("0.0.0.0", "::", ""):
        names.add(socket.gethostname().lower())
        with _quiet():
            names.add(socket.getfqdn().lower())
        with _quiet():
            names.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    else:
        names.add(bound)
    return frozenset(names)


def token_problem(token: str, public: bool) -> str | None:
    """Why ``token`` is too weak: whitespace or control characters anywhere; on a public
    bind also fewer than 16 characters or fewer than 6 distinct ones."""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        return "the token must be printable and without spaces"
    if public and (len(token) < MIN_TOKEN_CHARS or len(set(token)) < MIN_TOKEN_DISTINCT):
        return (f"the token must have at least {MIN_TOKEN_CHARS} characters, "
                f"{MIN_TOKEN_DISTINCT} of them different, on a non-loopback bind "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return None


def _quiet():  # noqa: ANN202 - a suppress() for name lookups
    import contextlib

    return contextlib.suppress(OSError, UnicodeError)
