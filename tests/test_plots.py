from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashionmlp import EpochReport, EpochStats, EvalResult
from fashionmlp.plots import (
    plot_accuracy,
    plot_confusion_matrix,
    plot_losses,
    plot_misclassified,
)

pytest.importorskip("matplotlib")


def history(epochs: int) -> list[EpochReport]:
    reports = []
    for epoch in range(1, epochs + 1):
        matrix = [[0] * 10 for _ in range(10)]
        for label in range(10):
            matrix[label][label] = 80 + epoch
            matrix[label][(label + 1) % 10] = 20 - epoch
        reports.append(
            EpochReport(
                epoch=epoch,
                epochs=epochs,
                train=EpochStats(
                    epoch=epoch, loss_sum=1000 / epoch, samples=1000, batches=10, seconds=1.0
                ),
                eval=EvalResult(
                    correct=sum(matrix[i][i] for i in range(10)),
                    total=1000,
                    loss=1.2 / epoch,
                    confusion_matrix=tuple(map(tuple, matrix)),
                ),
                seconds=float(epoch),
                lr=0.01,
                step=10 * epoch,
            )
        )
    return reports


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_every_plot_writes_a_png(tmp_path: Path) -> None:
    reports = history(4)
    losses = [(step, 2.0 / (1 + step)) for step in range(40)]
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    labels = torch.arange(50) % 10
    predictions = (labels + (torch.arange(50) % 3 == 0).long()) % 10
    paths = [
        plot_losses(tmp_path / "loss.png", losses, reports),
        plot_accuracy(tmp_path / "accuracy.png", reports),
        plot_confusion_matrix(tmp_path / "confusion.png", reports[-1].eval.confusion_matrix),
        plot_misclassified(tmp_path / "wrong.png", images, labels, predictions),
    ]
    assert all(_is_png(path) for path in paths)
