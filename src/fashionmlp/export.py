"""Exporting a trained model for deployment (needs the ``export`` extra).

``export_onnx`` writes an ONNX file that takes what ``ToTensor()`` makes, float32
``(N, 1, 28, 28)`` in ``[0, 1]`` with any batch size ``N``, and returns the logits
``(N, 10)``; a :class:`~fashionmlp.FashionMLP`'s input normalization is inside the graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._files import atomic_write, os_error_fix
from .devices import model_device
from .errors import CheckpointError, InvalidArgumentError, MissingExtraError
from .evaluation import eval_mode
from .model import IMAGE_SIZE

__all__ = ["export_onnx"]

_EXTRA = "pip install 'fashionmlp[export]'"


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as ONNX, with a dynamic batch axis.

    The graph's input is ``images`` and its output ``logits``. Run it with
    onnxruntime: ``session.run(None, {"images": x.numpy()})[0]``.

    Args:
        model: The model to export (e.g. ``FashionMLP.from_pretrained(run)``).
        path: The ``.onnx`` file to write (atomically).
        overwrite: Replace an existing file; without it an existing file is refused.

    Raises:
        MissingExtraError: onnx or onnxscript is not installed.
        InvalidArgumentError: ``path`` exists and ``overwrite`` is false.
        CheckpointError: ``path`` cannot be written (the message says why).

    Example:
        .. code-block:: python

            from fashionmlp import FashionMLP
            from fashionmlp.export import export_onnx

            export_onnx(FashionMLP.from_pretrained("runs/first"), "fashionmlp.onnx")
    """
    try:
        import onnx  # noqa: F401  # the exporter's own needs, checked up front
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"ONNX export needs the export extra: {_EXTRA} ({exc})") from None
    path = Path(path)
    if path.exists() and not overwrite:
        raise InvalidArgumentError(
            f"{path} exists; choose another file, or allow replacing it (--overwrite)"
        )
    example = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, device=model_device(model))
    with eval_mode(model):
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    assert program is not None  # dynamo=True always returns the program
    data = program.model_proto.SerializeToString()
    try:
        atomic_write(path, data, replace=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {os_error_fix(exc)}") from exc
    return path
