"""Runtime emotion classifier: model inputs -> class probabilities (ONNX Runtime).

A model is two files with one stem: ``name.onnx`` and ``name.json`` (classes, inputs,
provenance). Two metadata layouts:

- blendshape models (the paper's ``blendshapes`` and ``lstm``): one graph input ``x``,
  ``(n, k)`` standardised scores of the ``k`` blendshapes named in ``blendshapes``, with the
  statistics in ``normalization``; :meth:`EmotionClassifier.predict_proba` takes ``(n, 52)``.
- models with ``inputs``: a list of ``{"name", "kind", "version"[, "size"]}``, one graph input
  per entry, built by :mod:`emotion_estimator.features` from the faces and their frame
  (normalisation inside the graph). :meth:`EmotionClassifier.predict_faces` feeds them.

Every prediction goes through :meth:`EmotionClassifier.predict_views` (ready inputs by name:
what :func:`emotion_estimator.features.build` returns, or the same arrays read back from a
prepared dataset). Optional metadata:

- ``expressions``: the seven expression names (:mod:`emotion_estimator.expressions`) of the
  graph's second output, the expression view; ``null`` or absent: no view.
- ``operating_points``: ``{name: {class: logit offset}}`` relative to the graph's own
  (``balanced``) point, applied at run time by :func:`apply_operating_point`; absent: only
  ``balanced``.

This module never imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import expressions as expr
from . import features
from .blendshapes import BLENDSHAPE_NAMES, Face
from .errors import InputError

DEFAULT_MODEL = "fusion"  # face crop + landmarks + blendshapes; best on FER2013 val and muxspace
METADATA_FORMAT = "emotion-estimator/classifier"


def default_model_path() -> Path:
    """The classifier shipped inside the package."""
    return shipped_model_path(DEFAULT_MODEL)


def shipped_model_path(name: str) -> Path:
    """A model shipped inside the package, by file name or stem (``fusion``, ``blendshapes``,
    ``lstm``); ``default`` names the default one."""
    stem = name[:-5] if name.endswith(".onnx") else name
    stem = DEFAULT_MODEL if stem == "default" else stem
    return Path(str(resources.files("emotion_estimator") / "models" / f"{stem}.onnx"))


def shipped_models() -> list[str]:
    """Stems of the models shipped inside the package (``default`` is an alias)."""
    folder = default_model_path().parent
    return sorted(p.stem for p in folder.glob("*.onnx"))


def resolve_model(path: str | os.PathLike | None) -> Path:
    """``None`` -> the default; a shipped model's name (``lstm``, ``default``) -> its file;
    else a path."""
    if path is None:
        return default_model_path()
    model = Path(path)
    if not model.exists() and model.name == str(path) and \
            model.stem in (*shipped_models(), "default"):
        return shipped_model_path(model.name)
    return model


def metadata_path(model_path: str | os.PathLike) -> Path:
    """The metadata JSON beside an ``.onnx`` file (same stem)."""
    return Path(model_path).with_suffix(".json")


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"model metadata not found: {path} (expected beside the .onnx file)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model metadata is not valid JSON: {path} ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(f"model metadata must be a JSON object: {path}")
    if "classes" not in meta:
        raise InputError(f"model metadata {path} lacks 'classes'")
    if not isinstance(meta["classes"], list) or len(meta["classes"]) < 2:
        raise InputError(f"model metadata {path}: needs at least two classes")
    if meta.get("expressions") is not None:
        meta["expressions"] = list(expr.validate(meta["expressions"], f"model metadata {path}"))
    if "inputs" in meta:
        try:
            meta["inputs"] = features.validate_inputs(meta["inputs"], f"model metadata {path}")
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return meta
    for key in ("blendshapes", "normalization"):
        if key not in meta:
            raise InputError(f"model metadata {path} lacks {key!r} (and declares no 'inputs')")
    unknown = [n for n in meta["blendshapes"] if n not in BLENDSHAPE_NAMES]
    if unknown:
        raise InputError(f"model metadata {path} names unknown blendshapes: {unknown[:3]}")
    norm = meta["normalization"]
    k = len(meta["blendshapes"])
    if not isinstance(norm, dict) or any(len(norm.get(s) or ()) != k for s in ("mean", "std")):
        raise InputError(f"model metadata {path}: normalization needs mean and std of length {k}")
    return meta


def _operating_points(meta: dict[str, Any], path: Path) -> dict[str, dict[str, float]]:
    """The metadata's named points, checked: each a ``{class: finite offset}`` over known
    classes; ``balanced`` (all zero) is always there."""
    points = meta.get("operating_points") or {}
    if not isinstance(points, dict):
        raise InputError(f"model metadata {path}: 'operating_points' must be an object")
    checked = {"balanced": {c: 0.0 for c in meta["classes"]}}
    for name, offsets in points.items():
        if not isinstance(offsets, dict):
            raise InputError(f"model metadata {path}: operating point {name!r} must map "
                             "class names to offsets")
        unknown = sorted(set(offsets) - set(meta["classes"]))
        if unknown:
            raise InputError(f"model metadata {path}: operating point {name!r} names unknown "
                             f"classes {unknown} (classes: {meta['classes']})")
        values = {c: offsets.get(c, 0.0) for c in meta["classes"]}
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                   for v in values.values()):
            raise InputError(f"model metadata {path}: operating point {name!r} needs finite "
                             "numeric offsets")
        checked[str(name)] = {c: float(v) for c, v in values.items()}
    return checked


def operating_point_offsets(classifier: Any, name: str) -> np.ndarray | None:
    """The logit offsets of ``name`` for ``classifier`` (None: the graph's own point), or an
    :class:`InputError` listing the names it has. A classifier without stored points offers
    ``balanced`` only."""
    points = getattr(classifier, "operating_points", None) or {
        "balanced": {c: 0.0 for c in classifier.classes}}
    if name not in points:
        raise InputError(f"unknown operating point {name!r}; this model has: "
                         f"{', '.join(points)}")
    offsets = np.array([points[name][c] for c in classifier.classes], np.float64)
    return offsets if offsets.any() else None


def apply_operating_point(p: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """``softmax(log p + offsets)`` row by row (``None``: ``p`` unchanged)."""
    if offsets is None or not len(p):
        return p
    z = np.log(np.clip(np.asarray(p, np.float64), 1e-7, None)) + offsets
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(uint8)": np.uint8, "tensor(float16)": np.float16}
_RANKS = {"blendshapes": 2, "landmarks": 3, "face": 3}


def _input_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """One face's array of an input (without the batch axis)."""
    if spec["kind"] == "blendshapes":
        return (len(BLENDSHAPE_NAMES),)
    if spec["kind"] == "landmarks":
        return (features.N_LANDMARKS, 3)
    size = int(spec.get("size", features.DEFAULT_FACE_SIZE))
    return (size, size)


class EmotionClassifier:
    """Faces (or, for blendshape models, score vectors) -> probabilities over :attr:`classes`.

    Use :meth:`load`. :meth:`predict_faces` works for every model: it builds the inputs the
    metadata declares from MediaPipe faces and the frame they were found in.
    :meth:`predict_inputs` takes those inputs ready-made, by name (e.g. from a prepared
    dataset). :meth:`predict_proba` takes ``(n, 52)`` blendshape scores and serves blendshape
    models.
    """

    def __init__(self, session: Any, metadata: dict[str, Any], path: Path) -> None:
        self._session = session
        self.metadata = metadata
        self.path = path
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.expressions: tuple[str, ...] = tuple(metadata.get("expressions") or ())
        # checked here, once: load() builds the classifier, so a bad point is refused at load
        self.operating_points: dict[str, dict[str, float]] = _operating_points(metadata, path)
        self._outputs = [o.name for o in session.get_outputs()[:2 if self.expressions else 1]]
        graph = {i.name: i for i in session.get_inputs()}
        self._batch_one = False
        if "inputs" in metadata:
            self.inputs: list[dict[str, Any]] = metadata["inputs"]
            self.blendshapes: tuple[str, ...] = tuple(
                BLENDSHAPE_NAMES if any(s["kind"] == "blendshapes" for s in self.inputs) else ())
            self._legacy = False
        else:  # a blendshape model: selection and standardisation happen here
            self.inputs = [{"name": session.get_inputs()[0].name, "kind": "blendshapes",
                            "version": 1}]
            self.blendshapes = tuple(metadata["blendshapes"])
            self._columns = np.array([BLENDSHAPE_NAMES.index(n) for n in self.blendshapes])
            norm = metadata["normalization"]
            self._mean = np.asarray(norm["mean"], dtype=np.float32)
            self._scale = (1.0 / np.maximum(np.asarray(norm["std"], np.float32), 1e-6)).astype(
                np.float32)
            self._legacy = True
        self._dtypes = {}
        for spec in self.inputs:
            node = graph[spec["name"]]
            self._dtypes[spec["name"]] = _ORT_TYPES.get(node.type, np.float32)
            batch = node.shape[0] if node.shape else None
            self._batch_one = self._batch_one or batch == 1

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int = 1) -> EmotionClassifier:
        """Load ``path`` (``.onnx`` with its ``.json`` beside it).

        ``None`` (or ``"default"``) is the shipped default, ``"fusion"``; the name of another
        shipped model (``"blendshapes"``, ``"lstm"``: the paper's architectures on the 52
        blendshapes) loads that one.
        """
        import onnxruntime as ort

        model = resolve_model(path)
        if not model.is_file():
            raise InputError(f"classifier model not found: {model} "
                             f"(shipped models: {', '.join(shipped_models())}; "
                             f"default: {DEFAULT_MODEL})")
        meta = _read_metadata(metadata_path(model))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # all graph rewrites (basic or extended: the fusion graph runs 2x slower); idle pool
        # threads sleep instead of spinning (2 threads spinning: 2.9 ms CPU per call, 1.1 not)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise InputError(f"not a readable ONNX model: {model}") from exc
        _check_graph(session, meta, model)
        return cls(session, meta, model)

    @property
    def trained(self) -> bool:
        """False for a placeholder model that was never trained."""
        return bool(self.metadata.get("trained", True))

    @property
    def needs_image(self) -> bool:
        """True when an input (landmarks, face crop) is built from the frame."""
        return any(s["kind"] != "blendshapes" for s in self.inputs)

    def predict_faces(self, faces: Sequence[Face], image: np.ndarray | None = None) -> np.ndarray:
        """MediaPipe faces found in ``image`` (BGR or grey uint8) -> ``(n, len(classes))``.

        ``image`` may be ``None`` only for blendshape models.
        """
        return self.predict_faces_views(faces, image)[0]

    def predict_inputs(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ready inputs by name -> ``(n, len(classes))`` (see :meth:`predict_views`)."""
        return self.predict_views(inputs)[0]

    def predict_faces_views(self, faces: Sequence[Face], image: np.ndarray | None = None,
                            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Like :meth:`predict_faces`, with the expression view (see :meth:`predict_views`)."""
        if not faces:
            return self._empty()
        try:
            feeds = features.build(self.inputs, faces, image)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return self._views(feeds)  # built to the metadata's shapes and types: no checks

    def _empty(self) -> tuple[np.ndarray, np.ndarray | None]:
        return (np.zeros((0, len(self.classes)), np.float32),
                np.zeros((0, len(self.expressions)), np.float32) if self.expressions else None)

    def predict_views(self, inputs: Mapping[str, np.ndarray],
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Ready inputs, one per entry of :attr:`inputs` by its name -> ``(n, len(classes))``
        class probabilities and ``(n, 7)`` probabilities over :attr:`expressions` (None for a
        model without the expression view).

        Each array has the batch first: ``blendshapes`` ``(n, 52)`` float scores in MediaPipe
        order (a blendshape model selects and standardises them here), ``landmarks``
        ``(n, 478, 3)`` float (:func:`~emotion_estimator.features.aligned_landmarks`), ``face``
        ``(n, size, size)`` uint8 (:func:`~emotion_estimator.features.face_crop`). Wrong
        names, shapes or dtypes raise :class:`InputError`.
        """
        wanted = [s["name"] for s in self.inputs]
        if not isinstance(inputs, Mapping) or set(inputs) != set(wanted):
            got = sorted(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
            raise InputError(f"model {self.path.name} takes inputs {wanted}, got {got}")
        feeds: dict[str, np.ndarray] = {}
        n = None
        for spec in self.inputs:
            name, kind = spec["name"], spec["kind"]
            arr = np.asarray(inputs[name])
            shape = _input_shape(spec)
            if arr.ndim != 1 + len(shape) or arr.shape[1:] != shape:
                raise InputError(f"input {name!r} ({kind}) must have shape "
                                 f"(n, {', '.join(map(str, shape))}), got {arr.shape}")
            if kind == "face" and arr.dtype != np.uint8:
                raise InputError(f"input {name!r} (face crops) must be uint8, got {arr.dtype}")
            if kind != "face" and arr.dtype.kind != "f":
                raise InputError(f"input {name!r} ({kind}) must be float, got {arr.dtype}")
            if n is not None and len(arr) != n:
                raise InputError(f"inputs hold different numbers of faces: "
                                 f"{ {k: len(v) for k, v in inputs.items()} }")
            n = len(arr)
            feeds[name] = arr
        return self._views(feeds) if n else self._empty()

    def _views(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked inputs of at least one face -> both views."""
        if self._legacy:  # selection and standardisation of the blendshape model
            name = self.inputs[0]["name"]
            feeds[name] = (feeds[name][:, self._columns].astype(np.float32) - self._mean) \
                * self._scale
        return self._run(feeds)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 52)`` (or ``(52,)``) scores in MediaPipe order -> ``(n, len(classes))``.

        Blendshape models only; a model with landmark or face inputs needs
        :meth:`predict_faces`.
        """
        if self.needs_image:
            raise InputError(f"model {self.path.name} takes "
                             f"{', '.join(s['kind'] for s in self.inputs)}: use predict_faces "
                             "(faces + the frame) or predict_inputs, not blendshape scores "
                             "alone")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(BLENDSHAPE_NAMES):
            raise InputError(
                f"expected blendshape scores of shape (n, {len(BLENDSHAPE_NAMES)}), got {x.shape}"
            )
        return self.predict_inputs({self.inputs[0]["name"]: x})

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        feeds = {k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in feeds.items()}
        if self._batch_one:  # a graph exported with a fixed batch of 1: one face at a time
            n = len(next(iter(feeds.values())))
            runs = [self._session.run(self._outputs, {k: v[i:i + 1] for k, v in feeds.items()})
                    for i in range(n)]
            outs = [np.concatenate(part) for part in zip(*runs, strict=True)]
        else:
            outs = self._session.run(self._outputs, feeds)
        outs = [o.astype(np.float32, copy=False) for o in outs]
        return outs[0], (outs[1] if self.expressions else None)

    def predict(self, x: np.ndarray) -> list[str]:
        """The most probable class name per row (blendshape models)."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(axis=1)]

    def __repr__(self) -> str:
        kinds = ", ".join(s["kind"] for s in self.inputs)
        return f"EmotionClassifier({self.path.name!r}, classes={self.classes}, inputs=[{kinds}])"


def _check_graph(session: Any, meta: dict[str, Any], model: Path) -> None:
    """The graph's inputs and output agree with the metadata (names, ranks, sizes, types)."""
    graph = {i.name: i for i in session.get_inputs()}
    if "inputs" in meta:
        specs = meta["inputs"]
        missing = [s["name"] for s in specs if s["name"] not in graph]
        extra = sorted(set(graph) - {s["name"] for s in specs})
        if missing or extra:
            raise InputError(f"model {model}: graph inputs {sorted(graph)} do not match the "
                             f"metadata's {[s['name'] for s in specs]}")
        for spec in specs:
            node = graph[spec["name"]]
            if len(node.shape) != _RANKS[spec["kind"]] or node.type not in _ORT_TYPES:
                raise InputError(f"model {model}: input {spec['name']!r} is {node.type} "
                                 f"{node.shape}, not a {spec['kind']} input")
    else:
        if len(graph) != 1:
            raise InputError(f"model {model} has {len(graph)} inputs but its metadata "
                             "declares none (a blendshape model has one)")
        node = next(iter(graph.values()))
        k = len(meta["blendshapes"])
        shape = node.shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k) \
                or node.type not in _ORT_TYPES:
            raise InputError(f"model {model} takes input shape {shape} ({node.type}), but its "
                             f"metadata lists {k} blendshapes")
    outputs = session.get_outputs()
    out = outputs[0].shape
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != len(meta["classes"])):
        raise InputError(f"model {model} outputs shape {out}, but its metadata lists "
                         f"{len(meta['classes'])} classes")
    if meta.get("expressions"):
        shape = outputs[1].shape if len(outputs) > 1 else None
        if shape is None or len(shape) != 2 or (isinstance(shape[1], int)
                                               and shape[1] != len(meta["expressions"])):
            raise InputError(f"model {model}: its metadata declares an expression view but the "
                             "graph has no second output of 7 probabilities")
