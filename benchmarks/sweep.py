"""Benchmark: a sweep's throughput with 1 and 2 workers, and what pruning saves.

Runs the same sweep (the ``fast`` recipe over the default space, judged on 5,000 held-out
training images) three times in fresh study folders:

  (a) 1 worker, median pruner (the default);
  (b) 2 workers, median pruner;
  (c) 1 worker, no pruner;

and reports each one's finished trials per hour of wall time (the whole ``sweep()``: workers
started, data loaded, every trial trained, the study folder written), and the trial-epochs
each trained: (a) against (c) is what pruning saved. Prints a table and a JSON line; --json
also writes the JSON to a file.

    python benchmarks/sweep.py [--trials 12] [--limit N] [--epochs N] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import fashionmlp
from fashionmlp import get_recipe
from fashionmlp.devices import processor_name
from fashionmlp.studies import sweep
from fashionmlp.studies.sweep import open_storage, optuna_module

RUNS = (("a", 1, "median"), ("b", 2, "median"), ("c", 1, "none"))


def one_sweep(workers: int, pruner: str, args: argparse.Namespace) -> dict[str, Any]:
    """One sweep in a fresh folder; its wall time, trials by state and trial-epochs."""
    recipe = get_recipe("fast")
    if args.epochs is not None:
        recipe = recipe.replace(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = sweep(
            recipe,
            folder,
            trials=args.trials,
            workers=workers,
            pruner=pruner,  # type: ignore[arg-type]
            limit=args.limit,
            seed=args.seed,
        )
        seconds = time.perf_counter() - started
        study = optuna_module().load_study(
            study_name=result.study, storage=open_storage(None, Path(folder), heartbeat=60)
        )
        epochs = sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))
    finished = result.states.get("COMPLETE", 0) + result.states.get("PRUNED", 0)
    return {
        "workers": workers,
        "pruner": pruner,
        "seconds": round(seconds, 1),
        "states": result.states,
        "trials_per_hour": round(3600 * finished / seconds, 1),
        "trial_epochs": epochs,
        "best_validation": result.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--limit", type=int, default=None, help="images per split")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {name: one_sweep(workers, pruner, args) for name, workers, pruner in RUNS}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": processor_name(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "fashionmlp": fashionmlp.__version__,
        "python": platform.python_version(),
        "trials": args.trials,
        "limit": args.limit,
        "results": results,
        "speedup_2_workers": round(
            results["b"]["trials_per_hour"] / results["a"]["trials_per_hour"], 2
        ),
        "pruning_saved": round(1 - results["a"]["trial_epochs"] / results["c"]["trial_epochs"], 3),
    }
    print(f"{report['cpu']}, torch {report['torch']}, {args.trials} trials of fast")
    print("| sweep | wall s | trials/hour | states | trial-epochs | best validation |")
    print("|---|---:|---:|---|---:|---:|")
    for name, workers, pruner in RUNS:
        row = results[name]
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(row["states"].items()))
        best = row["best_validation"]
        print(
            f"| ({name}) {workers} worker{'s' * (workers > 1)}, {pruner} | {row['seconds']} | "
            f"{row['trials_per_hour']} | {states} | {row['trial_epochs']} | "
            f"{'—' if best is None else f'{100 * best:.2f}%'} |"
        )
    print(
        f"2 workers: {report['speedup_2_workers']}x the trials per hour; "
        f"pruning saved {100 * report['pruning_saved']:.0f}% of the trial-epochs"
    )
    print(json.dumps(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
