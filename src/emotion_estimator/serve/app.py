"""The Starlette application: routes, limits, lifespan (see the README for the schema)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
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

from ..admission import ImageRejected, admit, decode
from ..errors import InputError, describe
from ..estimator import EmotionEstimator, FrameResult
from ..video import FrameSource
from .config import ServeConfig
from .hub import Hub
from .messages import dumps, status_message
from .metrics import CONTENT_TYPE, Metrics
from .pipeline import FramesSession, LivePipeline, Publisher
from .security import OriginGuard, TokenGuard, allowed_hosts

WS_TOO_BIG, WS_GOING_AWAY, WS_ERROR, WS_TRY_LATER = 1009, 1001, 1011, 1013
log = logging.getLogger("emotion_estimator.serve")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _error_text(status: int, message: str) -> str:
    return dumps({"type": "error", "status": status, "error": message})


class Server:
    """State shared by the routes: estimator, hub, metrics, pipeline, sessions."""

    def __init__(self, estimator: EmotionEstimator, source: FrameSource | None,
                 config: ServeConfig) -> None:
        self.estimator, self.source, self.config = estimator, source, config
        self.metrics = Metrics()
        self.hub = Hub(on_drop=self.metrics.messages_dropped.inc)
        self.publisher = Publisher(self.hub, self.metrics, estimator.classes)
        self.pipeline = (LivePipeline(estimator, source, self.publisher, self._source_gone)
                         if source is not None else None)
        self.started = time.monotonic()
        self.sessions = 0
        self._session_ids = itertools.count()
        self._still_lock = threading.Lock()
        self._decodes = asyncio.Semaphore(max(1, config.max_decodes))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_serving: Callable[[], None] | None = None  # set by the CLI's uvicorn server

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

    def _source_gone(self) -> None:
        """The live source failed or ended (pipeline thread): every client gets a ``status``
        message; the server stops unless ``keep_serving``."""
        pipeline = self.pipeline
        assert pipeline is not None and self.source is not None
        text = dumps(status_message(self.source.name, pipeline.state, pipeline.error))
        if self.config.keep_serving:  # else the CLI says it as it exits
            log.warning("source %s %s%s; still serving", self.source.name, pipeline.state,
                        f": {pipeline.error}" if pipeline.error else "")
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # "event": never dropped for frames
                loop.call_soon_threadsafe(self.hub.publish, [("event", text)])
        if not self.config.keep_serving and self.stop_serving is not None:
            self.stop_serving()

    # HTTP ------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        """200 ``ok``, or 503 once the live source failed or ended."""
        gone = self.pipeline is not None and self.pipeline.gone
        body: dict[str, Any] = {
            "status": f"source {self.pipeline.state}" if gone and self.pipeline else "ok",
            "uptime_s": round(time.monotonic() - self.started, 1)}
        if self.pipeline is not None:
            body.update(source=self.pipeline.state, frames=self.pipeline.frames)
            if self.pipeline.error:
                body["error"] = self.pipeline.error
        return JSONResponse(body, status_code=503 if gone else 200)

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

    async def snapshot(self, request: Request) -> Response:
        """The newest annotated picture as one JPEG, its ``frame`` message (the same frame)
        in the ``X-Frame-Message`` header; 204 before the first frame."""
        data, msg = await run_in_threadpool(self.publisher.snapshot)
        if data is None or msg is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Frame-Message": dumps(msg)})

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
            image = await self._decode(b"".join(chunks))
            faces = await run_in_threadpool(self._still, image)
        except ImageRejected as exc:
            return _error(exc.status, exc.reason)
        except InputError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - one line in the log, JSON to the client
            log.error("/v1/analyze failed: %s", describe(exc))
            return _error(500, "analysis failed")
        result = FrameResult(0, 0.0, faces)
        rows = result.rows() if faces else []
        return JSONResponse({
            "width": image.shape[1], "height": image.shape[0], "face_detected": bool(faces),
            "faces": [{k: v for k, v in r.items() if k not in ("frame", "timestamp_s",
                                                                 "face_detected")}
                      for r in rows]})

    async def _decode(self, data: bytes) -> np.ndarray:
        """The admission rule first (on the loop: header only, time in bytes, not pixels),
        then the decode on a thread, at most ``max_decodes`` at once."""
        admit(data, self.config.max_pixels)
        async with self._decodes:
            return await run_in_threadpool(decode, data, self.config.max_pixels)

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
        """Binary JPEG/PNG frames in, each analysed frame's messages (frame, then events) back.

        Newest frame wins: a frame that arrives while the previous one is analysed waits in a
        one-frame slot, and a newer one replaces it (counted in ``dropped_frames``); the
        reply's ``latency_ms`` runs from the frame's receipt to its reply.
        """
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
        limit, lock = self.config.max_frame_bytes, asyncio.Lock()
        slot: list[tuple[bytes, float, float | None]] = []  # the newest frame not analysed
        stamp = SenderStamp()
        ready = asyncio.Event()

        async def send(text: str) -> None:
            async with lock:
                await ws.send_text(text)

        async def receive() -> int | None:
            """Frames into the slot; the close code to send, or None (client left)."""
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return None
                received, data = time.monotonic(), message.get("bytes")
                if data is None:  # {"timestamp_s": T}: the sender's time of the next frame
                    if problem := stamp.read(message.get("text")):
                        await send(_error_text(400, problem))
                elif len(data) > limit:
                    await send(_error_text(413, f"frame larger than {limit} bytes"))
                    return WS_TOO_BIG
                else:
                    if slot:
                        session.dropped += 1
                    slot[:] = [(data, received, stamp.take())]
                    ready.set()

        async def work() -> int | None:
            """Analyse the newest frame, reply; the close code on a failed analysis."""
            while True:
                await ready.wait()
                ready.clear()
                if not slot:
                    continue
                data, received, timestamp_s = slot.pop()
                try:
                    image = await self._decode(data)
                except ImageRejected as exc:
                    await send(_error_text(exc.status, exc.reason))
                    continue
                try:
                    messages = await session.analyze(image, received, timestamp_s)
                except Exception as exc:  # noqa: BLE001 - told to the client, one log line
                    log.error("%s failed: %s", session.name, describe(exc))
                    await send(_error_text(500, "analysis failed"))
                    return WS_ERROR
                messages[0]["latency_ms"] = round((time.monotonic() - received) * 1000, 2)
                for msg in messages:
                    await send(dumps(msg))

        async def shutdown() -> int:
            await self.hub.done.wait()
            return WS_GOING_AWAY

        tasks = [asyncio.create_task(t) for t in (receive(), work(), shutdown())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, asyncio.CancelledError | WebSocketDisconnect)]
        code = next((t.result() for t in done if not t.cancelled() and t.exception() is None),
                    None)
        if errors and code is None:
            log.error("frames connection failed: %s", describe(errors[0]))
            code = WS_ERROR
        if code is not None:
            with contextlib.suppress(Exception):
                await ws.close(code)


class SenderStamp:
    """``/v1/frames``: a text message ``{"timestamp_s": T}`` stamps the next binary frame
    with the sender's capture time (seconds, not going backwards), so its filters run on the
    robot's clock; frames without one get the time of their receipt."""

    def __init__(self) -> None:
        self.pending: float | None = None
        self.last = -math.inf

    def read(self, text: str | None) -> str | None:
        """Take a stamp message; the error to send back, or None."""
        try:
            value = json.loads(text or "")["timestamp_s"]
            ok = isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value)
        except (ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            return ('send frames as binary JPEG/PNG, each optionally after a text message '
                    '{"timestamp_s": SECONDS}')
        if value < self.last:
            return f"timestamp_s must not go backwards ({value} after {self.last})"
        self.pending = self.last = float(value)
        return None

    def take(self) -> float | None:
        """The stamp of the frame just received (None: unstamped)."""
        value, self.pending = self.pending, None
        return value


def create_app(estimator: EmotionEstimator, source: FrameSource | None = None,
               config: ServeConfig | None = None) -> Starlette:
    """The app over ``source`` (a live source, or None: frames only come from clients)."""
    config = config or ServeConfig()
    server = Server(estimator, source, config)
    middleware = [Middleware(OriginGuard, hosts=allowed_hosts(config.host,
                                                              config.allowed_hosts),
                             origins=frozenset(config.cors_origins)),
                  Middleware(TokenGuard, token=config.token)]
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(1, Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                        allow_methods=["GET", "POST"],
                                        allow_headers=["Authorization", "Content-Type"]))
    app = Starlette(routes=[
        Route("/", server.dashboard),
        Route("/healthz", server.healthz),
        Route("/metrics", server.metrics_text),
        Route("/v1/video.mjpg", server.video),
        Route("/v1/frame.jpg", server.snapshot),
        Route("/v1/analyze", server.analyze, methods=["POST"]),
        WebSocketRoute("/v1/stream", server.stream_ws),
        WebSocketRoute("/v1/frames", server.frames_ws),
    ], middleware=middleware, lifespan=server.lifespan)
    app.state.server = server
    return app
