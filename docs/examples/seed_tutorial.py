"""The seed tutorial, step by step, with fashionmlp (see docs/tutorial.rst).

Run it from the project folder: python docs/examples/seed_tutorial.py
"""

import torch
from torch import nn

from fashionmlp import CLASSES, FashionMLP, PrintLoss, evaluate, make_loaders, train_epoch

torch.manual_seed(0)  # the same weights and batches on every run

# 1. Data: torchvision's FashionMNIST with ToTensor(), in DataLoaders (batch 64).
train_dataloader, test_dataloader = make_loaders("data", batch_size=64, seed=0)
x, y = next(iter(train_dataloader))
print(f"x: {tuple(x.shape)} {x.dtype}; y: {tuple(y.shape)} {y.dtype}")
print(f"first label: {int(y[0])} = {CLASSES[y[0]]}")

# 2. Model: Flatten, fc1 784->512, fc2 512->512, fc3 512->10, ReLU.
model = FashionMLP()
print(model)

# 3. Loss and optimizer, as in the seed.
loss_func = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

# 4. Train, printing the seed's loss line every 100 batches; 5. evaluate under
#    model.eval() and torch.no_grad() after every epoch.
for epoch in range(1, 4):
    print(f"Epoch {epoch}\n-------------------------------")
    train_epoch(
        train_dataloader, model, loss_func, optimizer, callbacks=[PrintLoss(every=100)], epoch=epoch
    )
    result = evaluate(test_dataloader, model, loss_func)
    print(f"Test: accuracy {100 * result.accuracy:.1f}%, avg loss {result.loss:.4f}\n")
