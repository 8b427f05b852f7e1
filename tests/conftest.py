"""Shared fixtures: the ../shared data beside the repository, skipped cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MEDIA = SHARED / "media"
FER_CSV = SHARED / "data" / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def media() -> Path:
    """Folder of real face photos and clips (../shared/media)."""
    if not (MEDIA / "single_face.jpg").is_file():
        pytest.skip("../shared/media is absent")
    return MEDIA


@pytest.fixture(scope="session")
def fer_csv() -> Path:
    """The FER2013 CSV (../shared/data/fer2013/fer2013.csv.gz)."""
    if not FER_CSV.is_file():
        pytest.skip("../shared/data/fer2013 is absent")
    return FER_CSV


@pytest.fixture(scope="session")
def landmarker_model() -> Path:
    """The verified face_landmarker.task (skips when it cannot be resolved offline)."""
    from emotion_estimator.assets import AssetError, landmarker_path

    try:
        return landmarker_path()
    except AssetError as exc:
        pytest.skip(f"face_landmarker.task unavailable: {exc}")
