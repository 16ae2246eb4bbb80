"""The seed document's own code, verbatim, for tests that compare the library against it."""

from __future__ import annotations

from typing import Any


def training(dataloader: Any, model: Any, loss_func: Any, optimizer: Any) -> None:
    size = len(dataloader.dataset)
    model.train()

    for batch, (x, y) in enumerate(dataloader):
        pred = model(x)
        loss = loss_func(pred, y)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if batch % 100 == 0:
            loss = loss.item()
            current = batch * len(x)
            print(f"Loss: {loss:.4f} [{current}/{size}]")
