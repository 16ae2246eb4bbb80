"""Training checkpoints: weights and the state to resume, in one file.

A *checkpoint* is a plain dict of tensors and JSON-like values written with
:func:`torch.save` (:func:`save_checkpoint`), so it loads with
``torch.load(path, weights_only=True)`` and loading never runs code from the file. It
carries the model's config (for a model with a settings ``config``, such as a
:class:`~fashionmlp.FashionMLP`), so the model can be rebuilt from it alone (see
:mod:`fashionmlp.pretrained`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._files import atomic_write, open_regular, os_error_fix, read_regular_file
from ._version import __version__
from .config import FORMAT_KEY, FORMAT_VERSION, WRITER_KEY, file_format, to_dict
from .errors import CheckpointError

__all__ = ["Checkpoint", "describe_file", "load_checkpoint", "load_state", "save_checkpoint"]

#: What a checkpoint of ours says it is; its ``version`` is the file format it was
#: written in (:data:`~fashionmlp.config.FORMAT_VERSION`).
_FORMAT = "fashionmlp-checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`~fashionmlp.load_checkpoint` read."""

    #: The model's ``state_dict``.
    model_state: dict[str, torch.Tensor]
    #: The optimizer's ``state_dict``, if one was saved.
    optimizer_state: dict[str, Any] | None = None
    #: The learning-rate scheduler's ``state_dict``, if one was saved.
    scheduler_state: dict[str, Any] | None = None
    #: The number of epochs finished when it was saved.
    epoch: int | None = None
    #: The run's settings, as saved.
    config: dict[str, Any] = field(default_factory=dict)
    #: Anything else saved for resuming (random-number-generator states, history).
    state: dict[str, Any] = field(default_factory=dict)
    #: The constructor arguments of the model when it was a ``FashionMLP``
    #: (see :class:`~fashionmlp.FashionMLPConfig`), else ``None``.
    model_config: dict[str, Any] | None = None
    #: The file format it was written in (1 is fashionmlp 0.1.0's); its settings are of
    #: that format (``RunConfig.from_dict(checkpoint.config, format=checkpoint.format)``).
    format: int = FORMAT_VERSION
    #: The file it was read from, as errors name it.
    source: str = ""

    def restore(
        self,
        model: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        """Load the saved states into what is given.

        Raises:
            CheckpointError: The weights do not fit ``model``, or an optimizer or scheduler
                is given and no state of theirs was saved, or another kind's was.
        """
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the module
        if model is not None:
            load_state(model, self.model_state, source=self.source)
        if optimizer is not None:
            if self.optimizer_state is None:
                raise CheckpointError(f"{self.source} holds no optimizer state to resume from")
            _load_optimizer_state(optimizer, self.optimizer_state, self.source)
        if scheduler is not None:
            if self.scheduler_state is None:
                raise CheckpointError(f"{self.source} holds no scheduler state to resume from")
            scheduler.load_state_dict(self.scheduler_state)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int | None = None,
    config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write the model's weights (and optionally training state) to ``path`` atomically.

    The file is written under a temporary name in the same folder and renamed over
    ``path`` only once complete, so a crash mid-write leaves any earlier file intact. For a
    :class:`~fashionmlp.FashionMLP` the model's config is kept too, so that
    :meth:`FashionMLP.from_pretrained <fashionmlp.pretrained.PretrainedMixin.from_pretrained>`
    can rebuild it.

    Args:
        path: The file to write; its folder must exist.
        model: Its ``state_dict()`` is saved.
        optimizer: Its ``state_dict()`` is saved too, when given.
        scheduler: Its ``state_dict()`` is saved too, when given.
        epoch: Epochs finished, for resuming.
        config: JSON-like settings to keep with the weights.
        state: More to keep for resuming: tensors (such as ``torch.get_rng_state()``),
            and plain values, lists and dicts of them.

    Raises:
        CheckpointError: The file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> from fashionmlp import FashionMLP, load_checkpoint, save_checkpoint
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_checkpoint(folder / "model.pt", FashionMLP(), epoch=3)
        >>> load_checkpoint(folder / "model.pt", FashionMLP()).epoch
        3
    """
    path = Path(path)
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the module itself
    model_config = getattr(model, "config", None)  # a FashionMLP's, or any settings object
    try:
        # Only JSON-like values load under weights_only=True, so check that now,
        # not when someone tries to resume.
        plain_config = json.loads(json.dumps(config or {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config must hold only JSON-like values: {exc}") from exc
    payload: dict[str, Any] = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        WRITER_KEY: __version__,
        "model": model.state_dict(),
        "model_config": (
            to_dict(model_config)
            if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type)
            else None
        ),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": plain_config,
        "state": dict(state or {}),
    }
    # Serialised in memory first: torch.save reports a full disk as a RuntimeError from its
    # zip writer, while a plain write of the bytes says OSError(ENOSPC).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic_write(path, _seal(buffer.getvalue()), replace=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {os_error_fix(exc)} (any earlier checkpoint "
            "there is intact)"
        ) from exc
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; load it into what is given.

    ``model``, ``optimizer`` and ``scheduler``, when given, get their saved state (or
    later, :meth:`~fashionmlp.checkpoint.Checkpoint.restore`). A checkpoint of an older file format is read as it
    is, and one of a newer format refused.

    A bare ``state_dict`` (as ``torch.save(model.state_dict(), path)`` writes) is
    accepted too.

    Raises:
        CheckpointError: The file is missing, not a checkpoint, carries objects that are
            not plain weights (refused unloaded), or does not fit ``model``.
    """
    path = Path(path)
    checkpoint = _parse(path, _read_payload(path, map_location))
    checkpoint.restore(model, optimizer, scheduler)
    return checkpoint


def _read_payload(path: Path, map_location: str | torch.device) -> object:
    """What ``torch.save`` wrote to ``path``, read with ``weights_only=True`` once its kind
    and its checksums are found right.

    A checkpoint of ours carries the SHA-256 of its bytes (:func:`_seal`); another zip
    archive (a ``torch.save(model.state_dict())`` of your own) has its records' CRC-32
    checksums checked, which torch's own reader does not look at, so that a byte changed on
    disk inside a tensor cannot load as a silently different weight.
    """
    kind = describe_file(path)
    if kind not in (_ZIP, _PICKLE):  # torch.save writes a zip; older versions a pickle
        raise CheckpointError(f"{path} is not a fashionmlp checkpoint or weights file ({kind})")
    data = read_regular_file(path, limit=_MAX_CHECKPOINT_BYTES, error=CheckpointError)
    sealed = kind == _ZIP and _check_seal(path, data)
    if kind == _ZIP and not sealed:
        _check_archive(path, data)
    try:
        with warnings.catch_warnings():
            # torch warns about a pickle's old format before it refuses it: our one line is
            # all there is to say.
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint (a damaged pickle: "
                f"{' '.join(str(exc).split())[:200]})"
            ) from exc
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values ({found.group(1)}), so "
            "it was refused without running them; only load files from sources you trust"
        ) from exc
    except Exception as exc:  # torch reports damaged files in many types; each means that
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (damaged or truncated: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from exc
    if isinstance(payload, dict) and payload.get("format") == _FORMAT and not sealed:
        raise CheckpointError(f"{path} has lost its checksum: it is damaged; {_DAMAGED}")
    return payload


#: A checkpoint larger than this is refused before it is read.
_MAX_CHECKPOINT_BYTES = 16 << 30
_DAMAGED = "use an earlier copy of it, or start the run again"
#: A zip archive's end-of-central-directory record: its signature, and its length without
#: the comment that ends it.
_END, _END_SIZE = b"PK\x05\x06", 22
#: How a checkpoint's zip comment begins: the SHA-256 of the archive follows.
_SEAL = b"fashionmlp-sha256:"


def _seal(archive: bytes) -> bytes:
    """``archive`` (``torch.save``'s zip) with the SHA-256 of its bytes as its zip comment,
    which zip readers, torch's included, skip."""
    if archive[-_END_SIZE:][:4] != _END or archive[-2:] != b"\x00\x00":
        raise CheckpointError("torch.save wrote an archive of an unknown layout; cannot seal it")
    comment = _SEAL + hashlib.sha256(archive).hexdigest().encode()
    return archive[:-2] + len(comment).to_bytes(2, "little") + comment


def _check_seal(path: Path, data: bytes) -> bool:
    """Whether ``data`` carries our seal; refused if it carries one that does not match.

    Raises:
        CheckpointError: The seal's checksum differs from the archive's bytes.
    """
    length = len(_SEAL) + 64
    end = len(data) - length - _END_SIZE
    if end < 0 or data[end : end + 4] != _END or not data[-length:].startswith(_SEAL):
        return False
    archive = data[: -length - 2] + b"\x00\x00"
    if hashlib.sha256(archive).hexdigest().encode() != data[-64:]:
        raise CheckpointError(
            f"{path} is damaged: its bytes do not match their checksum (a changed or lost byte "
            f"on disk); {_DAMAGED}"
        )
    return True


def _check_archive(path: Path, data: bytes) -> None:
    """Refuse a zip archive one of whose records does not match its CRC-32 checksum."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        ValueError,
        KeyError,
        NotImplementedError,
    ) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); {_DAMAGED}") from None
    if bad is not None:
        raise CheckpointError(
            f"{path} is damaged: its record {bad} does not match its checksum (a changed or "
            f"lost byte on disk); {_DAMAGED}"
        )


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str
) -> None:
    """Load ``state`` into ``optimizer``, refusing the state of another kind of optimizer.

    torch fills in settings newer than a checkpoint (an older torch's Adam lacked some); a
    setting it cannot fill means the state is another optimizer's (SGD's has no ``betas``),
    which torch itself would only notice at the first step, as a ``KeyError``. A refused
    state leaves ``optimizer`` as it was.
    """
    wanted = [set(group) for group in optimizer.param_groups]
    before = optimizer.state_dict()
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # Damage shows as whichever error the first bad value causes; torch builds the
        # new state before it replaces the old, so a failed load changes nothing.
        raise CheckpointError(
            f"{path}: its optimizer state does not fit this optimizer "
            f"({type(exc).__name__}: {exc}); resume with the optimizer it was saved with"
        ) from exc
    missing = set().union(*(want - set(got) for want, got in zip(wanted, optimizer.param_groups)))
    if missing:
        optimizer.load_state_dict(before)
        raise CheckpointError(
            f"{path}: its optimizer state is another kind of optimizer's (it has no "
            f"{', '.join(sorted(missing))} for {type(optimizer).__name__}); resume with the "
            "optimizer it was saved with"
        )


def load_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly: every weight there, none left over, all sizes
    right, every value finite.

    Raises:
        CheckpointError: Weights are missing, left over, of other sizes, or NaN or infinite;
            names ``source``.
    """
    broken = [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if broken:
        raise CheckpointError(
            f"{source} holds NaN or infinite weights ({', '.join(broken[:3])}): the run that "
            "saved them diverged, or the file is damaged; use weights from before that, or "
            "train again (with a lower learning rate if the loss diverged)"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source} does not fit this model (another architecture?): "
            + " ".join(str(exc).split())
        ) from exc


def _is_state_dict(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


_ZIP = "it is a zip archive, as torch.save writes"
_PICKLE = "it is a pickle, as older torch.save versions write"
_SAFETENSORS = "it is a safetensors file"
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "a program"),
)


def describe_file(path: Path) -> str:
    """What the file is, judged by its first bytes, in words for an error message (the
    ``_ZIP``, ``_PICKLE`` and ``_SAFETENSORS`` strings for the kinds the library reads).

    Raises:
        CheckpointError: There is no such file, or it cannot be read.
    """
    with open_regular(path, error=CheckpointError) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            head = handle.read(512)
        except OSError as exc:
            raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        return "it looks like an empty file"
    if head.startswith(b"PK\x03\x04"):
        return _ZIP if zipfile.is_zipfile(path) else "it looks like a truncated zip archive"
    # Before the pickle's test: a header's length can begin with the pickle's first bytes.
    header = int.from_bytes(head[:8], "little")
    if head[8:10] == b'{"' and 0 < header <= size - 8:
        return _SAFETENSORS
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode, protocol 2-5
        return _PICKLE
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return f"it looks like {kind}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut short by the 512 bytes
            return "it looks like binary data of an unknown kind"
        text = head[: exc.start].decode("utf-8")
    return "it looks like JSON" if text.lstrip()[:1] in ("{", "[") else "it looks like text"


def _parse(path: Path, payload: object) -> Checkpoint:
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint (it holds a {type(payload).__name__})")
    if payload.get("format") == _FORMAT:
        # Its "version" is the file format (our files' format_version, by another name).
        stamp = {FORMAT_KEY: payload.get("version", 1)}
        stamp |= {WRITER_KEY: payload[WRITER_KEY]} if WRITER_KEY in payload else {}
        _, format = file_format(stamp, str(path), CheckpointError)
        expected: dict[str, type | tuple[type, ...]] = {
            "model": dict,
            "optimizer": (dict, type(None)),
            "scheduler": (dict, type(None)),
            "epoch": (int, type(None)),
            "config": dict,
            "state": dict,
            "model_config": (dict, type(None)),
        }
        # An absent optional entry (None allowed) reads as None, as older checkpoints lack some.
        wrong = sorted(k for k, kind in expected.items() if not isinstance(payload.get(k), kind))
        if wrong or not _is_state_dict(payload["model"]):
            raise CheckpointError(
                f"{path} is a damaged fashionmlp checkpoint ({', '.join(wrong) or 'model'} "
                "missing or of the wrong kind); use another copy, or train again"
            )
        return Checkpoint(
            model_state=payload["model"],
            optimizer_state=payload.get("optimizer"),
            scheduler_state=payload.get("scheduler"),
            epoch=payload.get("epoch"),
            config=payload["config"],
            state=payload["state"],
            model_config=payload.get("model_config"),
            format=format,
            source=str(path),
        )
    if payload and _is_state_dict(payload):
        return Checkpoint(model_state=payload, source=str(path))  # a bare state_dict
    raise CheckpointError(f"{path} is not a fashionmlp checkpoint or a model state_dict")
