"""Model folders that travel: Hugging Face's ``save_pretrained`` / ``from_pretrained``.

A *pretrained folder* is Hugging Face's layout: ``config.json`` (the model's constructor
arguments, its ``model_type`` first) and ``model.safetensors`` (the weights). safetensors
files hold tensors only and the config is JSON, so loading a folder never runs code from
it. :class:`PretrainedMixin` gives a model class the three methods
(``save_pretrained``, ``from_pretrained``, ``push_to_hub``), as ``PyTorchModelHubMixin``
does; :class:`~fashionmlp.FashionMLP` is such a class, and so can be a model of yours.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from typing_extensions import Self

from . import settings
from ._files import atomic_write, os_error_fix
from .checkpoint import _SAFETENSORS, describe_file, load_checkpoint, load_state
from .errors import CheckpointError, InvalidArgumentError, MissingExtraError

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "Pretrained",
    "PretrainedMixin",
    "read_pretrained",
    "write_pretrained",
    "write_weights",
]

#: The model's constructor arguments, in a pretrained folder.
CONFIG_FILE = "config.json"
#: The model's weights, in a pretrained folder.
WEIGHTS_FILE = "model.safetensors"
#: A Hugging Face Hub repository id: ``user/repo``.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a model class whose
    ``config`` is a settings dataclass (see :mod:`fashionmlp.settings`).

    A class using it sets :attr:`model_type` and :attr:`config_class`, keeps its config in
    ``self.config`` and builds itself from one with ``from_config``; it may override
    :meth:`expected_shapes` so that weights of another shape are refused before the model
    is built.
    """

    #: ``model_type`` in ``config.json``, as Hugging Face configs name their kind of model.
    model_type: ClassVar[str]
    #: The class of :attr:`config`.
    config_class: ClassVar[type]
    #: What the model was built with.
    config: Any

    @classmethod
    def from_config(cls, config: Any) -> Self:
        """A new (untrained) model built with ``config``."""
        raise NotImplementedError

    @classmethod
    def expected_shapes(
        cls, config: Any, found: dict[str, tuple[int, ...]]
    ) -> dict[str, tuple[int, ...]] | None:
        """The weights a model of ``config`` has, by name, or ``None`` when it cannot say
        without building one; ``found`` is what the file holds.

        Raises:
            CheckpointError: ``found`` cannot belong to ``config`` (the message says why, as
                the weights file would: ``"holds 8 tensors, too few for ..."``).
        """
        return None

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``folder`` (Hugging Face's layout).

        The folder is created if needed; the two files are written atomically and replaced
        if there. Load it back with :meth:`from_pretrained`, here or in any project.

        Raises:
            CheckpointError: The folder cannot be created or written.

        Example:
            >>> import tempfile
            >>> from fashionmlp import FashionMLP
            >>> folder = FashionMLP(hidden_features=64).save_pretrained(tempfile.mkdtemp())
            >>> FashionMLP.from_pretrained(folder).config.hidden_features
            64
        """
        assert isinstance(self, nn.Module)
        config = {"model_type": self.model_type, **settings.to_dict(self.config)}
        return write_pretrained(folder, config, self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        local_files_only: bool = False,
    ) -> Self:
        """Load a trained model, in eval mode, with the architecture and input normalization
        it was trained with.

        ``name_or_path`` is one of: a folder written by :meth:`save_pretrained`; a finished
        ``fashionmlp train`` run folder (it is such a folder); a checkpoint file of ours
        (``checkpoint.pt``, or anything :func:`~fashionmlp.save_checkpoint` wrote for such
        a model); or, with the ``hub`` extra (``pip install 'fashionmlp[hub]'``), a
        Hugging Face Hub repository id ``"user/repo"`` (``revision``, ``cache_dir``,
        ``token`` and ``local_files_only`` go to the download, as for
        ``PyTorchModelHubMixin`` models). Nothing in the files is ever run as code.

        Raises:
            CheckpointError: Nothing loadable is there, or the files are truncated, not of
                the right kind, of another shape (missing, extra or mis-sized weights), or
                their config is not valid JSON or lacks a setting; the message names the
                file and the fix.
        """
        found = read_pretrained(
            name_or_path,
            model=cls,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        try:
            config: Any = settings.from_dict(cls.config_class, found.config)
        except InvalidArgumentError as exc:
            raise CheckpointError(
                f"{found.config_source} does not describe a {cls.__name__} ({exc}); write it "
                "again with model.save_pretrained()"
            ) from exc
        shapes = {name: tuple(tensor.shape) for name, tensor in found.state.items()}
        try:
            expected = cls.expected_shapes(config, shapes)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{found.weights_source} {exc} ({found.config_source}); the files do not "
                "belong together: write them again with model.save_pretrained()"
            ) from None
        if expected is not None and shapes != expected:
            missing = sorted(set(expected) - set(shapes))
            extra = sorted(set(shapes) - set(expected))
            resized = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
            raise CheckpointError(
                f"{found.weights_source} does not fit the model its config describes "
                f"({found.config_source}): missing {missing or 'none'}, unexpected "
                f"{extra or 'none'}, of another size {resized or 'none'}; the files do not "
                "belong together: write them again with model.save_pretrained()"
            )
        model = cls.from_config(config)
        assert isinstance(model, nn.Module)
        load_state(model, found.state, source=found.weights_source)
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload model",
    ) -> str:
        """Upload :meth:`save_pretrained`'s files to the Hugging Face Hub repository
        ``repo_id`` (created if needed); return the commit's URL.

        Needs the ``hub`` extra (``pip install 'fashionmlp[hub]'``) and a token with write
        access (``token``, or ``huggingface-cli login``).

        Raises:
            CheckpointError: The Hub refused or could not be reached.
            MissingExtraError: huggingface_hub is not installed.
        """
        hub = _hub()
        api = hub.HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            with tempfile.TemporaryDirectory() as folder:
                self.save_pretrained(folder)
                commit = api.upload_folder(
                    repo_id=repo_id,
                    folder_path=folder,
                    revision=revision,
                    commit_message=commit_message,
                )
        except Exception as exc:  # network and Hub errors come in many types
            raise CheckpointError(
                f"could not push to {repo_id} on the Hugging Face Hub "
                f"({type(exc).__name__}: {' '.join(str(exc).split())}); check the repository "
                "id, your token (huggingface-cli login) and the connection"
            ) from exc
        return str(getattr(commit, "commit_url", commit))


class Pretrained(NamedTuple):
    """What :func:`read_pretrained` found: a model's config and weights, and where."""

    #: The model's constructor arguments (``model_type`` taken out).
    config: dict[str, Any]
    #: Its weights.
    state: dict[str, torch.Tensor]
    #: The file the config came from (named in errors about it).
    config_source: str
    #: The file the weights came from (named in errors about them).
    weights_source: str


def write_pretrained(
    folder: str | os.PathLike[str], config: dict[str, Any], state: dict[str, torch.Tensor]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` to ``folder`` (created if needed).

    Raises:
        CheckpointError: The folder cannot be created or written.
    """
    folder = write_weights(folder, state)
    document = json.dumps(config, indent=2) + "\n"
    _write(folder, CONFIG_FILE, document.encode())
    return folder


def write_weights(folder: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` as ``folder/model.safetensors`` (the folder created if needed).

    Raises:
        CheckpointError: The folder cannot be created or written.
    """
    from safetensors.torch import save

    folder = Path(folder)
    weights = save(
        {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()},
        metadata={"format": "pt"},
    )
    _write(folder, WEIGHTS_FILE, weights)
    return folder


def _write(folder: Path, name: str, data: bytes) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, data, replace=True)
    except OSError as exc:
        raise CheckpointError(f"cannot write the model to {folder}: {os_error_fix(exc)}") from exc


def read_pretrained(
    name_or_path: str | os.PathLike[str],
    *,
    model: type[PretrainedMixin],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    local_files_only: bool = False,
) -> Pretrained:
    """Find and read a model's config and weights (see ``PretrainedMixin.from_pretrained``).

    Raises:
        CheckpointError: Nothing loadable is there, the config is of another
            ``model_type`` than ``model``'s, or the files are broken; the message names the
            file and the fix.
    """
    path = Path(name_or_path)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return _read_folder(path, model)
        if (path / "checkpoint.pt").is_file():
            raise CheckpointError(
                f"{path} holds an unfinished run (no {WEIGHTS_FILE} yet): finish it with "
                f"fashionmlp train --resume {path}, or load its last checkpoint on purpose "
                f"with FashionMLP.from_pretrained('{path / 'checkpoint.pt'}')"
            )
        raise CheckpointError(
            f"{path} holds no {WEIGHTS_FILE}; give a folder written by model.save_pretrained() "
            "or by fashionmlp train, or a checkpoint file"
        )
    if path.is_file():
        if path.suffix == ".safetensors":
            return _read_folder(path.parent, model, weights=path)
        return _read_checkpoint(path)
    if _HUB_ID.fullmatch(str(name_or_path)):
        folder = _download(str(name_or_path), revision, cache_dir, token, local_files_only)
        return _read_folder(folder, model)
    raise CheckpointError(f"{name_or_path}: no such file or folder")


def _read_folder(
    folder: Path, model: type[PretrainedMixin], weights: Path | None = None
) -> Pretrained:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = weights or folder / WEIGHTS_FILE
    config_file = folder / CONFIG_FILE
    try:
        document = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{config_file} is missing: {weights.name} needs the config.json written beside it "
            "by save_pretrained()"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"{config_file} is not valid JSON ({exc}); it is damaged: write it again with "
            "model.save_pretrained()"
        ) from exc
    if not isinstance(document, dict) or document.get("model_type") != model.model_type:
        found = document.get("model_type") if isinstance(document, dict) else None
        raise CheckpointError(
            f"{config_file} is not a {model.__name__} config (model_type {found!r}, expected "
            f"{model.model_type!r}); load that model with the library that made it"
        )
    kind = describe_file(weights)
    if kind != _SAFETENSORS:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file ({kind}); write it again with "
            "model.save_pretrained()"
        )
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file (damaged or truncated: {exc}); "
            "write it again with model.save_pretrained()"
        ) from exc
    config = {key: value for key, value in document.items() if key != "model_type"}
    return Pretrained(config, state, str(config_file), str(weights))


def _read_checkpoint(path: Path) -> Pretrained:
    checkpoint = load_checkpoint(path)
    if checkpoint.model_config is None:
        raise CheckpointError(
            f"{path} holds weights but not the model's config, so the architecture is "
            "unknown; build the model yourself and load them with "
            "load_checkpoint(path, model)"
        )
    return Pretrained(checkpoint.model_config, checkpoint.model_state, str(path), str(path))


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(
            "the Hugging Face Hub needs the hub extra: pip install 'fashionmlp[hub]'"
        ) from None
    return huggingface_hub


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    token: str | None,
    local_files_only: bool,
) -> Path:
    hub = _hub()
    try:
        paths = [
            hub.hf_hub_download(
                repo_id,
                name,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
            )
            for name in (CONFIG_FILE, WEIGHTS_FILE)
        ]
    except Exception as exc:  # network and Hub errors come in many types; all mean "not there"
        raise CheckpointError(
            f"{repo_id}: no such local file or folder, and it could not be had from the "
            f"Hugging Face Hub ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from exc
    return Path(paths[1]).parent
