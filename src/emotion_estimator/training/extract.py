"""Parallel, resumable blendshape extraction: one MediaPipe call per (image, copy, variant).

The work is cut into fixed chunks of images. Each worker process holds its own
:class:`FaceLandmarker` (IMAGE mode) and writes every finished chunk as a Parquet shard
(temp file + ``os.replace``), so a killed run restarts with only the missing chunks and
produces the same rows: augmentation is seeded per (image, copy), never per worker.

A chunk carries one *item* per image and ``ExtractConfig.loader`` turns an item into the image
inside the worker: FER2013's 48x48 pixels are their own items (:func:`pixels`), a folder's
items are file paths read as the runtime reads stills (:class:`StillFiles`), so a big photo
is decoded only in the worker that needs it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from ..blendshapes import BLENDSHAPE_NAMES
from ..features import DEFAULT_FACE_SIZE, aligned_landmarks, face_crop
from ..video import MAX_STILL_SIDE
from .augment import Preprocess, apply_aug, aug_params


def pixels(item: np.ndarray) -> np.ndarray:
    """The loader of in-memory images: the item is the image (FER2013's 48x48 pixels)."""
    return item


@dataclass(frozen=True)
class StillFiles:
    """The loader of image files: BGR, a still over ``max_side`` pixels reduced as
    ``analyze`` reduces stills (:func:`emotion_estimator.video.read_still`)."""

    max_side: int = MAX_STILL_SIDE

    def __call__(self, item: str) -> np.ndarray:
        from ..video import read_still

        return read_still(Path(item), self.max_side)[0]

    def describe(self) -> dict:
        return {"name": "still_files", "max_side": self.max_side}


def describe_loader(loader: Callable[[Any], np.ndarray]) -> dict:
    describe = getattr(loader, "describe", None)
    return describe() if describe else {"name": getattr(loader, "__name__", repr(loader))}


@dataclass(frozen=True)
class ExtractConfig:
    """What every worker needs besides the images themselves.

    ``extra_candidates``: detections asked of MediaPipe beyond the one face kept (the
    largest): 0 for a FER crop (one face), the runtime's still setting for photos.
    ``retry_stills``: an image with no face is looked at again as the runtime looks at a
    still (:class:`~emotion_estimator.stills.StillLandmarker`), so training sees the faces
    that only the retry finds.
    """

    variants: tuple[Preprocess, ...]
    seed: int = 0
    max_angle: float = 36.0
    min_detection_confidence: float = 0.5
    model_path: str | None = None
    face_size: int = DEFAULT_FACE_SIZE
    loader: Callable[[Any], np.ndarray] = pixels
    extra_candidates: int = 0
    retry_stills: bool = False


@dataclass(frozen=True)
class Chunk:
    """A slice of the work: images (ids, items for the loader) and how many augmented copies
    each gets."""

    index: int
    image_ids: np.ndarray  # (n,) int64
    copies: np.ndarray  # (n,) int, 0 = original only
    items: Sequence[Any]  # (n, H, W) uint8 pixels, or n file paths: whatever the loader takes

    @property
    def n_tasks(self) -> int:
        return int((1 + self.copies).sum())


def shard_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"chunk-{index:06d}.parquet"


def make_chunks(image_ids: np.ndarray, copies: np.ndarray, items: Sequence[Any],
                chunk_size: int) -> list[Chunk]:
    """Fixed, order-preserving chunks of ``chunk_size`` images."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return [Chunk(i // chunk_size, image_ids[i:i + chunk_size], copies[i:i + chunk_size],
                  items[i:i + chunk_size]) for i in range(0, len(image_ids), chunk_size)]


def extract(chunks: Sequence[Chunk], config: ExtractConfig, work_dir: Path, *,
            workers: int = 1, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Run the chunks whose shard is missing, then return all shards as one table.

    Columns: ``image_id, copy, preprocess, aug_params, detected``, the 52 blendshapes
    (float32, NaN where no face was found) and, as raw bytes (empty where no face), the
    ``landmarks`` and ``face`` model inputs of :mod:`emotion_estimator.features` (float32
    478x3, uint8 size x size), sorted by image_id, copy, variant order.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in chunks if not shard_path(work_dir, c.index).exists()]
    if progress is not None:
        done = sum(c.n_tasks for c in chunks) - sum(c.n_tasks for c in todo)
        progress(done * len(config.variants))
    jobs = [(c, shard_path(work_dir, c.index)) for c in todo]
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(config)
        try:
            for job in jobs:
                _done(_run_chunk(job), progress)
        finally:
            _close_worker()
    else:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no MediaPipe graph crosses a fork
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_pool_worker,
                      initargs=(config,)) as pool:
            for n in pool.imap_unordered(_run_chunk, jobs):
                _done(n, progress)
    return read_shards(work_dir, [c.index for c in chunks], config)


def read_shards(work_dir: Path, indices: Sequence[int], config: ExtractConfig) -> pd.DataFrame:
    tables = [pd.read_parquet(shard_path(work_dir, i)) for i in indices]
    table = pd.concat(tables, ignore_index=True) if tables else _empty()
    order = {v.name: k for k, v in enumerate(config.variants)}
    table["_variant"] = table["preprocess"].map(order)
    table = table.sort_values(["image_id", "copy", "_variant"], kind="stable")
    return table.drop(columns="_variant").reset_index(drop=True)


def _done(n: int, progress: Callable[[int], None] | None) -> None:
    if progress is not None:
        progress(n)


# -- worker side -----------------------------------------------------------------------------

_state: dict = {}


def _init_worker(config: ExtractConfig) -> None:
    from ..blendshapes import FaceLandmarker
    from ..stills import StillLandmarker

    _state["config"] = config
    # A FER crop holds one face: no extra candidates, as the shipped dataset was extracted
    # (asking for extras changes 10 of 35,887 raw detections); photos get the runtime's.
    _state["landmarker"] = (StillLandmarker if config.retry_stills else FaceLandmarker)(
        config.model_path, mode="image", min_detection_confidence=config.min_detection_confidence,
        extra_candidates=config.extra_candidates)


def _init_pool_worker(config: ExtractConfig) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _init_worker(config)


def _close_worker() -> None:
    landmarker = _state.pop("landmarker", None)
    if landmarker is not None:
        landmarker.close()


def _run_chunk(job: tuple[Chunk, Path]) -> int:
    """Extract one chunk and write its shard; returns the number of MediaPipe calls."""
    chunk, path = job
    config: ExtractConfig = _state["config"]
    landmarker = _state["landmarker"]
    rows: dict[str, list] = {k: [] for k in ("image_id", "copy", "preprocess", "aug_params",
                                             "detected", "landmarks", "face")}
    scores = []
    nan = np.full(len(BLENDSHAPE_NAMES), np.nan, dtype=np.float32)
    for image_id, n_copies, item in zip(chunk.image_ids, chunk.copies, chunk.items,
                                        strict=True):
        image = config.loader(item)
        for copy in range(int(n_copies) + 1):
            params = aug_params(config.seed, int(image_id), copy, config.max_angle) if copy else {}
            source = apply_aug(image, params) if copy else image
            for variant in config.variants:
                shown = variant(source)
                faces = landmarker.detect(shown)
                rows["image_id"].append(int(image_id))
                rows["copy"].append(copy)
                rows["preprocess"].append(variant.name)
                rows["aug_params"].append(json.dumps(params) if copy else "")
                rows["detected"].append(bool(faces))
                scores.append(faces[0].scores if faces else nan)
                h, w = shown.shape[:2]
                rows["landmarks"].append(aligned_landmarks(faces[0], w, h).tobytes()
                                         if faces else b"")
                rows["face"].append(face_crop(shown, faces[0], config.face_size).tobytes()
                                    if faces else b"")
    table = pd.DataFrame(rows)
    table["image_id"] = table["image_id"].astype(np.int64)
    table["copy"] = table["copy"].astype(np.int16)
    blend = pd.DataFrame(np.asarray(scores, dtype=np.float32).reshape(-1, len(BLENDSHAPE_NAMES)),
                         columns=list(BLENDSHAPE_NAMES))
    write_parquet(pd.concat([table, blend], axis=1), path)
    return len(table)


def _empty() -> pd.DataFrame:
    columns = ["image_id", "copy", "preprocess", "aug_params", "detected", "landmarks", "face",
               *BLENDSHAPE_NAMES]
    return pd.DataFrame(columns=columns)


def default_workers() -> int:
    return os.cpu_count() or 1
