"""Annotated frames (box, id, label, a bar per class; a "no face" mark) and a video writer."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import TempFile, atomic_path, resolve_output
from .estimator import FaceResult, FrameResult

# BGR colours per class name; classes not listed get one from the palette
COLORS = {"happy": (60, 190, 60), "sad": (200, 120, 40), "unknown": (150, 150, 150)}
PALETTE = ((40, 160, 230), (180, 60, 180), (60, 200, 200), (90, 90, 220))
NO_FACE = (40, 40, 220)
UNDECIDED = (110, 110, 110)  # a face whose filter has not chosen a label yet
MIN_SIDE = 2  # pixels; smaller frames are padded before encoding


def class_color(name: str, classes: Sequence[str]) -> tuple[int, int, int]:
    """The drawing colour of a class (stable for a given class list)."""
    return COLORS.get(name) or PALETTE[list(classes).index(name) % len(PALETTE)]


def annotate(image: np.ndarray, result: FrameResult, classes: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` (BGR) with every face of ``result`` drawn, or a "no face" mark."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(width, height) / 700)
    thick = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    if not result.faces:
        (tw, th), base = cv2.getTextSize("no face", font, scale, thick)
        pad = round(6 * scale)
        cv2.rectangle(out, (0, 0), (tw + 2 * pad, th + base + 2 * pad), NO_FACE, -1)
        cv2.putText(out, "no face", (pad, pad + th), font, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
        return out
    for face in result.faces:
        x, y, w, h = (round(v) for v in face.box)
        color = class_color(face.label, classes) if face.decided else UNDECIDED
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick + 1, cv2.LINE_AA)
        text = face_text(face)
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        ty = max(y - base - 2, th + 2)
        cv2.rectangle(out, (x, ty - th - 2), (x + tw + 4, ty + base), color, -1)
        cv2.putText(out, text, (x + 2, ty), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        _bars(out, face.probabilities, classes, (x, min(y + h + 4, height - 1)), max(w, 60),
              scale, font)
    return out


def face_text(face: FaceResult) -> str:
    """``#1 happy 79%``: the label with its own (filtered) probability, also while another
    class leads but has not yet won the label; ``#1 undecided`` before the first decision."""
    if not face.decided or face.label is None:
        return f"#{face.face_id} undecided"
    return f"#{face.face_id} {face.label} {face.probabilities.get(face.label, 0.0):.0%}"


def _bars(out: np.ndarray, probs: dict[str, float], classes: Sequence[str],
          origin: tuple[int, int], width: int, scale: float, font: int) -> None:
    """One thin horizontal bar per class, its length the probability, name at its left."""
    import cv2

    x, y = origin
    bar_h = max(7, round(12 * scale))
    label_w = cv2.getTextSize("unk", font, scale * 0.55, 1)[0][0] + 6
    for name in classes:
        if y + bar_h >= out.shape[0]:
            break
        p = float(np.clip(probs.get(name, 0.0), 0.0, 1.0))
        color = class_color(name, classes)
        x0 = x + label_w
        cv2.rectangle(out, (x, y), (x0 + width - label_w, y + bar_h), (40, 40, 40), -1)
        cv2.putText(out, name[:3], (x + 3, y + bar_h - 2), font, scale * 0.55, (255, 255, 255),
                    1, cv2.LINE_AA)
        cv2.rectangle(out, (x0, y + 1), (x0 + round((width - label_w) * p), y + bar_h - 1),
                      color, -1)
        y += bar_h + 2


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """An annotated photo, written atomically in the format its suffix names."""
    import cv2

    path = Path(path)
    ok, data = cv2.imencode(path.suffix.lower() or ".png", image)
    if not ok:
        raise OSError(f"cannot encode an image as {path.suffix}: {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


class VideoWriter:
    """Frames -> video file, written to a temp file and moved into place on :meth:`close`.

    The size comes from the first frame; ``.mp4``/``.mov``/``.m4v`` use MPEG-4 part 2
    (``mp4v``, always available in OpenCV's wheels), ``.avi`` MJPEG. Encoding runs in a
    background thread (bounded queue), overlapping with the landmarker.
    """

    def __init__(self, path: str | os.PathLike, fps: float, queue_size: int = 16) -> None:
        self.path = Path(path)
        target, in_place = resolve_output(self.path)  # a symlink: the file it names
        if in_place:
            raise OSError(f"cannot write a video into a device or pipe: {self.path}")
        if not target.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {self.path.parent}")
        self.fps = fps if fps and fps > 0 else 30.0
        self.frames = 0
        self._writer = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # the suffix tells OpenCV the container
        self._tmp: TempFile | None = TempFile(target, self.path.suffix or ".mp4")

    def _open(self, width: int, height: int) -> None:
        import cv2

        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self._writer = cv2.VideoWriter(str(self._tmp.path), cv2.VideoWriter_fourcc(*fourcc),
                                       self.fps, (width, height))
        if not self._writer.isOpened():
            raise OSError(f"cannot write video {self.path} (unsupported suffix?)")
        self._thread = threading.Thread(target=self._encode, name="encode", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        while (image := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(image)
                except Exception as exc:  # noqa: BLE001 - reported by write() / close()
                    self._error = exc

    def write(self, image: np.ndarray) -> None:
        """Queue one BGR frame (the array must not change afterwards)."""
        if self._error is not None:
            raise OSError(f"writing {self.path} failed: {self._error}")
        if min(image.shape[:2]) < MIN_SIDE:  # MPEG-4 refuses a 1-pixel side: pad it
            import cv2

            image = cv2.copyMakeBorder(image, 0, max(MIN_SIDE - image.shape[0], 0), 0,
                                       max(MIN_SIDE - image.shape[1], 0), cv2.BORDER_CONSTANT)
        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        self._queue.put(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place (nothing is published without a frame)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            if self.frames and self._error is None:
                self._tmp.publish()
            else:
                self._tmp.discard()
            self._tmp = None
        if self._error is not None:
            raise OSError(f"writing {self.path} failed: {self._error}")

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
