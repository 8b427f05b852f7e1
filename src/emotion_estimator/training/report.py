"""Counts at every step of ``prepare`` (the paper's Tables 1-3 beside ours) as JSON and Markdown."""

from __future__ import annotations

import pandas as pd

from .fer2013 import EMOTIONS, SPLITS

# paper Table 1 (FER2013 as published; "afraid" = fear): full, train, val (public), test (private)
PAPER_TABLE1: dict[str, dict[str, int]] = {
    "happy": {"full": 8989, "train": 7215, "val": 895, "test": 879},
    "sad": {"full": 6077, "train": 4830, "val": 653, "test": 594},
    "angry": {"full": 4953, "train": 3995, "val": 467, "test": 491},
    "fear": {"full": 5121, "train": 4097, "val": 496, "test": 528},
    "surprise": {"full": 4002, "train": 3171, "val": 415, "test": 416},
    "disgust": {"full": 547, "train": 436, "val": 56, "test": 55},
    "neutral": {"full": 6198, "train": 4965, "val": 607, "test": 626},
}
# paper Table 2 (train caps; disgust: "maximum possible") and Table 3 (undetectable, train)
PAPER_TABLE2: dict[str, int | None] = {"happy": 4000, "sad": 4000, "angry": 1500, "fear": 1500,
                                       "surprise": 1500, "disgust": None, "neutral": 1500}
PAPER_TABLE3: dict[str, int] = {"happy": 377, "sad": 835, "angry": 597, "fear": 616,
                                "surprise": 239, "disgust": 72, "neutral": 261}


def _counts(table: pd.DataFrame, row: str, col: str, rows: tuple[str, ...] | list[str],
            cols: tuple[str, ...] | list[str]) -> dict[str, dict[str, int]]:
    grid = table.groupby([row, col]).size().unstack(fill_value=0) if len(table) else None
    return {r: {c: int(grid.at[r, c]) if grid is not None and r in grid.index
                and c in grid.columns else 0 for c in cols} for r in rows}


def build(samples: pd.DataFrame, extracted: pd.DataFrame, variants: list[str],
          labels: list[str]) -> dict:
    """The count tables of a run.

    ``samples``: every loaded row with ``split, source_label, label, kept``; ``extracted``: one
    row per MediaPipe call with ``split, source_label, label, copy, preprocess, detected``.
    """
    kept = samples[samples["kept"]]
    table1 = _counts(samples, "source_label", "split", EMOTIONS, SPLITS)
    for row in table1.values():
        row["full"] = sum(row[s] for s in SPLITS)
    originals = extracted[extracted["copy"] == 0]
    augmented = extracted[extracted["copy"] > 0]
    detection: dict[str, dict] = {}
    for variant in variants:
        orig = originals[originals["preprocess"] == variant]
        aug = augmented[augmented["preprocess"] == variant]
        missed = orig[~orig["detected"]]
        detection[variant] = {
            "undetected": _counts(missed, "source_label", "split", EMOTIONS, SPLITS),
            "rate": {s: _rate(orig[orig["split"] == s]["detected"]) for s in SPLITS},
            "rate_all": _rate(orig["detected"]),
            "augmented": {"made": int(len(aug)), "detected": int(aug["detected"].sum()),
                          "dropped": int((~aug["detected"]).sum()),
                          "dropped_by_class": _counts(aug[~aug["detected"]], "source_label",
                                                      "preprocess", EMOTIONS, [variant])},
        }
    final = extracted[extracted["detected"]]
    dataset = {v: {"originals": _counts(final[(final["preprocess"] == v) & (final["copy"] == 0)],
                                        "label", "split", labels, SPLITS),
                   "augmented": _counts(final[(final["preprocess"] == v) & (final["copy"] > 0)],
                                        "label", "split", labels, SPLITS)}
               for v in variants}
    return {
        "table1_input": table1,
        "table2_after_caps": {e: int(((kept["split"] == "train")
                                      & (kept["source_label"] == e)).sum()) for e in EMOTIONS},
        "kept_by_label": _counts(kept, "label", "split", labels, SPLITS),
        "detection": detection,
        "dataset": dataset,
        "paper": {"table1": PAPER_TABLE1, "table2": PAPER_TABLE2, "table3": PAPER_TABLE3},
    }


def build_folder(samples: pd.DataFrame, extracted: pd.DataFrame, variants: list[str],
                 labels: list[str]) -> dict:
    """The count tables of a labelled-folder run: images per class / source label and split,
    detection per split and source label, dataset rows (same ``detection`` and ``dataset``
    keys as :func:`build`)."""
    sources = sorted(samples["source_label"].astype(str).unique())
    originals = extracted[extracted["copy"] == 0]
    augmented = extracted[extracted["copy"] > 0]
    detection: dict[str, dict] = {}
    for variant in variants:
        orig = originals[originals["preprocess"] == variant]
        aug = augmented[augmented["preprocess"] == variant]
        detection[variant] = {
            "undetected": _counts(orig[~orig["detected"]], "source_label", "split", sources,
                                  SPLITS),
            "undetected_by_label": _counts(orig[~orig["detected"]], "label", "split", labels,
                                           SPLITS),
            "rate": {s: _rate(orig[orig["split"] == s]["detected"]) for s in SPLITS},
            "rate_by_label": {c: _rate(orig[orig["label"] == c]["detected"]) for c in labels},
            "rate_all": _rate(orig["detected"]),
            "augmented": {"made": int(len(aug)), "detected": int(aug["detected"].sum()),
                          "dropped": int((~aug["detected"]).sum())},
        }
    final = extracted[extracted["detected"]]
    dataset = {v: {"originals": _counts(final[(final["preprocess"] == v) & (final["copy"] == 0)],
                                        "label", "split", labels, SPLITS),
                   "augmented": _counts(final[(final["preprocess"] == v) & (final["copy"] > 0)],
                                        "label", "split", labels, SPLITS)}
               for v in variants}
    return {"images_by_label": _counts(samples, "label", "split", labels, SPLITS),
            "images_by_source_label": _counts(samples, "source_label", "split", sources, SPLITS),
            "detection": detection, "dataset": dataset}


def table3_full(originals: pd.DataFrame, variants: list[str]) -> dict:
    """Table 3 over the whole train split: per variant and class, the images MediaPipe missed
    and those tried. ``originals``: one row per call on a train original, kept by the caps or not.
    """
    table = {}
    for variant in variants:
        rows = originals[originals["preprocess"] == variant]
        missed = rows[~rows["detected"].astype(bool)]
        table[variant] = {e: {"undetected": int((missed["source_label"] == e).sum()),
                              "images": int((rows["source_label"] == e).sum())}
                          for e in EMOTIONS}
    return table


def _rate(detected: pd.Series) -> float | None:
    return round(float(detected.mean()), 4) if len(detected) else None


def markdown(report: dict) -> str:
    """A human-readable report.md from the report dict."""
    if report.get("source") == "folder":
        return folder_markdown(report)
    counts = report["counts"]
    aug = report["augment"]
    labels = report.get("labels", {"source": "fer"})
    out = ["# FER2013 -> blendshape dataset", ""]
    out += [f"- input: `{report['input']}` ({report['rows_loaded']} rows loaded, "
            f"{len(report['bad_rows'])} bad rows skipped)",
            f"- classes: {report['class_map']}"]
    if labels["source"] == "ferplus":
        out += [f"- labels: FER+ majority from `{labels['votes']}`: {labels['rule']}. "
                f"Labelled {labels['labelled']} of {report['rows_loaded']} images; left out: "
                f"{labels['dropped']['not_face_or_unknown']} mostly unknown/not a face, "
                f"{labels['dropped']['tie']} ties; FER+ agrees with FER2013's own 3-class label "
                f"on {_pct(labels['agree_with_fer'])} of the labelled. Vote counts in the "
                "`ferplus_*` columns (soft targets: `train --labels ferplus`); caps act on "
                "FER2013's own label (`source_label`)."]
    out += [f"- caps (train): {report['caps']}",
            f"- seed: {report['seed']}; augmented copies per kept train image: "
            f"{aug['copies']} (flip p=0.5, rotation ±{aug['max_angle']}°)",
            f"- preprocessing variants: {report['preprocess']}",
            f"- mediapipe {report['versions']['mediapipe']}, face_landmarker.task sha256 "
            f"`{report['landmarker_sha256']}`",
            f"- timings (s): {report['timings']}; MediaPipe calls: {report['calls']} "
            f"({report['calls_per_s']} /s with {report['workers']} workers)", ""]
    t1, p1 = counts["table1_input"], counts["paper"]["table1"]
    out += ["## Table 1: input per class and split (ours / paper)", "",
            "| class | full | train | val (PublicTest) | test (PrivateTest) |",
            "|---|---|---|---|---|"]
    for e in EMOTIONS:
        out.append(f"| {e} | " + " | ".join(f"{t1[e][s]} / {p1[e][s]}"
                                             for s in ("full", *SPLITS)) + " |")
    out += ["", "## Table 2: train split after caps (ours / paper)", "",
            "| " + " | ".join(EMOTIONS) + " |", "|" + "---|" * len(EMOTIONS),
            "| " + " | ".join(f"{counts['table2_after_caps'][e]} / "
                              f"{counts['paper']['table2'][e] or 'all'}" for e in EMOTIONS) + " |"]
    for variant, det in counts["detection"].items():
        un = det["undetected"]
        out += ["", f"## Table 3 ({variant}): undetectable by MediaPipe (ours / paper, train)", "",
                "| class | train | val | test |", "|---|---|---|---|"]
        for e in EMOTIONS:
            out.append(f"| {e} | {un[e]['train']} / {counts['paper']['table3'][e]} | "
                       f"{un[e]['val']} | {un[e]['test']} |")
        rates = ", ".join(f"{s} {_pct(r)}" for s, r in det["rate"].items())
        aug = det["augmented"]
        out += ["", f"Detection rate ({variant}): {rates}; all {_pct(det['rate_all'])}. "
                f"Augmented copies: {aug['made']} made, {aug['dropped']} dropped (no face)."]
    p1, p3 = counts["paper"]["table1"], counts["paper"]["table3"]
    paper = {e: (p3[e], p1[e]["train"]) for e in EMOTIONS}
    paper["all"] = (sum(p3.values()), sum(row["train"] for row in p1.values()))
    for variant, table in counts.get("table3_full_train", {}).items():
        ours = {e: (row["undetected"], row["images"]) for e, row in table.items()}
        ours["all"] = tuple(sum(col) for col in zip(*ours.values(), strict=True))
        out += ["", f"## Table 3 ({variant}), whole train split: undetectable (ours / paper)", "",
                "Every train image, also those the caps dropped (run only to count them, never "
                "written to the dataset), as the paper counted.", "",
                "| class | undetected | train images | rate |", "|---|---|---|---|"]
        for e, (missed, images) in ours.items():
            p_missed, p_images = paper[e]
            out.append(f"| {e} | {missed} / {p_missed} | {images} / {p_images} | "
                       f"{_pct(missed / images if images else None)} / "
                       f"{_pct(p_missed / p_images)} |")
    out += _dataset_rows(counts)
    out += _capped("Bad input rows (skipped)", [f"- {b}" for b in report["bad_rows"]])
    return "\n".join(out) + "\n"


def _dataset_rows(counts: dict) -> list[str]:
    """The "Dataset rows" tables: originals + augmented copies per label and split."""
    out: list[str] = []
    for variant, parts in counts["dataset"].items():
        out += ["", f"## Dataset rows ({variant}): originals + augmented", "",
                "| label | train | val | test |", "|---|---|---|---|"]
        for label, row in parts["originals"].items():
            aug = parts["augmented"][label]
            out.append(f"| {label} | " + " | ".join(
                f"{row[s]} + {aug[s]}" if aug[s] else str(row[s]) for s in SPLITS) + " |")
    return out


def _capped(title: str, lines: list[str], cap: int = 50) -> list[str]:
    """A section listing at most ``cap`` lines (the rest are in report.json); none if empty."""
    if not lines:
        return []
    out = ["", f"## {title}", "", *lines[:cap]]
    if len(lines) > cap:
        out.append(f"- ... {len(lines) - cap} more in report.json")
    return out


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def folder_markdown(report: dict) -> str:
    """report.md of a labelled-folder run."""
    counts, aug, split = report["counts"], report["augment"], report["folder"]
    rows = report["rows"]
    out = ["# Labelled folder -> blendshape dataset", ""]
    out += [f"- input: `{report['input']}` ({report['images_found']} images found, "
            f"{report['rows_loaded']} used, {len(report['bad_images'])} bad images skipped)",
            f"- class map: {report['class_map']}",
            f"- splits: `test` = the folder's fixed held-out part ({split['holdout']:g}, chosen "
            "by a hash of each image's path: the rows the folder is scored on when it is used "
            f"for training); `val` = {split['val']:g} of the rest (a second hash); `train` = the "
            "remainder. Neither depends on --seed; the held-out part not on --val.",
            "- images used as they are (preprocess raw), loaded as `analyze` loads stills "
            f"(longer side over {split['loader'].get('max_side')} px: reduced); MediaPipe asked "
            f"for {split['extra_candidates']} candidates beyond the largest face, as on stills",
            f"- seed: {report['seed']}; augmented copies per train image: {aug['copies']}"
            + (f" (flip p=0.5, rotation ±{aug['max_angle']}°)" if aug["copies"] else ""),
            f"- mediapipe {report['versions']['mediapipe']}, face_landmarker.task sha256 "
            f"`{report['landmarker_sha256']}`",
            f"- timings (s): {report['timings']}; MediaPipe calls: {report['calls']} "
            f"({report['calls_per_s']} /s with {report['workers']} workers)",
            f"- dataset rows: {rows['dataset']} ({rows['dataset_by_split']}); calls without a "
            f"face: {rows['undetected']}", ""]
    out += ["## Images per class and split", "", "| class | train | val | test |",
            "|---|---|---|---|"]
    out += [f"| {c} | " + " | ".join(str(row[s]) for s in SPLITS) + " |"
            for c, row in counts["images_by_label"].items()]
    out += ["", "## Images per source label and split", "", "| source label | train | val | test |",
            "|---|---|---|---|"]
    out += [f"| {c} | " + " | ".join(str(row[s]) for s in SPLITS) + " |"
            for c, row in counts["images_by_source_label"].items()]
    for variant, det in counts["detection"].items():
        out += ["", f"## No face found ({variant}), per source label", "",
                "| source label | train | val | test |", "|---|---|---|---|"]
        out += [f"| {c} | " + " | ".join(str(row[s]) for s in SPLITS) + " |"
                for c, row in det["undetected"].items()]
        rates = ", ".join(f"{s} {_pct(r)}" for s, r in det["rate"].items())
        by_label = ", ".join(f"{c} {_pct(r)}" for c, r in det["rate_by_label"].items())
        out += ["", f"Detection rate ({variant}): {rates}; all {_pct(det['rate_all'])}; by "
                f"class: {by_label}."]
    out += _dataset_rows(counts)
    out += _capped("Bad images (skipped)", [f"- `{b['path']}` ({b['source_label']}): "
                                            f"{b['reason']}" for b in report["bad_images"]])
    return "\n".join(out) + "\n"
