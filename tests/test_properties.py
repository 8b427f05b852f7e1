"""Property-based: generated options, input files and output paths never crash the CLI.

Every case ends in exit 0, 1 or 2; a failure is one ``emotion-estimator: error:`` line and no
traceback; no file other than a named output changes, and a refused run (exit 2) changes
nothing at all. Bounded: ``EE_PROPERTY_EXAMPLES`` examples per test (default 20),
derandomized so CI runs are repeatable; set ``EE_PROPERTY_EXAMPLES=500 EE_PROPERTY_RANDOM=1``
to explore.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile import jpeg_header, png_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_video import write_video

from emotion_estimator.cli import cli

BOUNDED = settings(
    max_examples=int(os.environ.get("EE_PROPERTY_EXAMPLES", "20")),
    deadline=None,  # MediaPipe start-up time varies with the machine's load
    derandomize=not os.environ.get("EE_PROPERTY_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)

SUFFIXES = [".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tiff", ".mp4", ".avi", ".mov", ".mkv",
            ".txt", ""]
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10, 10**6).map(str),
    st.sampled_from(["nan", "-inf", "inf", "1e400", "-0", "abc", "", " 1", "0x10"]),
)
INT_TEXT = st.one_of(st.integers(-5, 150).map(str),
                     st.sampled_from(["x", "", "1.5", str(2**63), "-0", "1e3"]))

IMAGE = st.tuples(st.just("image"), st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".tiff"]),
                  st.integers(1, 48), st.integers(1, 48),
                  st.sampled_from(["gray", "bgr", "bgra", "u16", "float32"]))
RANDOM_BYTES = st.tuples(st.just("bytes"), st.sampled_from(SUFFIXES), st.binary(max_size=400))
TRUNCATED = st.tuples(st.just("truncated"), st.sampled_from(["png", "jpg", "avi", "mp4"]),
                      st.floats(0.0, 0.99))
VIDEO = st.tuples(st.just("video"), st.sampled_from([".avi", ".mp4", ".jpg"]),
                  st.integers(1, 3))
OTHER = st.tuples(st.sampled_from(["missing", "folder", "empty_folder", "loop", "broken_link",
                                   "fifo", "empty_file", "link_to_image", "text_mp4"]))
INPUT = st.one_of(IMAGE, IMAGE, VIDEO, VIDEO, RANDOM_BYTES, TRUNCATED, OTHER)  # half good

OUTPUT = st.sampled_from(["stdout", "rows.csv", "rows.jsonl", "rows.parquet", "existing.csv",
                          "link.csv", "dangling.csv", "/dev/null", "rows.txt",
                          "rows", "existing.csv", "input", "folder", "link.csv", "dangling.csv",
                          "/dev/null", "missing/rows.csv", "loop", "existing.png"])
ANNOTATE = st.sampled_from([None, None, "ann.mp4", "ann.png", "input", "/dev/null",
                            "existing.mp4", "folder", "loop.mp4"])
PLOT = st.sampled_from([None, None, "t.png", "t.mp4", "t.svg", "existing.png", "loop.png"])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """Valid files of each kind, to copy and truncate."""
    folder = tmp_path_factory.mktemp("seeds")
    image = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))[..., None].repeat(3, axis=2)
    paths = {"png": folder / "s.png", "jpg": folder / "s.jpg"}
    for path in paths.values():
        cv2.imwrite(str(path), image)
    paths["avi"] = write_video(folder / "s.avi", n=6)
    paths["mp4"] = write_video(folder / "s.mp4", n=6, fourcc="mp4v")
    return paths


def _image(kind: str, w: int, h: int) -> np.ndarray:
    ramp = (np.arange(w * h).reshape(h, w) * 37 % 256).astype(np.uint8)
    return {"gray": ramp, "bgr": np.dstack([ramp] * 3), "bgra": np.dstack([ramp] * 4),
            "u16": ramp.astype(np.uint16) * 257,
            "float32": np.dstack([ramp] * 3).astype(np.float32) / 255}[kind]


def make_input(world: Path, i: int, spec: tuple, seeds: dict[str, Path]) -> Path:
    """Create input ``i`` of the given kind in ``world``; return the path to pass."""
    kind = spec[0]
    path = world / f"in{i}"
    if kind == "image":
        path = path.with_suffix(spec[1])
        with contextlib.suppress(cv2.error):
            cv2.imwrite(str(path), _image(spec[4], spec[2], spec[3]))
        if not path.exists():  # a dtype the format cannot hold: some bytes instead
            path.write_bytes(b"\x00" * spec[2])
    elif kind == "bytes":
        path = path.with_suffix(spec[1]) if spec[1] else path
        path.write_bytes(spec[2])
    elif kind == "truncated":
        data = seeds[spec[1]].read_bytes()
        path = path.with_suffix(f".{spec[1]}")
        path.write_bytes(data[: int(len(data) * spec[2])])
    elif kind == "video":
        path = path.with_suffix(spec[1])
        shutil.copy(seeds["avi" if spec[2] < 3 else "mp4"], path)
    elif kind == "folder":
        path.mkdir()
        shutil.copy(seeds["png"], path / "a.png")
        (path / "b.jpg").write_bytes(b"junk")
    elif kind == "empty_folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(world / f"in{i}.other")
        (world / f"in{i}.other").symlink_to(path)
    elif kind == "broken_link":
        path.symlink_to(world / "gone.png")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty_file":
        path = path.with_suffix(".jpg")
        path.touch()
    elif kind == "link_to_image":
        shutil.copy(seeds["jpg"], world / f"in{i}.real.jpg")
        path = path.with_suffix(".jpg")
        path.symlink_to(world / f"in{i}.real.jpg")
    elif kind == "text_mp4":
        path = path.with_suffix(".mp4")
        path.write_text("hello")
    return path  # "missing": never created


def make_output(world: Path, name: str | None, inputs: list[Path]) -> str | None:
    """The path to pass for an output choice, creating what it names."""
    if name is None or name in ("stdout", "/dev/null"):
        return {"stdout": "-"}.get(name, name)
    if name == "input":
        return str(inputs[0])
    path = world / name
    if name.startswith("existing"):
        path.write_bytes(b"previous content")
    elif name == "folder":
        path.mkdir(exist_ok=True)
    elif name == "link.csv":
        (world / "real.csv").write_text("previous,content\n")
        path.symlink_to(world / "real.csv")
    elif name == "dangling.csv":
        path.symlink_to(world / "dangling-target.csv")
    elif name.startswith("loop") and not path.is_symlink():
        path.symlink_to(world / f"{name}.2")
        (world / f"{name}.2").symlink_to(path)
    return str(path)


def snapshot(world: Path) -> dict[str, tuple]:
    """Every entry under ``world`` (links not followed): kind and content digest or target."""
    state = {}
    for root, dirs, files in os.walk(world):
        for name in dirs + files:
            path = Path(root) / name
            st_ = os.lstat(path)
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                state[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(),
                                    st_.st_mode)
            else:
                state[str(path)] = ("other", st_.st_mode)
    return state


def allowed_targets(outputs: list[str | None]) -> set[str]:
    """The files a successful run may create or change: the named outputs (links followed)."""
    allowed = set()
    for out in outputs:
        if out and out not in ("-", "/dev/null"):
            allowed.add(os.path.realpath(out))
    return allowed


def check_run(argv: list[str], world: Path, outputs: list[str | None], capsys) -> int:
    """Run the CLI in-process and assert the contract; return the exit code."""
    before = snapshot(world)
    try:
        code = cli(argv)
    except SystemExit as exc:  # argparse refuses before run()
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    errors = [line for line in err.splitlines() if line.startswith("emotion-estimator: error:")]
    if code == 2:
        assert err.strip().splitlines() == errors and len(errors) == 1, (argv, err)
    elif code == 1:
        assert len(errors) == 1, (argv, err)
    else:
        assert not errors, (argv, err)
    after = snapshot(world)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    if code == 2:
        assert not changed, (argv, err, changed)  # refused: nothing at all was touched
    else:
        assert changed <= allowed_targets(outputs), (argv, err, changed)
    assert not [p for p in after if ".part" in Path(p).name], (argv, after)
    if os.environ.get("EE_PROPERTY_LOG"):
        with open(os.environ["EE_PROPERTY_LOG"], "a") as log:
            log.write(f"{code}\t{argv[0]}\t{(errors or [''])[0][:90]}\t{argv}\n")
    return code


@BOUNDED
@given(command=st.sampled_from(["analyze", "blendshapes"]),
       inputs=st.lists(INPUT, min_size=1, max_size=2),
       output=OUTPUT, fmt=st.sampled_from([None, None, "csv", "jsonl", "parquet"]),
       annotate=ANNOTATE, plot=PLOT, skip_bad=st.booleans())
def test_generated_inputs_and_outputs(command, inputs, output, fmt, annotate, plot, skip_bad,
                                      seeds, landmarker_model, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp)
        paths = [make_input(world, i, spec, seeds) for i, spec in enumerate(inputs)]
        out = make_output(world, output, paths)
        argv = [command, *map(str, paths), "-o", out, "--no-progress"]
        argv += ["-f", fmt] if fmt else []
        argv += ["--skip-bad"] if skip_bad else []
        outputs = [out]
        if command == "analyze":
            ann, plt = make_output(world, annotate, paths), make_output(world, plot, paths)
            argv += ["--annotate", ann] if ann else []
            argv += ["--plot", plt] if plt else []
            outputs += [ann, plt]
        check_run(argv, world, outputs, capsys)


COMMON_OPTION = st.one_of(
    st.tuples(st.just("--max-faces"), st.one_of(st.integers(1, 4).map(str), INT_TEXT)),
    st.tuples(st.just("--camera"), INT_TEXT),
    st.tuples(st.just("--format"), st.sampled_from(["csv", "csv", "jsonl", "parquet", "xlsx"])),
    st.tuples(st.just("--landmarker"), st.sampled_from(["nope.task", "in0.png"])),
    st.tuples(st.sampled_from(["--skip-bad", "--bogus"])),
    st.tuples(st.just("--max-faces")),  # a value missing
)
ANALYZE_OPTION = st.one_of(
    COMMON_OPTION,
    st.tuples(st.just("--forget-after"), NUMBER_TEXT),
    st.tuples(st.just("--smoothing"), st.sampled_from(["ema", "hmm", "none", "kalman", ""])),
    st.tuples(st.just("--smoothing-param"),
              st.builds("{}={}".format,
                        st.sampled_from(["time_constant_s", "margin", "hold_s", "dwell_s",
                                         "evidence_s", "decide_s", "floor", "bogus", ""]),
                        NUMBER_TEXT)),
    st.tuples(st.just("--model"), st.sampled_from(["default", "lstm", "nope", "in0.png"])),
    st.tuples(st.just("--blendshapes")),
)
OPTIONS = {"analyze": st.lists(ANALYZE_OPTION, max_size=3),
           "blendshapes": st.lists(COMMON_OPTION, max_size=2)}


@BOUNDED
@given(data=st.data(), command=st.sampled_from(["analyze", "blendshapes"]),
       with_input=st.booleans())
def test_generated_options(data, command, with_input, seeds, landmarker_model, capsys):
    options = data.draw(OPTIONS[command], label="options")
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp)
        shutil.copy(seeds["png"], world / "in0.png")
        argv = [command, *([str(world / "in0.png")] if with_input else []), "-o",
                str(world / "rows.csv"), "--no-progress"]
        for option in options:
            values = [v if v in ("nope", "default", "lstm") or not v.startswith(("in0", "nope."))
                      else str(world / v) for v in option[1:]]
            argv += [option[0], *values]
        check_run(argv, world, [str(world / "rows.csv")], capsys)


# ---- the server's request handlers and the image-admission rule (issue 17) -------------------
# Driven through ASGI directly (no sockets): any body, any Host / Origin / Sec-Fetch-Site, any
# frame sequence ends in a JSON answer with a status the schema names, never an exception.

SERVE_HOST = "127.0.0.1:8765"
FOREIGN = "https://app.example"
HEADER_TEXT = st.one_of(st.sampled_from([SERVE_HOST, "localhost:8765", "[::1]:8765",
                                         "evil.example", "127.0.0.1.evil.example", "", " ",
                                         "null", f"http://{SERVE_HOST}", FOREIGN,
                                         "http://evil.example", "cross-site", "same-origin"]),
                        st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40))


def _seed_image(ext: str) -> bytes:
    return cv2.imencode(ext, _image("bgr", 24, 16))[1].tobytes()


def _mutated(data: bytes, at: int, value: int, cut: float) -> bytes:
    out = bytearray(data[: max(1, int(len(data) * cut))])
    out[at % len(out)] = value
    return bytes(out)


IMAGE_BODY = st.one_of(
    st.binary(max_size=300),
    st.builds(_mutated, st.sampled_from([_seed_image(e) for e in
                                         (".png", ".jpg", ".bmp", ".webp", ".tiff", ".gif")]),
              st.integers(0, 40), st.integers(0, 255), st.floats(0.05, 1.0)),
    st.builds(png_header, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.builds(jpeg_header, st.integers(0, 65535), st.integers(0, 65535)),
)


@pytest.fixture(scope="module")
def asgi(landmarker_model):
    """A server app (no source, one foreign origin allowed), its classifier and one loop."""
    pytest.importorskip("starlette")
    pytest.importorskip("prometheus_client")
    import asyncio

    from test_serve_support import Scripted

    from emotion_estimator import EmotionEstimator
    from emotion_estimator.serve import ServeConfig, create_app

    classifier = Scripted(switch=10**9)
    estimator = EmotionEstimator(classifier)
    app = create_app(estimator, None, ServeConfig(cors_origins=(FOREIGN,),
                                                  max_image_bytes=4096))
    loop = asyncio.new_event_loop()
    with estimator:
        yield app, classifier, loop
    loop.close()


def _scope(kind: str, path: str, headers: dict[str, str]) -> dict:
    return {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
            "method": "POST" if path == "/v1/analyze" else "GET", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.encode(), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}


def _http(asgi, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    app, _, loop = asgi
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    loop.run_until_complete(app(_scope("http", path, headers), receive, send))
    status, headers = sent[0]["status"], dict(sent[0]["headers"])
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    is_json = headers.get(b"content-type") == b"application/json"
    return status, (json.loads(payload) if is_json else {})


@BOUNDED
@given(body=IMAGE_BODY, host=HEADER_TEXT, origin=st.one_of(st.none(), HEADER_TEXT),
       fetch_site=st.one_of(st.none(), HEADER_TEXT),
       content_type=st.sampled_from(["image/jpeg", "text/plain", "application/octet-stream",
                                     "multipart/form-data; boundary=x", ""]))
def test_analyze_handler_answers_any_request_with_json(asgi, body, host, origin, fetch_site,
                                                       content_type):
    from emotion_estimator.serve.security import host_name

    headers = {"host": host, "content-type": content_type}
    if origin is not None:
        headers["origin"] = origin
    if fetch_site is not None:
        headers["sec-fetch-site"] = fetch_site
    calls = asgi[1].calls
    status, payload = _http(asgi, "/v1/analyze", headers, body)
    assert status in (200, 400, 403, 413)
    assert (status == 200) == ("faces" in payload) and (status == 200) != ("error" in payload)
    foreign = origin is not None and origin.strip().lower() not in (f"http://{SERVE_HOST}",
                                                                     FOREIGN)
    if host_name(host) not in ("127.0.0.1", "localhost", "::1") or foreign:
        assert status == 403 and asgi[1].calls == calls  # refused before any work


@BOUNDED
@given(path=st.sampled_from(["/healthz", "/metrics", "/", "/nowhere"]), host=HEADER_TEXT,
       origin=st.one_of(st.none(), HEADER_TEXT))
def test_get_handlers_answer_any_host_and_origin(asgi, path, host, origin):
    headers = {"host": host, **({"origin": origin} if origin is not None else {})}
    status, _ = _http(asgi, path, headers)
    assert status in (200, 403, 404)


@BOUNDED
@given(frames=st.lists(IMAGE_BODY, min_size=1, max_size=4))
def test_frames_handler_answers_each_frame(asgi, frames):
    """A client that waits for each reply: every frame gets one message, ``frame`` or an
    ``error`` with 400 / 413, and the connection ends with the client, not with an error."""
    app, _, loop = asgi
    import asyncio

    incoming = [{"type": "websocket.connect"}]
    pending = list(frames)
    replies: list[dict] = []
    closed: list[dict] = []
    answered = asyncio.Event()

    async def receive() -> dict:
        if incoming:
            return incoming.pop(0)
        while len(replies) < len(frames) - len(pending):  # the last frame's reply first
            answered.clear()
            await answered.wait()
        if pending:
            return {"type": "websocket.receive", "bytes": pending.pop(0)}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict) -> None:
        if message["type"] == "websocket.send":
            replies.append(json.loads(message["text"]))
            answered.set()
        elif message["type"] == "websocket.close":
            closed.append(message)

    headers = {"host": SERVE_HOST}
    loop.run_until_complete(asyncio.wait_for(
        app(_scope("websocket", "/v1/frames", headers) | {"subprotocols": []}, receive, send),
        timeout=60))
    assert len(replies) == len(frames) and not closed
    for reply in replies:
        assert reply["type"] == "frame" or (reply["type"] == "error"
                                            and reply["status"] in (400, 413))


@BOUNDED
@given(body=IMAGE_BODY)
def test_admission_says_yes_or_image_rejected_never_anything_else(body):
    from emotion_estimator.admission import MIN_SIDE, ImageRejected, admit, decode

    try:
        declared = admit(body, max_pixels=4096 * 4096)
    except ImageRejected as exc:
        assert exc.status in (400, 413) and "\n" not in str(exc)
        return
    assert declared.pixels <= 4096 * 4096 and min(declared.width, declared.height) >= MIN_SIDE
    try:
        image = decode(body, max_pixels=4096 * 4096)
    except ImageRejected as exc:
        assert exc.status == 400
    else:
        assert image.dtype == np.uint8 and image.size > 0
