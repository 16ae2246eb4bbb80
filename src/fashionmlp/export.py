"""Exporting a trained model for deployment (needs the ``export`` extra).

``export_onnx`` writes an ONNX file that takes what ``ToTensor()`` makes, float32
``(N, 1, 28, 28)`` in ``[0, 1]`` with any batch size ``N``, and returns the logits
``(N, 10)``; a :class:`~fashionmlp.FashionMLP`'s input normalization is inside the graph.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ._files import atomic_write, check_name, os_error_fix
from .config import IMAGE_SIZE
from .devices import model_device
from .errors import CheckpointError, InvalidArgumentError, MissingExtraError
from .train import eval_mode

__all__ = ["export_onnx"]

_EXTRA = "pip install 'fashionmlp[export]'"


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as ONNX, with a dynamic batch axis.

    The graph's input is ``images`` and its output ``logits``. Run it with
    onnxruntime: ``session.run(None, {"images": x.numpy()})[0]``.

    The destination is checked before the export runs (its folder must exist and be
    writable), and torch's progress lines are kept out of the output.

    Args:
        model: The model to export (e.g. ``FashionMLP.from_pretrained(run)``).
        path: The ``.onnx`` file to write (atomically).
        overwrite: Replace an earlier export (a ``.onnx`` file) at ``path``; without it an
            existing file is refused, and a file of another kind is refused even with it.

    Raises:
        MissingExtraError: onnx or onnxscript is not installed.
        InvalidArgumentError: ``path`` exists and ``overwrite`` is false or it is no
            ``.onnx`` file, or its folder is missing.
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
    _check_destination(path, overwrite)
    example = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, device=model_device(model))
    # torch.onnx prints its progress ("[torch.onnx] Obtain model graph ...") on stdout.
    with eval_mode(model), contextlib.redirect_stdout(io.StringIO()):
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
        raise CheckpointError(f"cannot write {path}: {os_error_fix(exc, 'file')}") from exc
    return path


def _check_destination(path: Path, overwrite: bool) -> None:
    """Refuse a destination the export could not write, or should not, before it runs."""
    check_name(path, error=InvalidArgumentError)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InvalidArgumentError(
                f"{path} exists; choose another file, or allow replacing it (overwrite=True)"
            )
        if path.suffix != ".onnx" or not path.is_file():
            raise InvalidArgumentError(
                f"{path} is not an earlier export (a .onnx file): overwrite replaces only "
                "those; choose another file"
            )
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"{path}: its folder {path.parent} does not exist; create it")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass  # the folder takes a new file: the real write will too, disk space allowing
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {os_error_fix(exc, 'file')}") from exc
