"""Training speed of the fusion network: one step (augment, forward, backward, AdamW, weight
average) on a batch of the real inputs' shapes, in the default (NCHW) and the channels-last
(NHWC) memory layout that ``train`` uses, at each ``--threads``. The layouts alternate, rep by
rep, so machine drift hits both alike; the headline is the ratio of median milliseconds a step.
Beside it, each layout's float32 gradient error on the face branch in training mode against a
float64 reference (the worst parameter's largest deviation over its largest gradient).

    .venv/bin/python benchmarks/bench_train.py                    # results/train.{md,json}
    .venv/bin/python benchmarks/bench_train.py --threads 1 --steps 10 --reps 5

The whole recipe's wall time (the README's commands) is the real figure; this isolates the step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import RESULTS  # noqa: E402

LAYOUTS = ("contiguous", "channels_last")


def step_ms(layout: str, threads: int, steps: int, batch: int) -> float:
    """Median milliseconds of one training step, after two untimed steps."""
    import numpy as np
    import torch

    from emotion_estimator.features import N_LANDMARKS
    from emotion_estimator.training.fusion.augment import (
        AugmentConfig,
        augment,
        blendshape_mirror,
        landmark_mirror,
    )
    from emotion_estimator.training.fusion.model import FusionDimensions, FusionNet
    from emotion_estimator.training.fusion.train import EmaWeights

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    model = FusionNet(FusionDimensions(n_fine=7, fine_hidden=128))
    model.to(memory_format=torch.channels_last if layout == "channels_last"
             else torch.contiguous_format).train()
    shape = np.random.default_rng(0).normal(size=(N_LANDMARKS, 3))
    lm_perm = torch.from_numpy(landmark_mirror(shape))
    bs_perm = torch.from_numpy(blendshape_mirror())
    x = {"face": torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8, generator=gen),
         "landmarks": torch.randn(batch, N_LANDMARKS, 3, generator=gen),
         "blendshapes": torch.rand(batch, 52, generator=gen)}
    y = torch.randint(0, 3, (batch,), generator=gen)
    optim = torch.optim.AdamW(model.parameters(), 1e-3)
    ema = EmaWeights(model, 0.999)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        logits, aux = model(**augment(dict(x), AugmentConfig(), gen, lm_perm, bs_perm))
        loss = torch.nn.functional.cross_entropy(logits, y) + sum(
            torch.nn.functional.cross_entropy(a, y % a.shape[1]) for a in aux.values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        ema.update(model)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def gradient_error(layout: str, threads: int, batch: int) -> float:
    """Worst relative gradient error of the face branch (train mode) against float64."""
    import copy

    import torch

    from emotion_estimator.training.fusion.model import FaceBranch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    branch = FaceBranch(32).train()
    reference = copy.deepcopy(branch).double()
    branch.to(memory_format=torch.channels_last if layout == "channels_last"
              else torch.contiguous_format)
    x = torch.randn(batch, 1, 48, 48)
    for model, inputs in ((branch, x), (reference, x.double())):
        model.top(model.stages(model.stem(inputs))).mean(dim=(2, 3)).sin().sum().backward()
    return max(((p.grad.double() - r.grad).abs().max() / r.grad.abs().max()).item()
               for p, r in zip(branch.parameters(), reference.parameters(), strict=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", type=Path, default=RESULTS / "train")
    args = p.parse_args()
    rows, result = [], {"machine": benchlib.machine(), "command": benchlib.command_line(),
                        "batch": args.batch, "steps": args.steps, "reps": args.reps}
    for threads in args.threads:
        runs: dict[str, list[float]] = {k: [] for k in LAYOUTS}
        for rep in range(args.reps):
            for layout in (LAYOUTS if rep % 2 == 0 else LAYOUTS[::-1]):
                runs[layout].append(step_ms(layout, threads, args.steps, args.batch))
        med = {k: statistics.median(v) for k, v in runs.items()}
        error = {k: gradient_error(k, threads, args.batch) for k in LAYOUTS}
        result[f"threads_{threads}"] = {"ms_per_step": runs, "median": med,
                                        "gradient_error": error}
        rows.append([threads, f"{med['contiguous']:.0f}", f"{med['channels_last']:.0f}",
                     f"{med['contiguous'] / med['channels_last']:.2f}x",
                     f"{error['contiguous']:.1e}", f"{error['channels_last']:.1e}"])
        print(f"{threads} thread(s): {med['contiguous']:.0f} ms -> "
              f"{med['channels_last']:.0f} ms a step", file=sys.stderr)
    table = benchlib.markdown_table(
        ["threads", "NCHW ms / step", "channels-last ms / step", "speed-up",
         "NCHW gradient error", "channels-last gradient error"], rows, "rrrrrr")
    benchlib.write_atomic(args.out.with_suffix(".md"),
                          f"# Fusion training step, batch {args.batch}\n\n{result['machine']}"
                          f"\n\n`{result['command']}`\n\n{table}\n")
    benchlib.write_json(args.out.with_suffix(".json"), result)
    print(table)


if __name__ == "__main__":
    benchlib.guarded(main)
