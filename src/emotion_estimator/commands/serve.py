"""``emotion-estimator serve``: live results over HTTP / WebSocket, a dashboard, metrics."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

from ..temporal import SMOOTHING
from .view_options import add_view_options, view_kwargs


def configure(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="serve camera N live")
    src.add_argument("--source", metavar="URL|FILE",
                     help="a stream (rtsp://, http(s)://) or a video file")
    p.add_argument("--realtime", action="store_true",
                   help="play a --source file at its frame rate as if live (drops when behind)")
    p.add_argument("--loop", action="store_true", help="with --realtime: replay the file forever")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")
    p.add_argument("--token", help="bearer token required on every endpoint but /healthz "
                                   "(default: $EMOTION_ESTIMATOR_TOKEN)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN, e.g. https://app.example "
                        "(repeatable; default: only the server's own pages)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="accept requests for Host NAME besides the loopback names and the "
                        "bound address (repeatable; '*' = any, e.g. behind a proxy)")
    p.add_argument("--keep-serving", action="store_true",
                   help="stay up when the live source fails or ends (/healthz then says "
                        "503); default: stop with exit 1")
    p.add_argument("--max-frame-bytes", type=int, default=2 * 1024 * 1024, metavar="N",
                   help="largest frame on /v1/frames (2 MiB)")
    p.add_argument("--max-image-bytes", type=int, default=8 * 1024 * 1024, metavar="N",
                   help="largest image on /v1/analyze (8 MiB)")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, metavar="N",
                   help="most pixels an uploaded image or frame may declare (4096x4096; "
                        "413 beyond, refused before decoding)")
    p.add_argument("--max-decodes", type=int, default=2, metavar="N",
                   help="images decoded at once; others wait (2)")
    p.add_argument("--model", metavar="ONNX|NAME", help="classifier (default: shipped)")
    add_view_options(p)
    p.add_argument("--smoothing", choices=SMOOTHING, default="ema",
                   help="temporal filter per face (default: ema)")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="faces per frame (1)")
    p.add_argument("--landmarker", metavar="PATH", help="face_landmarker.task to use")


def _require_extra() -> None:
    from ..errors import InputError

    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        raise InputError(f"serve needs the [serve] extra ({exc.name} is missing): "
                         "pip install 'emotion-estimator[serve]'") from None


def _config(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..serve.config import TOKEN_ENV, ServeConfig, is_loopback
    from ..serve.security import token_problem

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    public = not is_loopback(args.host)
    if public and not token:
        raise InputError(f"binding {args.host} exposes the server beyond this machine: "
                         f"give --token or set {TOKEN_ENV}")
    if token is not None and (problem := token_problem(token, public)):
        raise InputError(problem)
    if (args.realtime or args.loop) and not args.source:
        raise InputError("--realtime and --loop replay a --source file")
    if args.loop and not args.realtime:
        raise InputError("--loop needs --realtime")
    if min(args.max_faces, args.max_frame_bytes, args.max_image_bytes, args.max_pixels,
           args.max_decodes) < 1:
        raise InputError("--max-faces, --max-frame-bytes, --max-image-bytes, --max-pixels "
                         "and --max-decodes must be >= 1")
    for origin in args.cors_origin:
        from ..serve.security import origin_netloc

        if origin_netloc(origin) is None:
            raise InputError(f"--cors-origin: not an origin (scheme://host[:port]): {origin!r}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535, not {args.port}")
    return ServeConfig(host=args.host, port=args.port, token=token,
                       max_frame_bytes=args.max_frame_bytes,
                       max_image_bytes=args.max_image_bytes, max_pixels=args.max_pixels,
                       max_decodes=args.max_decodes, cors_origins=tuple(args.cors_origin),
                       allowed_hosts=tuple(args.allow_host), keep_serving=args.keep_serving)


def _open(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..live import ReplaySource
    from ..sources import is_url, open_source
    from ..video import SourceError

    try:
        if args.camera is not None:
            return open_source(args.camera)
        if args.source is None:
            return None
        if args.realtime and not is_url(args.source):
            return ReplaySource(args.source, loop=args.loop)
        return open_source(args.source)
    except SourceError as exc:
        raise InputError(str(exc)) from exc


def _bind(host: str, port: int) -> socket.socket:
    from ..errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, config: Any, log_level: str = "warning") -> Any:
    """A uvicorn server whose SIGINT / SIGTERM close the clients and return normally."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # no re-raise after a clean stop
            import threading

            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.server.begin_shutdown()
            super().handle_exit(sig, frame)

    # no per-message deflate: small JSON messages, and CPU per client matters more
    uv_config = uvicorn.Config(app, log_level=log_level, ws_max_size=config.max_frame_bytes
                               + 65536, ws_per_message_deflate=False,
                               timeout_graceful_shutdown=3, lifespan="on", access_log=False)
    server = Server(uv_config)

    def stop_serving() -> None:  # the live source is gone: close the clients, then stop
        app.state.server.begin_shutdown()
        server.should_exit = True

    app.state.server.stop_serving = stop_serving
    return server


def run(args: argparse.Namespace) -> int:
    _require_extra()
    config = _config(args)
    from ..errors import InputError
    from ..estimator import EmotionEstimator
    from ..serve.app import create_app

    try:
        estimator = EmotionEstimator(args.model, max_faces=args.max_faces,
                                     smoothing=args.smoothing, landmarker=args.landmarker,
                                     **view_kwargs(args))
    except (ValueError, OSError) as exc:
        raise InputError(str(exc)) from exc
    source = _open(args)
    try:
        sock = _bind(config.host, config.port)
    except InputError:
        if source is not None:
            source.close()
        raise
    app = create_app(estimator, source, config)
    server = make_server(app, config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving on http://{shown}:{port}/ (dashboard), ws://{shown}:{port}/v1/stream"
          + (f", source {source.name}" if source is not None else ", no source: frames in "
             "via /v1/frames") + ("; token required" if config.token else ""),
          file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if source is not None:
            source.close()
    pipeline = app.state.server.pipeline
    if pipeline is not None and pipeline.gone:  # failed or ended by itself
        print(f"emotion-estimator: error: {pipeline.error or f'source {source.name} ended'}",
              file=sys.stderr)
        if not config.keep_serving:
            return 1
    print("stopped", file=sys.stderr)
    return 0
