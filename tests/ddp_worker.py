"""Run by test_distributed.py under ``torchrun --nproc_per_node=2`` (gloo, CPU).

For each backend: one epoch of DDP training from the same start on every rank, then a
distributed evaluate. Rank 0 writes what the test checks: whether all ranks ended with
identical weights, the global figures, every sample's prediction, and the weights.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashionmlp import FashionMLP, devices, evaluate, make_loaders, train_epoch


def main(root: str, out: Path, limit: int) -> None:
    dist.init_process_group("gloo")
    report = {"world_size": dist.get_world_size()}
    for backend in ("tensor", "torchvision"):
        torch.manual_seed(0)
        model = FashionMLP()
        trained = DistributedDataParallel(model)
        train, test = make_loaders(root, 64, backend=backend, seed=1, limit=limit)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        stats = train_epoch(train, trained, nn.CrossEntropyLoss(), optimizer, epoch=1)
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, weights)
        result = evaluate(test, model, nn.CrossEntropyLoss(), keep_predictions=True)
        assert result.predictions is not None
        report[backend] = {
            "identical_weights": all(torch.equal(gathered[0], w) for w in gathered),
            "train": stats.to_dict(),
            "batches_per_rank": len(train),
            "eval": result.to_dict(),
            "predictions": result.predictions.tolist(),
        }
        if dist.get_rank() == 0:
            torch.save(model.state_dict(), out / f"{backend}.pt")
    if dist.get_rank() == 0:
        (out / "report.json").write_text(json.dumps(report))
    devices.shutdown()


if __name__ == "__main__":
    faulthandler.enable()  # a crash in native code prints where each thread was
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
    # As the command line does under torchrun: no interpreter shutdown for gloo's threads
    # to abort (see fashionmlp.cli.run).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
