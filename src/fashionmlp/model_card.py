"""Model cards: the ``README.md`` of a model folder, in the Hugging Face layout.

A card is YAML front matter the Hub reads (``library_name``, ``tags``, ``datasets``,
``metrics``, and a ``model-index`` with the test accuracy when it is known), then what the
model is, its parameter count, the recipe it was trained with, its figures per class, how
to load it, and what it is for. :meth:`~fashionmlp.FashionMLP.save_pretrained` and every
``fashionmlp train`` run folder write one; ``from_pretrained`` ignores it.

A ``README.md`` that is not a card of ours (its front matter does not say ``library_name:
fashionmlp``) is never replaced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._files import atomic_write, os_error_fix
from .config import CLASSES, IMAGE_SIZE, flat
from .errors import CheckpointError
from .records import EvalResult

__all__ = ["CARD_FILE", "is_model_card", "model_card", "write_model_card"]

#: The model card's file in a model folder.
CARD_FILE = "README.md"
_OURS = "library_name: fashionmlp"
_DATASET = "zalando-datasets/fashion_mnist"
#: Images in FashionMNIST's test set.
TEST_SIZE = 10_000
_LOAD = """```python
from fashionmlp import FashionMLP, predict

model = FashionMLP.from_pretrained("{where}")  # this folder, or its Hub repository
print(predict(model, "shirt.png"))             # any PNG or JPEG: top classes
```"""


_ONNX = """`{name}` takes `images`, float32 `(N, 1, 28, 28)` in [0, 1] (any N), and returns
`logits` `(N, 10)`; the input normalization is inside:

```python
import onnxruntime

session = onnxruntime.InferenceSession("{name}")
(logits,) = session.run(None, {{"images": images}})  # images: a NumPy array as above
```"""


def model_card(
    config: Mapping[str, Any],
    parameters: int,
    *,
    evaluation: EvalResult | None = None,
    split: str = "test",
    recipe: Mapping[str, Any] | None = None,
    where: str = ".",
    onnx: str | None = None,
) -> str:
    """The card of a model of ``config`` (its ``config.json``, ``model_type`` included).

    Args:
        config: The model's config as its ``config.json`` holds it.
        parameters: Its number of parameters.
        evaluation: Its evaluation, if it was evaluated: the accuracy goes in the front
            matter (for the test set only) and the text, with the per-class figures.
        split: What ``evaluation`` measured: ``"test"`` or ``"validation"``.
        recipe: The recipe it was trained with (``Recipe.to_dict()``), if known.
        where: What the loading example passes to ``from_pretrained``.
        onnx: The name of the model's ONNX file beside the card, if exported.
    """
    name = recipe.get("name") if recipe else None
    title = f"FashionMLP ({name})" if name else "FashionMLP"
    # The Hub's results table is for the whole test set; a --limit run's figure is not one.
    whole_test = evaluation is not None and split == "test" and evaluation.total == TEST_SIZE
    lines = ["---", *_front_matter(title, evaluation if whole_test else None), "---", ""]
    lines += [f"# {title}", ""]
    lines += [
        "A multi-layer perceptron that classifies FashionMNIST's 28x28 grayscale images of "
        "garments into its ten classes, made with "
        "[fashionmlp](https://pypi.org/project/fashionmlp/).",
        "",
    ]
    if evaluation is not None:
        images = f"{evaluation.total:,} {split} images"
        lines += [
            f"**{split.capitalize()} accuracy: {_percent(evaluation.accuracy)}** ({images}).",
            "",
        ]
    lines += ["## Architecture", "", _architecture(config, parameters), ""]
    if recipe:
        lines += [
            "## Training",
            "",
            "The recipe (`fashionmlp train --recipe FILE` takes it as TOML):",
            "",
            "| setting | value |",
            "|---|---|",
        ]
        lines += [f"| `{key}` | `{json.dumps(value)}` |" for key, value in flat(recipe).items()]
        lines.append("")
    if evaluation is not None:
        lines += ["## Evaluation", "", *_figures(evaluation, split), ""]
    lines += ["## How to use", "", _LOAD.format(where=where), ""]
    if onnx is not None:
        lines += ["## ONNX", "", _ONNX.format(name=onnx), ""]
    lines += ["## Intended use and limitations", "", *_limitations(), ""]
    return "\n".join(lines)


def _front_matter(title: str, test: EvalResult | None) -> list[str]:
    lines = [
        _OURS,
        "license: mit",
        "pipeline_tag: image-classification",
        "tags:",
        "- image-classification",
        "- fashion-mnist",
        "- mlp",
        "- pytorch",
        "datasets:",
        f"- {_DATASET}",
        "metrics:",
        "- accuracy",
    ]
    if test is not None:  # the Hub's form of a result: a model-index entry
        lines += [
            "model-index:",
            f"- name: {json.dumps(title)}",
            "  results:",
            "  - task:",
            "      type: image-classification",
            "      name: Image Classification",
            "    dataset:",
            "      name: FashionMNIST",
            f"      type: {_DATASET}",
            "      split: test",
            "    metrics:",
            "    - type: accuracy",
            f"      value: {test.accuracy}",
            "      name: Test accuracy",
        ]
    return lines


def _architecture(config: Mapping[str, Any], parameters: int) -> str:
    width, depth = config.get("hidden_features"), config.get("hidden_layers")
    if not isinstance(width, int) or not isinstance(depth, int):
        return f"A `{config.get('model_type', 'model')}` of {parameters:,} parameters."
    pixels = IMAGE_SIZE * IMAGE_SIZE
    sizes = [pixels, *[width] * depth, len(CLASSES)]
    dropout = config.get("dropout") or 0
    layers = [f"Linear {a}→{b}" for a, b in zip(sizes, sizes[1:])]
    hidden = ", ReLU" + (f", Dropout {dropout}" if dropout else "") + ", "
    normalize = config.get("normalize")
    standardized = (
        f"standardized as (x − {normalize[0]}) / {normalize[1]} inside the model, then "
        if isinstance(normalize, list) and normalize != [0.0, 1.0]
        else ""
    )
    return (
        f"Input `(N, 1, {IMAGE_SIZE}, {IMAGE_SIZE})` in [0, 1] (torchvision's `ToTensor()`), "
        f"{standardized}flattened to {pixels}; {hidden.join(layers)}: logits of the ten "
        f"classes. **{parameters:,} parameters**."
    )


def _figures(result: EvalResult, split: str) -> list[str]:
    top_k = ", ".join(f"top-{k} {_percent(v)}" for k, v in result.top_k_accuracy.items())
    lines = [
        f"On {result.total:,} {split} images: accuracy {_percent(result.accuracy)}"
        + (f" ({top_k})" if top_k else "")
        + f"; macro precision {_percent(result.macro_precision)}, recall "
        f"{_percent(result.macro_recall)}, F1 {_percent(result.macro_f1)}"
        + (f"; negative log-likelihood {result.nll:.4f}" if result.nll is not None else "")
        + (f"; expected calibration error {_percent(result.ece)}" if result.ece is not None else "")
        + ".",
        "",
        "| class | precision | recall (accuracy) | F1 |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {_percent(p)} | {_percent(r)} | {_percent(f)} |"
        for name, p, r, f in zip(CLASSES, result.precision, result.recall, result.f1)
    ]
    return lines


def _limitations() -> list[str]:
    return [
        f"- Input: {IMAGE_SIZE}x{IMAGE_SIZE} grayscale images of a single garment, light on a "
        "black background, as in FashionMNIST (`fashionmlp predict` pads, resizes and, for "
        "photos on a light background, inverts pictures to match).",
        "- Trained on FashionMNIST's training split: Zalando product photos, centred and "
        "cropped. Photos taken otherwise (other angles, several garments, "
        "clutter) are outside that distribution, and the figures above do not hold there.",
        "- Ten classes only; anything else is still put in one of them.",
        "- A teaching and benchmark model, not for decisions about people.",
    ]


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}%"


def is_model_card(path: str | Path) -> bool:
    """Whether ``path`` is a model card of ours (front matter saying ``library_name:
    fashionmlp``), which may be replaced; ``False`` for anything else or nothing."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    front, _, _ = head.removeprefix("---\n").partition("\n---")
    return head.startswith("---\n") and _OURS in front.splitlines()


def write_model_card(folder: str | Path, text: str) -> Path | None:
    """Write ``text`` as ``folder/README.md``; return its path, or ``None`` when the folder
    holds a ``README.md`` that is not ours (it is left as it is).

    Raises:
        CheckpointError: The file cannot be written.
    """
    path = Path(folder) / CARD_FILE
    if path.exists() and not is_model_card(path):
        return None
    try:
        atomic_write(path, text.encode(), replace=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {os_error_fix(exc)}") from exc
    return path
