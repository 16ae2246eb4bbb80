from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from fashionmlp import (
    FashionMLP,
    InvalidArgumentError,
    get_recipe,
    load_checkpoint,
    save_checkpoint,
)
from fashionmlp.optim import Muon, muon_param_groups, newton_schulz
from fashionmlp.train import make_optimizer, make_scheduler


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(2, 96), cols=st.integers(2, 96), seed=st.integers(0, 2**16))
def test_newton_schulz_never_blows_a_matrix_up(rows: int, cols: int, seed: int) -> None:
    matrix = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    result = newton_schulz(matrix)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    assert float(torch.linalg.svdvals(result.double()).max()) < 1.3


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(2, 48), wider=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_newton_schulz_makes_well_conditioned_matrices_nearly_semi_orthogonal(
    rows: int, wider: int, seed: int
) -> None:
    # Keller Jordan's coefficients trade exactness for speed: singular values end up near 1,
    # though five steps cannot lift the tiny ones of an ill-conditioned matrix that far.
    shape = (rows, wider * rows) if seed % 2 else (wider * rows, rows)
    matrix = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    singular = torch.linalg.svdvals(newton_schulz(matrix).double())
    assert float(singular.max()) < 1.3 and float(singular.min()) > 0.5


def test_newton_schulz_computes_in_the_dtype_asked() -> None:
    matrix = torch.randn(32, 48)
    in_float32, in_bf16 = newton_schulz(matrix), newton_schulz(matrix, dtype=torch.bfloat16)
    assert in_bf16.dtype == torch.float32  # returned in the matrix's own dtype
    assert not torch.equal(in_float32, in_bf16)  # but computed differently
    assert torch.allclose(in_float32, in_bf16, atol=0.05)


def test_the_groups_put_hidden_matrices_under_muon_and_the_rest_under_adamw() -> None:
    model = FashionMLP(hidden_features=16, hidden_layers=3)
    muon, adamw = muon_param_groups(model, muon_lr=0.04, lr=4e-3, weight_decay=0.2)
    assert [p.shape for p in muon["params"]] == [(16, 784), (16, 16), (16, 16)]
    assert {tuple(p.shape) for p in adamw["params"]} == {(16,), (10, 16), (10,)}
    assert (muon["muon"], muon["lr"], adamw["muon"], adamw["weight_decay"]) == (
        True,
        0.04,
        False,
        0.2,
    )


def test_adamw_groups_are_torchs_adamw() -> None:
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(20)), torch.nn.Parameter(torch.zeros(20))
    theirs.data.copy_(ours.data)
    optimizers = (
        Muon([{"params": [ours], "muon": False, "lr": 0.01, "weight_decay": 0.2}]),
        torch.optim.AdamW([theirs], lr=0.01, weight_decay=0.2),
    )
    for _ in range(30):
        gradient = torch.randn(20)
        for parameter, optimizer in zip((ours, theirs), optimizers):
            parameter.grad = gradient.clone()
            optimizer.step()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_muon_trains_and_refuses_what_it_cannot_orthogonalize() -> None:
    torch.manual_seed(0)
    model = FashionMLP(hidden_features=32)
    optimizer = Muon(muon_param_groups(model, muon_lr=0.05, lr=1e-2, weight_decay=0.0))
    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(InvalidArgumentError, match="2-D weight matrices only"):
        Muon([{"params": [model.fc1.bias], "muon": True}])
    with pytest.raises(InvalidArgumentError, match="ns_steps"):
        Muon(model.parameters(), ns_steps=0)


def test_its_state_survives_a_checkpoint(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    optimizer = make_optimizer(get_recipe("fast"), model)
    model(torch.rand(4, 784)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c.pt", model, optimizer)
    again = FashionMLP(hidden_features=8)
    restored = make_optimizer(get_recipe("fast"), again)
    load_checkpoint(tmp_path / "c.pt", again, restored)
    saved, loaded = optimizer.state_dict(), restored.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    assert torch.equal(saved["state"][0]["momentum_buffer"], loaded["state"][0]["momentum_buffer"])
    assert loaded["state"][2]["step"] == 1  # an AdamW parameter's step count


def test_the_fast_recipes_schedule_peaks_each_group_at_its_own_rate() -> None:
    recipe = get_recipe("fast")
    optimizer = make_optimizer(recipe, FashionMLP(hidden_features=8), precision=torch.bfloat16)
    assert isinstance(optimizer, Muon) and optimizer.ns_dtype == torch.bfloat16
    scheduler = make_scheduler(recipe, optimizer, steps_per_epoch=10)
    assert scheduler is not None
    peaks = [0.0, 0.0]
    for _ in range(recipe.epochs * 10):
        optimizer.step()
        scheduler.step()
        peaks = [max(peak, group["lr"]) for peak, group in zip(peaks, optimizer.param_groups)]
    assert peaks == pytest.approx([recipe.muon_lr, recipe.lr], rel=0.02)
    assert optimizer.param_groups[0]["momentum"] == 0.95  # not cycled


class HeadFirst(torch.nn.Module):
    """A model that registers its output layer before its hidden one."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(32, 10)
        self.hidden = torch.nn.Linear(784, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x.flatten(1))))


class Scaled(HeadFirst):
    """Its outputs are not a layer's own: which one is the output layer is not plain."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_29_6_muons_hidden_layers_are_picked_by_structure_not_registration_order() -> None:
    model = HeadFirst()
    muon, adamw = muon_param_groups(model, muon_lr=0.04, lr=4e-3, weight_decay=0.2)
    assert muon["params"] == [model.hidden.weight]
    assert {id(p) for p in adamw["params"]} == {
        id(model.head.weight),
        id(model.head.bias),
        id(model.hidden.bias),
    }
    assert model.training  # its mode as it was
    with pytest.raises(InvalidArgumentError, match="cannot tell which layer produces"):
        muon_param_groups(Scaled(), muon_lr=0.04, lr=4e-3, weight_decay=0.2)
