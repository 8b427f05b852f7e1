"""``emotion-estimator serve``: live results over HTTP and WebSocket (the ``[serve]`` extra).

One concern per module: :mod:`.config` (limits and options), :mod:`.security` (the token),
:mod:`.metrics` (Prometheus), :mod:`.hub` (bounded fan-out to WebSocket clients),
:mod:`.messages` (the JSON schema and change events), :mod:`.pipeline` (the shared per-frame
loop on a thread: live source or frames sent by a robot), :mod:`.app` (the Starlette routes)
and ``static/`` (the dashboard).
"""

from __future__ import annotations

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - see app.create_app
    """The Starlette application (imported lazily: Starlette is an optional extra)."""
    from .app import create_app as make

    return make(*args, **kwargs)
