from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from conftest import synthetic_loader
from fashionmlp import EvalResult, FashionMLP, InvalidArgumentError, evaluate
from fashionmlp.train import eval_mode
from strategies import loader_sizes


@settings(max_examples=25, deadline=None)
@given(sizes=loader_sizes())
def test_confusion_matrix_accuracy_and_loss_agree(sizes: tuple[int, int]) -> None:
    samples, batch_size = sizes
    loader = synthetic_loader(samples, batch_size, seed=samples)
    torch.manual_seed(0)
    model = FashionMLP(hidden_features=16)
    result = evaluate(loader, model, nn.CrossEntropyLoss())

    x, y = (torch.cat(parts) for parts in zip(*loader))
    with torch.no_grad():
        logits = model(x)
    matrix = torch.tensor(result.confusion_matrix)
    assert matrix.shape == (10, 10)
    assert int(matrix.sum()) == result.total == samples
    assert result.correct == int(matrix.trace()) == int((logits.argmax(1) == y).sum())
    assert result.accuracy == result.correct / result.total
    assert result.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    for label in range(10):  # rows are true classes
        assert int(matrix[label].sum()) == int((y == label).sum())
        expected = (
            float(((logits.argmax(1) == label) & (y == label)).sum() / (y == label).sum())
            if (y == label).any()
            else math.nan
        )
        assert result.per_class_accuracy[label] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("training", [True, False])
def test_the_models_mode_is_restored_and_no_gradients_are_made(training: bool) -> None:
    model = FashionMLP(hidden_features=8).train(training)
    modes: list[bool] = []
    model.register_forward_hook(lambda module, *_: modes.append(module.training))
    evaluate(synthetic_loader(20, 8), model)
    assert modes == [False] * 3
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())


def test_mode_is_restored_when_evaluation_fails() -> None:
    model = FashionMLP(hidden_features=8).train()
    bad = [(torch.rand(2, 5), torch.tensor([0, 1]))]
    with pytest.raises(ValueError):
        evaluate(bad, model)
    assert model.training


def test_without_loss_fn_the_loss_is_none_and_to_dict_is_complete() -> None:
    result = evaluate(synthetic_loader(30, 10), FashionMLP(hidden_features=8))
    assert result.loss is None
    data = result.to_dict()
    assert set(data) == {
        "correct",
        "total",
        "loss",
        "confusion_matrix",
        "top_k_correct",
        "nll_sum",
        "calibration",
        "accuracy",
        "per_class_accuracy",
        "precision",
        "recall",
        "f1",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "top_k_accuracy",
        "nll",
        "ece",
    }
    assert EvalResult.from_dict(json.loads(json.dumps(data))) == result
    assert isinstance(result, EvalResult) and data["total"] == 30


def test_an_empty_loader_is_refused() -> None:
    empty = DataLoader(Subset(synthetic_loader(4, 2).dataset, []), batch_size=2)
    with pytest.raises(InvalidArgumentError, match="no batches"):
        evaluate(empty, FashionMLP(hidden_features=8))


def test_evaluation_reads_from_the_device_once(device_reads: list[str]) -> None:
    loader = synthetic_loader(200, 10)  # 20 batches
    result = evaluate(loader, FashionMLP(hidden_features=8), nn.CrossEntropyLoss())
    assert result.total == 200 and len(device_reads) == 1, device_reads


def test_kept_predictions_are_each_samples_label_in_loader_order() -> None:
    loader = synthetic_loader(70, 16)
    model = FashionMLP(hidden_features=8)
    result = evaluate(loader, model, keep_predictions=True)
    x = torch.cat([batch for batch, _ in loader])
    assert result.predictions is not None and result.predictions.dtype == torch.int64
    assert torch.equal(result.predictions, model(x).argmax(1))
    assert evaluate(loader, model).predictions is None
    assert result == evaluate(loader, model)  # predictions are not part of the comparison
    assert "predictions" not in result.to_dict()
    assert EvalResult.from_dict(result.to_dict()) == result


def test_eval_mode_restores_the_mode_even_after_an_error() -> None:
    model = FashionMLP(hidden_features=8).train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training and not torch.is_grad_enabled()
        raise RuntimeError
    assert model.training and torch.is_grad_enabled()


@pytest.mark.parametrize("loss_fn", [None, nn.CrossEntropyLoss()])
def test_labels_outside_the_classes_are_named_not_torchs_error(loss_fn: nn.Module | None) -> None:
    labels = torch.tensor([0, 1, 2, 12, 3, 4, 5, 6, 7, 8])
    loader = DataLoader(TensorDataset(torch.rand(10, 784), labels), batch_size=5)
    with pytest.raises(InvalidArgumentError, match=r"outside 0..9"):
        evaluate(loader, FashionMLP(hidden_features=8), loss_fn)


def test_non_finite_inputs_are_refused_after_the_pass(device_reads: list[str]) -> None:
    x = torch.rand(10, 784)
    x[3, 5] = float("nan")
    loader = DataLoader(TensorDataset(x, torch.zeros(10, dtype=torch.long)), batch_size=5)
    with pytest.raises(InvalidArgumentError, match="1 sample.*NaN or infinite"):
        evaluate(loader, FashionMLP(hidden_features=8))
    assert len(device_reads) == 1  # the check rode on the one read


def test_the_reported_figures_match_their_definitions_computed_from_the_logits() -> None:
    torch.manual_seed(0)
    model = FashionMLP(hidden_features=16)
    x, y = torch.rand(300, 1, 28, 28), torch.randint(0, 10, (300,))
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    result = evaluate(loader, model, nn.CrossEntropyLoss())
    with torch.no_grad():
        logits = model.eval()(x).double()
    predicted, confidence = logits.argmax(1), logits.softmax(1).max(1).values
    for c in range(10):
        tp = int(((predicted == c) & (y == c)).sum())
        fp, fn = int(((predicted == c) & (y != c)).sum()), int(((predicted != c) & (y == c)).sum())
        precision = tp / (tp + fp) if tp + fp else math.nan
        recall = tp / (tp + fn)
        assert result.precision[c] == pytest.approx(precision, nan_ok=True)
        assert result.recall[c] == pytest.approx(recall)
        if not math.isnan(precision):
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            assert result.f1[c] == pytest.approx(f1)
    for k in (1, 3, 5):
        hits = (logits.topk(k, dim=1).indices == y[:, None]).any(1).double().mean()
        assert result.top_k_accuracy[k] == pytest.approx(float(hits))
    assert result.top_k_accuracy[1] == result.accuracy
    nll = float(nn.functional.cross_entropy(logits, y))
    assert result.nll == pytest.approx(nll, rel=1e-5) and result.loss == pytest.approx(
        nll, rel=1e-5
    )
    bins = (confidence * 15).long().clamp(max=14)
    right = (predicted == y).double()
    gaps = [abs(float(confidence[bins == b].sum() - right[bins == b].sum())) for b in range(15)]
    assert result.ece == pytest.approx(sum(gaps) / len(y), abs=1e-6)  # float32 sums
    scalars = result.scalars()
    assert set(scalars) == {
        "accuracy",
        "loss",
        "top3_accuracy",
        "top5_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "nll",
        "ece",
    }


def test_a_model_of_fewer_classes_counts_only_the_top_k_it_has() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, 3, (40,))
    result = evaluate(DataLoader(TensorDataset(x, y), batch_size=16), model)
    assert set(result.top_k_accuracy) == {1, 3} and result.top_k_accuracy[3] == 1.0


def confusion(pairs: list[tuple[int, int]]) -> tuple[tuple[int, ...], ...]:
    matrix = [[0] * 10 for _ in range(10)]
    for true, predicted in pairs:
        matrix[true][predicted] += 1
    return tuple(map(tuple, matrix))


def test_29_5_macro_figures_average_over_the_classes_present_as_scikit_learn_does() -> None:
    perfect = [(label, label) for label in (0, 1, 2, 3, 4, 5, 6, 0, 1, 2)]  # 7 classes of 10
    result = EvalResult(correct=10, total=10, loss=None, confusion_matrix=confusion(perfect))
    assert (result.macro_precision, result.macro_recall, result.macro_f1) == (1.0, 1.0, 1.0)
    pairs = [(0, 0), (0, 2), (1, 1), (1, 1)]  # class 2 predicted, never true
    result = EvalResult(correct=3, total=4, loss=None, confusion_matrix=confusion(pairs))
    assert result.macro_precision == pytest.approx((1 + 1 + 0) / 3)
    assert result.macro_recall == pytest.approx((0.5 + 1 + 0) / 3)
    assert result.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
    metrics = pytest.importorskip("sklearn.metrics")
    true, predicted = zip(*pairs)
    for name in ("precision", "recall", "f1"):
        expected = getattr(metrics, f"{name}_score")(
            true, predicted, average="macro", zero_division=0
        )
        assert getattr(result, f"macro_{name}") == pytest.approx(expected)
