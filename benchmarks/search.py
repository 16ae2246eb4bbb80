"""The recipe search of benchmarks/README.md: candidates trained with fit(), judged on validation.

Every candidate is a variant of a shipped recipe, trained with ``fit(validation_size=5000)``:
55,000 training images, evaluated on 5,000 held-out ones (500 per class, the same in every
run), so the test set is never read. Each runs for several seeds; the table gives the last
epoch's validation accuracy (mean and worst), the first epoch at 90% in the worst seed, and
the wall time of ``fit``.

    python benchmarks/search.py [--precision float32|auto] [--seeds 3] [--only NAME ...]
                                [--json results.json]

``--precision float32`` (the default) turns autocast off, so every run is float32 through and
through, Muon's Newton-Schulz iterations included; ``auto`` lets the recipe use bfloat16
where the machine computes it natively.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from fashionmlp import Recipe, fit, get_recipe
from fashionmlp.data import default_data_root, prepare_dataset

VALIDATION = 5000


def candidates() -> dict[str, Recipe]:
    """What was tried, by name. ``fast`` and ``long`` are the shipped recipes' final settings."""
    adamw = get_recipe("fast").replace(optimizer="adamw", lr=4e-3, batch_size=1024)
    muon = get_recipe("fast")
    long = get_recipe("long")
    return {
        # The previous default, and AdamW cut to the passes Muon needs.
        "adamw-24 (old fast)": adamw.replace(epochs=24),
        "adamw-12": adamw.replace(epochs=12),
        "adamw-8": adamw.replace(epochs=8),
        "adamw-8 lr 8e-3": adamw.replace(epochs=8, lr=8e-3),
        # Muon for the two hidden matrices, AdamW for biases and the output layer.
        "muon-6 batch 1024": muon.replace(epochs=6, batch_size=1024, lr=4e-3),
        "muon-8 batch 1024": muon.replace(batch_size=1024, lr=4e-3),
        "muon-8 batch 1024 ns 3": muon.replace(batch_size=1024, lr=4e-3, ns_steps=3),
        "muon-8 (fast)": muon,
        "muon-8 muon lr 0.02": muon.replace(muon_lr=0.02),
        "muon-8 muon wd 0.1": muon.replace(muon_weight_decay=0.1),
        "muon-8 no smoothing": muon.replace(label_smoothing=0.0),
        "muon-8 no flips": muon.replace(hflip=False),
        "muon-10": muon.replace(epochs=10),
        # Longer runs, for the long recipe (batch 1024: more steps per pass pay off there).
        "muon-30 translate 1": long.replace(epochs=30),
        "muon-30 no translate": long.replace(epochs=30, translate=0),
        "muon-50 translate 1": long.replace(epochs=50),
        "muon-80 translate 1 (long)": long,
    }


def run(name: str, recipe: Recipe, root: Path, seeds: int, precision: str) -> dict[str, Any]:
    if precision == "float32":
        recipe = recipe.replace(autocast="off")
    finals, firsts, seconds = [], [], []
    for seed in range(seeds):
        started = time.perf_counter()
        result = fit(recipe, root, seed=seed, validation_size=VALIDATION, device="cpu")
        seconds.append(time.perf_counter() - started)
        accuracies = [report.eval.accuracy for report in result.history]
        finals.append(accuracies[-1])
        reached = [epoch for epoch, a in enumerate(accuracies, start=1) if a >= 0.90]
        firsts.append(reached[0] if reached else None)
        print(
            f"  {name} seed {seed}: " + " ".join(f"{100 * a:.2f}" for a in accuracies), flush=True
        )
    return {
        "name": name,
        "recipe": recipe.to_dict(),
        "precision": result.precision,
        "validation_accuracy": finals,
        "mean": statistics.mean(finals),
        "worst": min(finals),
        "first_epoch_at_90_worst": None if None in firsts else max(f for f in firsts if f),
        "seconds_median": statistics.median(seconds),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=("float32", "auto"), default="float32")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="run only these candidates (by name)")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.data_root or default_data_root()
    prepare_dataset(root)
    chosen = {
        name: recipe for name, recipe in candidates().items() if not args.only or name in args.only
    }
    rows = [run(name, recipe, root, args.seeds, args.precision) for name, recipe in chosen.items()]
    print(
        f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.precision}, {args.seeds} seeds, validation {VALIDATION}"
    )
    print(
        "| candidate | epochs | precision | validation mean | worst | first ≥90% (worst) | fit s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        first = row["first_epoch_at_90_worst"]
        print(
            f"| {row['name']} | {row['recipe']['epochs']} | {row['precision']} | "
            f"{100 * row['mean']:.2f}% | {100 * row['worst']:.2f}% | "
            f"{first if first is not None else '—'} | {row['seconds_median']:.1f} |"
        )
    if args.json:
        document = {"date": datetime.now(timezone.utc).isoformat(), "rows": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
