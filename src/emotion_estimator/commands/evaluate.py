"""``emotion-estimator evaluate MODEL DATASET``: metrics, confusion matrix, misclassified images."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an exported .onnx (with its .json), a shipped model's name "
                                 "(fusion, blendshapes, lstm, default) or a training run "
                                 "folder (or its model.pt / fusion.pt)")
    p.add_argument("dataset", help="prepared dataset: dataset.parquet or the folder holding it "
                                   "(models with face / landmark inputs read its stored crops "
                                   "and landmarks)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--preprocess", default=None,
                   help="which preprocess variant (default: the dataset's only one, e.g. pad "
                        "for FER2013, raw for a folder of photos)")
    p.add_argument("--out", help="folder for metrics.json, confusion CSV/PNG, misclassified.*")
    p.add_argument("--fer2013", help="FER2013 CSV(.gz) for the contact sheet of misclassified "
                                     "images (pixels read by image id)")
    p.add_argument("--operating-point", default="balanced", metavar="NAME",
                   help="one of the model's stored operating points (balanced, sad-sensitive, "
                        "...; default: %(default)s)")


def _line(name: str, m: dict) -> str:
    per = "  ".join(f"{c} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f}"
                    for c, v in m["per_class"].items())
    cce = f"  CCE {m['cce']:.4f}" if "cce" in m else ""
    return (f"{name:16s} n {m['n']:5d}  accuracy {m['accuracy']:.4f}  macro F1 "
            f"{m['macro_f1']:.4f}{cce}\n{'':16s} {per}")


def _rates(m: dict) -> str | None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2%}"

    if "sad_called_happy" not in m:
        return None
    return (f"sad faces called happy: {pct(m['sad_called_happy'])}  "
            f"happy faces called sad: {pct(m['happy_called_sad'])}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..training.evaluate import evaluate

    if args.fer2013 and not Path(args.fer2013).is_file():
        raise InputError(f"FER2013 CSV not found: {args.fer2013}")
    report = evaluate(args.model, args.dataset, args.split, args.preprocess, args.out,
                      args.fer2013, args.operating_point)
    print(f"{Path(report['model']).name} [{', '.join(report['inputs'])}] on {args.dataset}: "
          f"{report['split']} split, preprocess {report['preprocess']}, operating point "
          f"{report['operating_point']} (of {', '.join(report['operating_points'])})")
    print(_line("detected", report["detected"]))
    if "with_undetected" in report:
        print(_line(f"+{report['undetected']} undetected", report["with_undetected"]))
    if (rates := _rates(report)) is not None:
        print(rates)
    if "ferplus" in report:
        plus = report["ferplus"]
        print(_line("FER+ majority", plus))
        dropped = plus["no_label"]
        print(f"{'':16s} (no FER+ label: {dropped['not_face_or_unknown']} not a face/unknown, "
              f"{dropped['tie']} ties)")
        if (rates := _rates(plus)) is not None:
            print(f"FER+: {rates}")
    for line in _slice_lines(report.get("slices")) + _expression_lines(report):
        print(line)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _slice_lines(slices: dict | None) -> list[str]:
    if not slices:
        return []

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1%}"

    smile, rough = slices["smile_sad"], slices["angry_disgusted"]
    return [f"smile-shaped sad faces: {smile['n']}, sad recall {pct(smile['sad_recall'])}, "
            f"called happy {pct(smile['sad_to_happy'])}; angry + disgusted faces: "
            f"{rough['n']}, called happy {pct(rough['called_happy'])}"]


def _expression_lines(report: dict) -> list[str]:
    """The seven-expression view: one line per scored view, or why there is none."""
    view = report.get("expressions")
    if view is None:
        return ["7 expressions: this model has no expression view"]
    lines = []
    titles = {"detected": "7 expr, found", "with_undetected": "7 expr, all",
              "ferplus": "7 expr, FER+"}
    for key, title in titles.items():
        if key in view:
            m = view[key]
            lines.append(f"{title:16s} n {m['n']:5d}  accuracy {m['accuracy']:.4f}  macro F1 "
                         f"{m['macro_f1']:.4f}" + (f"  (no face {m['no_face']}, wrong)"
                                                   if m["no_face"] else ""))
    if view.get("left_out"):
        lines.append(f"{'':16s} left out (no expression): "
                     + ", ".join(f"{k} {v}" for k, v in view["left_out"].items()))
    if "note" in view:
        lines.append(f"7 expressions: {view['note']}")
    return lines
