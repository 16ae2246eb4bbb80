from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from fashionmlp import CLASSES, FashionMLP, FashionMLPConfig, InputShapeError, InvalidArgumentError
from strategies import accepted_shapes, model_options, rejected_shapes


class SeedNetwork(nn.Module):
    """The seed document's model, written as the seed writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features=28 * 28, out_features=512)
        self.fc2 = nn.Linear(in_features=512, out_features=512)
        self.fc3 = nn.Linear(in_features=512, out_features=10)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(self.flatten(x))))))


def test_default_model_is_the_seed() -> None:
    model = FashionMLP()
    assert sum(p.numel() for p in model.parameters()) == 669_706
    assert list(model.state_dict()) == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "fc3.weight",
        "fc3.bias",
    ]
    assert (model.fc1.in_features, model.fc1.out_features) == (784, 512)
    assert (model.fc2.in_features, model.fc2.out_features) == (512, 512)
    assert (model.fc3.in_features, model.fc3.out_features) == (512, 10)
    assert isinstance(model.flatten, nn.Flatten) and isinstance(model.relu, nn.ReLU)


def test_same_seed_gives_the_seed_models_weights_and_outputs() -> None:
    torch.manual_seed(7)
    ours = FashionMLP()
    torch.manual_seed(7)
    seed = SeedNetwork()
    for (name, a), (_, b) in zip(ours.state_dict().items(), seed.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(ours(x), seed(x))


def test_classes_in_label_order() -> None:
    assert CLASSES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


@settings(max_examples=60, deadline=None)
@given(shape=accepted_shapes(), options=model_options)
def test_accepted_shapes_give_n_by_10(
    shape: tuple[int, ...], options: tuple[int, int, float]
) -> None:
    width, depth, dropout = options
    model = FashionMLP(hidden_features=width, hidden_layers=depth, dropout=dropout)
    assert model(torch.rand(shape)).shape == (shape[0], 10)
    assert len([n for n in model.state_dict() if n.endswith("weight")]) == depth + 1


@settings(max_examples=60, deadline=None)
@given(shape=rejected_shapes())
def test_rejected_shapes_raise_value_error_naming_the_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="accepts") as info:
        FashionMLP()(torch.zeros(shape))
    assert isinstance(info.value, InputShapeError)
    assert str(shape) in str(info.value)


def test_integer_input_is_refused_with_the_fix() -> None:
    with pytest.raises(InputShapeError, match=r"x.float\(\) / 255"):
        FashionMLP()(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize(
    "options", [{"hidden_features": 0}, {"hidden_layers": 0}, {"dropout": 1.0}, {"dropout": -0.1}]
)
def test_bad_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        FashionMLP(**options)  # type: ignore[arg-type]


def test_dropout_is_active_only_in_training_mode() -> None:
    model = FashionMLP(dropout=0.5)
    x = torch.rand(4, 784)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    first = model(x)
    assert not torch.equal(first, model(x))


def test_the_config_records_the_constructor_arguments() -> None:
    assert FashionMLP().config == FashionMLPConfig()  # the seed: no normalization
    model = FashionMLP(hidden_features=32, hidden_layers=3, dropout=0.1, normalize=(0.5, 0.25))
    config = model.config
    assert (config.hidden_features, config.hidden_layers, config.dropout) == (32, 3, 0.1)
    assert FashionMLPConfig.from_dict(config.to_dict()) == config
    rebuilt = FashionMLP.from_config(config)
    assert rebuilt.config == config and rebuilt.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(InvalidArgumentError, match="unknown setting 'colour'"):
        FashionMLPConfig.from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(InvalidArgumentError, match="missing setting 'normalize'"):
        FashionMLPConfig.from_dict({"hidden_features": 8, "hidden_layers": 1, "dropout": 0.0})
    with pytest.raises(InvalidArgumentError, match="std above 0"):
        FashionMLP(normalize=(0.5, 0.0))


def test_normalization_inside_is_the_loaders_arithmetic_and_adds_no_weights() -> None:
    torch.manual_seed(0)
    plain = FashionMLP()
    normalizing = FashionMLP(normalize=(0.2860, 0.3530))
    normalizing.load_state_dict(plain.state_dict())  # the same keys: nothing added
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(normalizing(x), plain((x - 0.2860) / 0.3530))
    assert "normalize=(0.286, 0.353)" in repr(normalizing) and "normalize" not in repr(plain)


def test_float64_input_is_converted_to_the_weights_precision() -> None:
    model = FashionMLP(hidden_features=8)
    x = torch.rand(3, 784)
    assert torch.equal(model(x.double()), model(x)) and model(x.half()).dtype == torch.float32
