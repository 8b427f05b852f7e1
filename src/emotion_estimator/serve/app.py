"""The Starlette application: routes, limits, lifespan (see the README for the schema)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..estimator import EmotionEstimator, FrameResult
from ..video import FrameSource
from .config import ServeConfig
from .hub import Hub
from .metrics import CONTENT_TYPE, Metrics
from .pipeline import FramesSession, LivePipeline, Publisher
from .security import TokenGuard

WS_TOO_BIG, WS_GOING_AWAY, WS_TRY_LATER = 1009, 1001, 1013


class ImageError(ValueError):
    """A bad upload: ``status`` 400 (not an image) or 413 (too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG/PNG/... bytes -> BGR; the size is probed at 1/8 scale before a full decode."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    probe = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8) if buf.size else None
    if probe is None:
        raise ImageError(400, "cannot decode image")
    if probe.shape[0] * probe.shape[1] * 64 > max_pixels * 1.1:
        raise ImageError(413, f"image too large (more than {max_pixels} pixels)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(400, "cannot decode image")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(413, f"image too large (more than {max_pixels} pixels)")
    return image


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Server:
    """State shared by the routes: estimator, hub, metrics, pipeline, sessions."""

    def __init__(self, estimator: EmotionEstimator, source: FrameSource | None,
                 config: ServeConfig) -> None:
        self.estimator, self.source, self.config = estimator, source, config
        self.metrics = Metrics()
        self.hub = Hub(on_drop=self.metrics.messages_dropped.inc)
        self.publisher = Publisher(self.hub, self.metrics, estimator.classes)
        self.pipeline = (LivePipeline(estimator, source, self.publisher)
                         if source is not None else None)
        self.started = time.monotonic()
        self.sessions = 0
        self._session_ids = itertools.count()
        self._still_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    # lifecycle -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.loop = self.publisher.loop = asyncio.get_running_loop()
        self.estimator.__enter__()  # one IMAGE landmarker for /v1/analyze
        if self.pipeline is not None:
            self.pipeline.start()
        try:
            yield
        finally:
            self.hub.close()
            if self.pipeline is not None:
                await asyncio.to_thread(self.pipeline.stop)
            await asyncio.to_thread(self.estimator.close)

    def begin_shutdown(self) -> None:
        """Close every stream (thread-safe): clients get a close frame, loops end."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.hub.close)

    # HTTP ------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok",
                                "uptime_s": round(time.monotonic() - self.started, 1)}
        if self.pipeline is not None:
            body.update(source=self.pipeline.state, frames=self.pipeline.frames)
            if self.pipeline.error:
                body["error"] = self.pipeline.error
        return JSONResponse(body)

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def dashboard(self, request: Request) -> Response:
        static = resources.files(__package__) / "static"
        page = (static / "index.html").read_text(encoding="utf-8")
        script = (static / "dashboard.js").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("/*DASHBOARD_JS*/", script),
                            headers={"Cache-Control": "no-store"})

    async def video(self, request: Request) -> Response:
        """The newest annotated picture as an MJPEG stream (newest frame only, no queue)."""
        period = 1.0 / max(self.config.video_fps, 0.1)

        async def parts() -> AsyncIterator[bytes]:
            last = None
            while not self.hub.closed:
                data = await run_in_threadpool(self.publisher.jpeg)
                if data is not None and data is not last:
                    last = data
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                           + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                await asyncio.sleep(period)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    async def analyze(self, request: Request) -> Response:
        """POST an image's bytes -> its faces (no smoothing: one still)."""
        limit = self.config.max_image_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return _error(413, f"image larger than {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _error(413, f"image larger than {limit} bytes")
            chunks.append(chunk)
        try:
            image = await run_in_threadpool(decode_image, b"".join(chunks),
                                            self.config.max_pixels)
        except ImageError as exc:
            return _error(exc.status, str(exc))
        faces = await run_in_threadpool(self._still, image)
        result = FrameResult(0, 0.0, faces)
        rows = result.rows() if faces else []
        return JSONResponse({
            "width": image.shape[1], "height": image.shape[0], "face_detected": bool(faces),
            "faces": [{k: v for k, v in r.items() if k not in ("frame", "timestamp_s",
                                                                 "face_detected")}
                      for r in rows]})

    def _still(self, image: np.ndarray) -> list:
        with self._still_lock:
            return self.estimator.analyze_image(image)

    # WebSockets ------------------------------------------------------------------------
    async def stream_ws(self, ws: WebSocket) -> None:
        """Every frame message and event (``?events_only=1``: events only)."""
        events_only = ws.query_params.get("events_only", "").lower() in ("1", "true", "yes")
        await ws.accept()
        sub = self.hub.subscribe(self.config.client_queue, events_only)
        gauge = self.metrics.clients.labels("stream")
        gauge.inc()

        async def pump() -> None:
            while batch := await sub.next_batch():
                for _, text in batch:
                    await ws.send_text(text)

        async def drain() -> None:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

        tasks = [asyncio.create_task(pump()), asyncio.create_task(drain())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.unsubscribe(sub)
            gauge.dec()
        if self.hub.closed:
            with contextlib.suppress(Exception):
                await ws.close(WS_GOING_AWAY)

    async def frames_ws(self, ws: WebSocket) -> None:
        """Binary JPEG frames in, each frame's messages (frame, then events) back."""
        await ws.accept()
        if self.sessions >= self.config.max_frame_clients:
            await ws.close(WS_TRY_LATER, "too many frame clients")
            return
        self.sessions += 1
        gauge = self.metrics.clients.labels("frames")
        gauge.inc()
        session = FramesSession(self.estimator, self.publisher,
                                f"frames/{next(self._session_ids)}")
        try:
            await self._frames_loop(ws, session)
        except WebSocketDisconnect:
            pass
        finally:
            self.sessions -= 1
            gauge.dec()
            await asyncio.to_thread(session.close)

    async def _frames_loop(self, ws: WebSocket, session: FramesSession) -> None:
        limit = self.config.max_frame_bytes
        while not self.hub.closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            received = time.monotonic()
            if data is None:
                await ws.send_text(json.dumps({"type": "error", "status": 400,
                                               "error": "send frames as binary JPEG/PNG"}))
                continue
            if len(data) > limit:
                await ws.send_text(json.dumps({"type": "error", "status": 413,
                                               "error": f"frame larger than {limit} bytes"}))
                await ws.close(WS_TOO_BIG)
                return
            try:
                image = await run_in_threadpool(decode_image, data, self.config.max_pixels)
            except ImageError as exc:
                await ws.send_text(json.dumps({"type": "error", "status": exc.status,
                                               "error": str(exc)}))
                continue
            for msg in await session.analyze(image, received):
                await ws.send_text(json.dumps(msg, separators=(",", ":")))
        await ws.close(WS_GOING_AWAY)


def create_app(estimator: EmotionEstimator, source: FrameSource | None = None,
               config: ServeConfig | None = None) -> Starlette:
    """The app over ``source`` (a live source, or None: frames only come from clients)."""
    config = config or ServeConfig()
    server = Server(estimator, source, config)
    middleware = [Middleware(TokenGuard, token=config.token)]
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                        allow_methods=["GET", "POST"],
                                        allow_headers=["Authorization", "Content-Type"]))
    app = Starlette(routes=[
        Route("/", server.dashboard),
        Route("/healthz", server.healthz),
        Route("/metrics", server.metrics_text),
        Route("/v1/video.mjpg", server.video),
        Route("/v1/analyze", server.analyze, methods=["POST"]),
        WebSocketRoute("/v1/stream", server.stream_ws),
        WebSocketRoute("/v1/frames", server.frames_ws),
    ], middleware=middleware, lifespan=server.lifespan)
    app.state.server = server
    return app
