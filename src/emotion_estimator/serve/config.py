"""Options and limits of the server, with secure defaults."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TOKEN_ENV = "EMOTION_ESTIMATOR_TOKEN"


@dataclass(frozen=True)
class ServeConfig:
    """What the app needs beyond the estimator and the source.

    ``token``: required on every endpoint but ``/healthz`` when set (and required to bind a
    non-loopback ``host``); ``max_frame_bytes`` / ``max_image_bytes``: the largest WebSocket
    frame / POSTed image (413 beyond); ``max_pixels``: the most pixels an image may declare
    in its header (413 beyond, checked before decoding: :mod:`emotion_estimator.admission`);
    ``max_decodes``: images decoded at once (the others wait; memory stays bounded);
    ``client_queue``: messages kept per WebSocket client before the oldest frame messages are
    dropped; ``max_frame_clients``: concurrent ``/v1/frames`` connections (each has its own
    landmarker); ``cors_origins``: the foreign origins (``https://app.example``) whose pages
    may call the server (default: same-origin only); ``allowed_hosts``: ``Host`` names
    accepted besides the loopback names and the bound one (``"*"``: any); ``video_fps``: the
    dashboard's annotated picture rate; ``keep_serving``: stay up after the live source
    failed or ended (``/healthz`` says 503 either way).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_frame_bytes: int = 2 * 1024 * 1024
    max_image_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    client_queue: int = 64
    max_frame_clients: int = 4
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    video_fps: float = 15.0
    max_decodes: int = 2
    keep_serving: bool = False


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
