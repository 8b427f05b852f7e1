"""Checks that run before any work: every input readable, every output writable and harmless.

``analyze`` and ``blendshapes`` call :func:`checked_items` first, so a bad argument ends the
run with exit 2 before a model is loaded or an output file is touched.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import InputError
from .outputs import check_output

MAX_LISTED = 3  # bad inputs named in the one-line error


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be analysed (missing, not a file, unreadable, not decodable), or None.

    Images are decoded at 1/8 size (cheap for JPEG), videos must yield their first frame:
    what opening the source would do, without keeping anything.
    """
    import cv2
    import numpy as np

    from .ros.bagsource import bag_problem, is_bag
    from .video import IMAGE_SUFFIXES, looks_like_image, not_found

    if is_bag(path):  # a robot recording (a ROS 2 bag may be a folder)
        return bag_problem(path)
    try:
        st = os.stat(path)
    except OSError:
        return str(not_found(path))
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file: {path}"
    if not os.access(path, os.R_OK):
        return f"permission denied: {path}"
    if st.st_size == 0:
        return f"empty file: {path}"
    if looks_like_image(path):
        from .admission import ImageRejected, admit_file

        try:  # the declared size first: a 1 KB PNG may declare 40000x40000
            admit_file(path)
        except ImageRejected as exc:
            return str(exc)
        data = np.fromfile(path, dtype=np.uint8)
        image = None
        for flag in (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_GRAYSCALE):
            try:  # 1/8 size fails on images under 8 px: then whole (they are tiny)
                image = cv2.imdecode(data, flag)
                break
            except cv2.error:
                continue
        return None if image is not None else f"cannot decode image: {path}"
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    finally:
        cap.release()
    if ok and frame is not None:
        return None
    what = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    return f"cannot decode {what}: {path}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: Mapping[str, str | None], inputs: list[Path]) -> dict[str, Path]:
    """Each output writable and harmless: not an input, not another output. Option -> target."""
    targets: dict[str, Path] = {}
    for option, path in outputs.items():
        target = check_output(path, option)
        if target is None:
            continue
        if not str(target).startswith(("/dev/", "/proc/")):
            for item in inputs:
                if isinstance(item, Path) and _same_file(target, item):
                    raise InputError(f"{option} {path} is one of the inputs; it would be "
                                     "overwritten")
            for other, seen in targets.items():
                if _same_file(target, seen):
                    raise InputError(f"{option} and {other} name the same file: {path}")
        targets[option] = target
    return targets


def checked_items(inputs: list[str], camera: int | None, outputs: Mapping[str, str | None],
                  landmarker: str | None = None,
                  skip_bad: bool = False) -> tuple[list[Path | int], list[str]]:
    """The sources to run (files or one camera) and the bad inputs skipped (``skip_bad``).

    Raises :class:`InputError` (exit 2) before any work: no or both kinds of input, a
    negative camera, an unusable output, a bad ``--landmarker``, a bad input (unless
    ``skip_bad``, which still fails when no input is left).
    """
    from .sources import expand_inputs
    from .video import SourceError

    if (camera is None) == (not inputs):
        raise InputError("give INPUT files or --camera N (one of the two)")
    if camera is not None and camera < 0:
        raise InputError(f"--camera: index must be 0 or more, not {camera}")
    try:
        paths = expand_inputs(inputs) if camera is None else []
    except SourceError as exc:
        raise InputError(str(exc)) from exc
    check_outputs(outputs, paths)
    if landmarker is not None:
        from .assets import landmarker_path

        landmarker_path(landmarker, download=False)  # BadModelPathError is an InputError
    if camera is not None:
        return [camera], []
    problems = {p: problem for p in paths  # stream URLs (str) are not files: not probed
                if isinstance(p, Path) and (problem := input_problem(p))}
    listed = list(problems.values())
    if problems and not skip_bad:
        more = len(listed) - MAX_LISTED
        text = "; ".join(listed[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        if len(paths) > 1:
            text = f"{len(listed)} of {len(paths)} inputs unusable, nothing written: {text}"
        raise InputError(text)
    good: list[Path | int] = [p for p in paths if p not in problems]
    if not good:
        raise InputError(f"no usable input: {'; '.join(listed[:MAX_LISTED])}")
    return good, listed
