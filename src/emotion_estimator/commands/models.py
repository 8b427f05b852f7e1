"""``emotion-estimator models fetch|verify|path``: the landmarker and classifier files."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "verify", "path"],
                   help="fetch: download into the cache; verify: check sha256; path: print paths")
    p.add_argument("--force", action="store_true", help="with fetch: download even if cached")


def run(args: argparse.Namespace) -> int:
    from .. import assets
    from ..errors import InputError

    try:
        if args.action == "fetch":
            path = assets.fetch(assets.FACE_LANDMARKER, force=args.force) if args.force \
                else assets.landmarker_path()
            print(path)
        elif args.action == "verify":
            path = assets.landmarker_path(download=False)
            print(f"ok {path} sha256={assets.FACE_LANDMARKER.sha256}")
        else:
            print(assets.landmarker_path(download=False))
    except assets.AssetError as exc:
        raise InputError(str(exc)) from exc
    return 0
