"""Support for the serve tests (no tests here): an in-process server on a loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def running(app: Any, config: Any, sndbuf: int | None = None) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:<free port> in a thread; yields ``host:port``.

    ``sndbuf``: the kernel send buffer of every connection (inherited from the listener), so
    that a client that never reads fills it in seconds, not minutes.
    """
    from emotion_estimator.commands.serve import make_server

    sock = socket.socket()
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = make_server(app, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "server did not start"
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        app.state.server.begin_shutdown()
        server.should_exit = True
        thread.join(20)
        sock.close()


class Scripted:
    """A classifier that says happy for its first ``switch`` calls, then sad."""

    classes = ("happy", "sad", "unknown")

    def __init__(self, switch: int) -> None:
        self.switch, self.calls = switch, 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        p = [0.9, 0.05, 0.05] if self.calls <= self.switch else [0.05, 0.9, 0.05]
        return np.array([p] * len(x))
