"""Corpus scale: ``batch`` runs one task per input on a local process pool or a Ray cluster.

Rows go to a Hive-partitioned Parquet dataset (``OUT/rows/source=<id>/part-0.parquet``), one
record per input to ``OUT/manifest.parquet``; a rerun skips what is done.

- :mod:`.inputs`: files, folders, manifest CSVs -> inputs with stable ids
- :mod:`.manifest`: options, records, the manifest file
- :mod:`.store`: local folders and URLs (``s3://``), atomic writes
- :mod:`.tasks`: one input through ``EmotionEstimator.stream`` into one Parquet part
- :mod:`.engine_local`, :mod:`.engine_ray`: where the tasks run
- :mod:`.runner`: planning, resumption and the manifest over a run
"""

from __future__ import annotations

from .manifest import BatchOptions, Record
from .runner import BatchResult, run_batch

__all__ = ["BatchOptions", "BatchResult", "Record", "run_batch"]
