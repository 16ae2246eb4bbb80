"""Benchmark: the seed's data pipeline against fashionmlp's tensor backend.

Trains the same FashionMLP initialisation with the same optimizer (SGD, lr 0.01) and
batch size (64) for one epoch's worth of steps through

  (a) the seed's pipeline as the seed document writes it: torchvision FashionMNIST with
      ToTensor() in a DataLoader (num_workers=0) and the seed's training() loop;
  (b) fashionmlp: make_loaders(backend="tensor") and train_epoch();
  (c) pure compute: the same steps through train_epoch() on one pre-made batch already on
      the device, the floor for this model on this device;

and times one full test-set evaluation for (a) (the seed's eval()/no_grad() loop, batch 64)
and (b) (evaluate() on the tensor backend's large chunks). Repeats are interleaved so the
three share the machine's noise: each time shown is the best of the repeats, and each ratio
the median over repeats of the ratio of two runs made back to back.

It also times (d) one bare forward pass of the model over the whole test set, one
pre-made tensor under no_grad(): the floor of (b)'s evaluation.

Then it runs each --recipe (default: fast) end to end with fit(), after a warm-up run, for
each --recipe-seeds seed, in float32 and, where the device computes it natively, in
bfloat16, and reports its test accuracy, its wall time (the whole fit(): loading the data,
building the model, training and evaluating every epoch) and the time to its first epoch at
90% test accuracy, in units of the seed's epoch measured above and of **the compute floor
of the recipe's own passes**: forward, loss, backward and a plain SGD step of the seed
model on one pre-made batch of the recipe's batch size, as many steps as its epochs have,
in the same precision, measured in the same process. Prints a table and a JSON line; --json
also writes the JSON to a file.

    python benchmarks/bench.py [--device cpu|cuda] [--repeats 3] [--recipe-seeds 3]
                               [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

from fashionmlp import (
    FashionMLP,
    default_data_root,
    evaluate,
    fit,
    get_recipe,
    make_loaders,
    train_epoch,
)
from fashionmlp.data import prepare_dataset
from fashionmlp.devices import resolve_device
from fashionmlp.train import resolve_autocast
from fashionmlp.config import TRAIN_IMAGES, Recipe

BATCH_SIZE = 64
LR = 0.01


# --- (a) the seed, as its document writes it --------------------------------------------


def seed_training(
    dataloader: Any, model: nn.Module, loss_func: Any, optimizer: Any, device: torch.device
) -> None:
    """The seed's training() (plus the device move the PyTorch quickstart adds for GPUs)."""
    size = len(dataloader.dataset)
    model.train()

    for batch, (x, y) in enumerate(dataloader):
        x, y = x.to(device), y.to(device)
        pred = model(x)
        loss = loss_func(pred, y)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if batch % 100 == 0:
            loss = loss.item()
            current = batch * len(x)
            print(f"Loss: {loss:.4f} [{current}/{size}]")


def seed_evaluation(
    dataloader: Any, model: nn.Module, loss_func: Any, device: torch.device
) -> float:
    """Evaluation under model.eval() and torch.no_grad(), as the seed describes it."""
    model.eval()
    correct = 0.0
    with torch.no_grad():
        for x, y in dataloader:
            x, y = x.to(device), y.to(device)
            pred = model(x)
            loss_func(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return correct / len(dataloader.dataset)


# --- (c) one batch, replayed -------------------------------------------------------------


class ReplayedBatch:
    """``steps`` times the same batch: a loader that costs nothing."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.x, self.y, self.steps = x, y, steps
        self.dataset = range(steps * len(x))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield self.x, self.y


def timed(function: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the seed's loss lines are not timed
        function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--autocast",
        choices=("bf16",),
        default=None,
        help="run (b) and (c) under bf16 autocast (changes the numerics)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model for (b) and (c)"
    )
    parser.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="also time this recipe to 90%% test accuracy (default: fast; "
        "give it more than once for several; 'none' for none)",
    )
    parser.add_argument(
        "--recipe-seeds", type=int, default=1, help="run each recipe with seeds 0..N-1"
    )
    parser.add_argument(
        "--precision",
        choices=("both", "float32", "bfloat16"),
        default="both",
        help="recipe runs in float32, in bfloat16 (where native), or both (default)",
    )
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    root = args.data_root or default_data_root()
    prepare_dataset(root)
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in FashionMLP().state_dict().items()}
    loss_fn = nn.CrossEntropyLoss()

    autocast = torch.bfloat16 if args.autocast == "bf16" else None

    def fresh(options: bool = False) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The same start every time; with ``options``, compiled if --compile was given."""
        model: nn.Module = FashionMLP().to(device)
        model.load_state_dict(initial)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        if options and args.compile:
            model = torch.compile(model)  # type: ignore[assignment]
        return model, optimizer

    # (a) the seed's objects, made as the seed makes them.
    seed_train = DataLoader(
        datasets.FashionMNIST(str(root), train=True, transform=ToTensor()),
        batch_size=BATCH_SIZE,
        shuffle=True,
    )
    seed_test = DataLoader(
        datasets.FashionMNIST(str(root), train=False, transform=ToTensor()), batch_size=BATCH_SIZE
    )
    # (b) the library's tensor backend on the device.
    fast_train, fast_test = make_loaders(root, BATCH_SIZE, backend="tensor", device=device, seed=0)
    steps = len(fast_train)
    assert steps == len(seed_train)
    # (c) one pre-made batch on the device.
    x, y = next(iter(fast_train))
    replay = ReplayedBatch(x, y, steps)

    def run_seed() -> None:
        model, optimizer = fresh()
        seed_training(seed_train, model, loss_fn, optimizer, device)

    def run_tensor() -> None:
        model, optimizer = fresh(options=True)
        train_epoch(fast_train, model, loss_fn, optimizer, autocast=autocast)

    def run_compute() -> None:
        model, optimizer = fresh(options=True)
        train_epoch(replay, model, loss_fn, optimizer, autocast=autocast)

    eval_model, _ = fresh()
    fast_eval_model, _ = fresh(options=True)
    # (d) the whole test set as one tensor on the device, in the loader's dtype.
    test_images = torch.cat([x for x, _ in fast_test])

    def bare_forward() -> None:
        with torch.no_grad(), _autocast(device, autocast):
            fast_eval_model.eval()(test_images)

    runs: dict[str, Callable[[], object]] = {
        "train_seed": run_seed,
        "train_tensor": run_tensor,
        "train_compute": run_compute,
        "eval_seed": lambda: seed_evaluation(seed_test, eval_model, loss_fn, device),
        "eval_tensor": lambda: evaluate(fast_test, fast_eval_model, loss_fn, autocast=autocast),
        "eval_forward": bare_forward,
    }
    # Warm-up: first-touch allocations, CUDA context and kernels, lazy imports, and the
    # compilation of a compiled model (torch.compile caches it for later fresh models).
    warm_model, warm_optimizer = fresh(options=True)
    train_epoch(ReplayedBatch(x, y, 50), warm_model, loss_fn, warm_optimizer, autocast=autocast)
    evaluate(fast_test, fast_eval_model, loss_fn, autocast=autocast)

    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, function in runs.items():
            times[name].append(timed(function, device))
    best = {name: min(values) for name, values in times.items()}

    def paired(numerator: str, denominator: str) -> float:
        """Median over repeats of the ratio of two runs made back to back."""
        return statistics.median(n / d for n, d in zip(times[numerator], times[denominator]))

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": _describe(device),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "batch_size": BATCH_SIZE,
        "steps": steps,
        "repeats": args.repeats,
        "autocast": args.autocast,
        "compile": args.compile,
        "seconds_best": best,
        "seconds_all": times,
        "ratios": {
            "train_seed_over_tensor": paired("train_seed", "train_tensor"),
            "eval_seed_over_tensor": paired("eval_seed", "eval_tensor"),
            "train_tensor_over_compute": paired("train_tensor", "train_compute"),
            # The most a/b can be on this device: even a loader that costs nothing leaves
            # the model's own forward/backward/step time.
            "train_seed_over_compute": paired("train_seed", "train_compute"),
            # What evaluate() costs over the model's own forward pass on the test set.
            "eval_tensor_over_forward": paired("eval_tensor", "eval_forward"),
        },
    }
    recipes = [name for name in (args.recipe or ["fast"]) if name != "none"]
    result["recipes"] = [
        _time_recipe(name, precision, root, device, args.recipe_seeds, best["train_seed"])
        for name in recipes
        for precision in _precisions(name, device)
        if args.precision in ("both", precision)
    ]
    _print_table(result)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _precisions(name: str, device: torch.device) -> list[str]:
    """float32 always; bfloat16 too where the recipe's "auto" would pick it on ``device``."""
    recipe = get_recipe(name)
    native = resolve_autocast(recipe.replace(autocast="auto"), device) is not None
    return ["float32", "bfloat16"] if recipe.autocast != "off" and native else ["float32"]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def recipe_floor(recipe: Recipe, device: torch.device, repeats: int = 3) -> float:
    """The compute floor of ``recipe``'s passes on ``device``, in seconds: its epochs times
    the best of ``repeats`` epochs of forward, loss, backward and a plain SGD step of the
    seed model on one pre-made batch of its batch size, in its precision
    (``recipe.autocast`` ``"off"`` or ``"bf16"``)."""
    steps = -(-TRAIN_IMAGES // recipe.batch_size)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(recipe.batch_size, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, 10, (recipe.batch_size,), generator=generator).to(device)
    dtype = torch.bfloat16 if recipe.autocast == "bf16" else None
    loss_fn = nn.CrossEntropyLoss()

    def epoch(batches: int) -> None:
        model = FashionMLP().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        train_epoch(ReplayedBatch(x, y, batches), model, loss_fn, optimizer, autocast=dtype)

    epoch(5)  # warm-up
    best = min(timed(lambda: epoch(steps), device) for _ in range(repeats))
    return best * recipe.epochs


def _time_recipe(
    name: str, precision: str, root: Path, device: torch.device, seeds: int, seed_epoch: float
) -> dict[str, Any]:
    """Run a recipe with fit() per seed, after a warm-up run; time it end to end, and to its
    first epoch at 90%, against the seed's epoch and the floor of the recipe's passes."""
    recipe = get_recipe(name).replace(autocast="off" if precision == "float32" else "bf16")
    fit(recipe.replace(epochs=1), root, device=device, seed=0)  # warm-up: caches, kernels
    floor = recipe_floor(recipe, device)
    runs: list[dict[str, Any]] = []
    for seed in range(seeds):
        started = time.perf_counter()
        run = fit(recipe, root, device=device, seed=seed)
        wall = time.perf_counter() - started
        setup = wall - run.history[-1].seconds  # loading the data, making the model
        reached = [setup + r.seconds for r in run.history if r.eval.accuracy >= 0.90]
        runs.append(
            {
                "seed": seed,
                "final_test_accuracy": run.final.accuracy,
                "best_test_accuracy": max(r.eval.accuracy for r in run.history),
                "wall_seconds": wall,
                "seconds_to_90_percent": reached[0] if reached else None,
                "first_epoch_at_90_percent": next(
                    (r.epoch for r in run.history if r.eval.accuracy >= 0.90), None
                ),
            }
        )
    walls = [r["wall_seconds"] for r in runs]
    to_90 = [r["seconds_to_90_percent"] for r in runs]
    return {
        "recipe": name,
        "epochs": recipe.epochs,
        "precision": precision,
        "runs": runs,
        "wall_median": statistics.median(walls),
        "floor_seconds": floor,
        "wall_median_over_floor": statistics.median(walls) / floor,
        "wall_median_over_seed_epoch": statistics.median(walls) / seed_epoch,
        "to_90_median_over_seed_epoch": (
            statistics.median(to_90) / seed_epoch if None not in to_90 else None
        ),
        "worst_final_test_accuracy": min(r["final_test_accuracy"] for r in runs),
    }


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _print_table(result: dict[str, Any]) -> None:
    best, ratios = result["seconds_best"], result["ratios"]
    print(
        f"device {result['device']}, torch {result['torch']}, batch {result['batch_size']}, "
        f"{result['steps']} steps per epoch, best of {result['repeats']} "
        f"(ratios: median of paired runs)"
    )
    print(f"{'':28}{'train epoch (s)':>17}{'test-set eval (s)':>19}")
    print(f"{'(a) seed pipeline':28}{best['train_seed']:17.3f}{best['eval_seed']:19.3f}")
    print(f"{'(b) fashionmlp tensor':28}{best['train_tensor']:17.3f}{best['eval_tensor']:19.3f}")
    print(f"{'(c) pure compute':28}{best['train_compute']:17.3f}{'':>19}")
    print(f"{'(d) bare forward':28}{'':>17}{best['eval_forward']:19.3f}")
    print(
        f"a/b train {ratios['train_seed_over_tensor']:.2f}x, "
        f"a/b eval {ratios['eval_seed_over_tensor']:.2f}x, "
        f"b/c train {ratios['train_tensor_over_compute']:.3f}, "
        f"b/d eval {ratios['eval_tensor_over_forward']:.3f} "
        f"(a/c train {ratios['train_seed_over_compute']:.2f}x, the ceiling for a/b here)"
    )
    for row in result["recipes"]:
        accuracies = ", ".join(f"{100 * r['final_test_accuracy']:.2f}%" for r in row["runs"])
        to_90 = row["to_90_median_over_seed_epoch"]
        print(
            f"recipe {row['recipe']} ({row['precision']}, {row['epochs']} epochs): test accuracy "
            f"{accuracies}; median wall {row['wall_median']:.1f} s = "
            f"{row['wall_median_over_floor']:.2f}x the floor of its passes "
            f"({row['floor_seconds']:.1f} s) = "
            f"{row['wall_median_over_seed_epoch']:.2f} seed epochs; first epoch at 90%: "
            + (f"{to_90:.2f} seed epochs (median)" if to_90 is not None else "not in every run")
        )


if __name__ == "__main__":
    main(sys.argv[1:])
