"""Model folders that travel: Hugging Face's ``save_pretrained`` / ``from_pretrained``, the
Hub, and the model card.

A *pretrained folder* is Hugging Face's layout: ``config.json`` (the model's constructor
arguments, its ``model_type`` and file format first), ``model.safetensors`` (the weights)
and ``README.md``, the model card. safetensors files hold tensors only and the config is
JSON, so loading a folder never runs code from it; each file carries the checksum of the
other, so a changed byte in either is found. :class:`PretrainedMixin` gives a model class
the three methods (``save_pretrained``, ``from_pretrained``, ``push_to_hub``), as
``PyTorchModelHubMixin`` does; :class:`~fashionmlp.FashionMLP` is such a class, and so can
be a model of yours. A ``config.json`` of an older format loads (its settings upgraded), one
of a newer format is refused in one line.

The card is YAML front matter the Hub reads (``library_name``, ``tags``, ``datasets``,
``metrics``, and a ``model-index`` with the test accuracy when it is known), then what the
model is, its parameter count, the recipe it was trained with, its figures per class, how
to load it, and what it is for; ``from_pretrained`` ignores it. A ``README.md`` that is not
a card of ours (its front matter does not say ``library_name: fashionmlp``) is never
replaced. The Hub needs the ``hub`` extra (``pip install 'fashionmlp[hub]'``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from typing_extensions import Self

from ._files import atomic_write, check_name, os_error_fix, read_regular_file
from .checkpoint import _SAFETENSORS, describe_file, load_checkpoint, load_state
from .config import (
    CLASSES,
    FORMAT_VERSION,
    IMAGE_SIZE,
    TEST_IMAGES,
    file_format,
    flat,
    from_dict,
    stamped,
    to_dict,
)
from .errors import CheckpointError, InvalidArgumentError, MissingExtraError
from .records import EvalResult

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "WEIGHTS_DIGEST",
    "WEIGHTS_FILE",
    "Pretrained",
    "PretrainedMixin",
    "download",
    "is_model_card",
    "is_repo_id",
    "model_card",
    "read_pretrained",
    "upload",
    "write_model_card",
    "write_pretrained",
    "write_weights",
]

#: The model's constructor arguments, in a pretrained folder.
CONFIG_FILE = "config.json"
#: The model's weights, in a pretrained folder.
WEIGHTS_FILE = "model.safetensors"
#: The model card, in a pretrained folder.
CARD_FILE = "README.md"


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a model class whose
    ``config`` is a settings dataclass (see :mod:`fashionmlp.config`).

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

    def save_pretrained(
        self,
        folder: str | os.PathLike[str],
        *,
        evaluation: EvalResult | None = None,
        split: str = "test",
        recipe: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the model card ``README.md`` to
        ``folder`` (Hugging Face's layout).

        The folder is created if needed; the files are written atomically and replaced if
        there (a ``README.md`` that is not a card of ours is left alone). Load it back with
        :meth:`from_pretrained`, here or in any project; it ignores the card.

        Args:
            folder: Where to write.
            evaluation: The model's evaluation, for the card (its accuracy, per-class
                figures, and on the test set the Hub's ``model-index`` entry).
            split: What ``evaluation`` measured, ``"test"`` or ``"validation"``.
            recipe: The recipe it was trained with (``Recipe.to_dict()``), for the card.

        Raises:
            CheckpointError: The folder cannot be created or written.

        Example:
            >>> import tempfile
            >>> from fashionmlp import FashionMLP
            >>> folder = FashionMLP(hidden_features=64).save_pretrained(tempfile.mkdtemp())
            >>> FashionMLP.from_pretrained(folder).config.hidden_features
            64
            >>> (folder / "README.md").read_text().splitlines()[1]
            'library_name: fashionmlp'
        """
        written = write_pretrained(folder, self._config_document(), self._state())
        card = self.model_card(str(folder), evaluation=evaluation, split=split, recipe=recipe)
        write_model_card(written, card)
        return written

    def _config_document(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **stamped(to_dict(self.config))}

    def _state(self) -> dict[str, torch.Tensor]:
        assert isinstance(self, nn.Module)
        return self.state_dict()

    def model_card(self, where: str = ".", **facts: Any) -> str:
        """The model's card (see :func:`fashionmlp.pretrained.model_card`, which takes
        ``facts``), its loading example naming ``where``."""
        parameters = sum(tensor.numel() for tensor in self._state().values())
        return model_card(self._config_document(), parameters, where=where, **facts)

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
            config: Any = from_dict(cls.config_class, found.config, format=found.format)
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
        with tempfile.TemporaryDirectory() as folder:
            # save_pretrained's files, the card's loading example naming the repository
            write_pretrained(folder, self._config_document(), self._state())
            write_model_card(folder, self.model_card(repo_id))
            return upload(
                Path(folder),
                repo_id,
                token,
                private=private,
                revision=revision,
                commit_message=commit_message,
            )


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
    #: The file format the config was written in (1 is fashionmlp 0.1.0's).
    format: int = FORMAT_VERSION


#: ``config.json``'s key for the SHA-256 of ``model.safetensors``' bytes; the weights file's
#: metadata holds the SHA-256 of ``config.json``'s bytes (this key's value read as 64
#: zeros), so that each file's every byte is covered by a checksum in the other.
WEIGHTS_DIGEST, _CONFIG_DIGEST = "weights_sha256", "fashionmlp.config_sha256"
_UNSEALED = "0" * 64


def write_pretrained(
    folder: str | os.PathLike[str], config: dict[str, Any], state: dict[str, torch.Tensor]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` to ``folder`` (created if needed).

    Each file holds the SHA-256 of the other's bytes (``config.json`` its ``weights_sha256``,
    the weights file its metadata), so that a byte changed in either afterwards is found
    when they are read.

    Raises:
        CheckpointError: The folder cannot be created or written.
    """
    from safetensors.torch import save

    folder = Path(folder)
    unsealed = (json.dumps({**config, WEIGHTS_DIGEST: _UNSEALED}, indent=2) + "\n").encode()
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    metadata = {"format": "pt", _CONFIG_DIGEST: hashlib.sha256(unsealed).hexdigest()}
    weights = save(tensors, metadata=metadata)
    document = unsealed.replace(_UNSEALED.encode(), hashlib.sha256(weights).hexdigest().encode())
    _write(folder, WEIGHTS_FILE, weights)
    _write(folder, CONFIG_FILE, document)
    return folder


def write_weights(folder: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` alone as ``folder/model.safetensors`` (the folder created if needed),
    for a model that has no config to go with it.

    Raises:
        CheckpointError: The folder cannot be created or written.
    """
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    _write(folder, WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
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
    check_name(path, error=CheckpointError)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return _read_folder(path, model)
        if (path / "checkpoint.pt").is_file():
            raise CheckpointError(
                f"{path} holds an unfinished run (no {WEIGHTS_FILE} yet): finish it, or load "
                f"its last checkpoint on purpose with from_pretrained('{path / 'checkpoint.pt'}')"
            )
        raise CheckpointError(
            f"{path} holds no {WEIGHTS_FILE}; give a folder written by model.save_pretrained() "
            "or by fashionmlp train, or a checkpoint file"
        )
    if os.path.lexists(path):  # a file, or something else there that is refused as it is
        if path.suffix == ".safetensors":
            return _read_folder(path.parent, model, weights=path)
        return _read_checkpoint(path)
    if is_repo_id(str(name_or_path)):
        files = (CONFIG_FILE, WEIGHTS_FILE)
        folder = download(str(name_or_path), files, revision, cache_dir, token, local_files_only)
        return _read_folder(folder, model)
    raise CheckpointError(f"{name_or_path}: no such file or folder")


def _read_folder(
    folder: Path, model: type[PretrainedMixin], weights: Path | None = None
) -> Pretrained:
    from safetensors import SafetensorError
    from safetensors.torch import load

    weights = weights or folder / WEIGHTS_FILE
    config_file = folder / CONFIG_FILE
    if not config_file.exists():
        raise CheckpointError(
            f"{config_file} is missing: {weights.name} needs the config.json written beside it "
            "by save_pretrained()"
        )
    text = read_regular_file(config_file, limit=_MAX_CONFIG_BYTES, error=CheckpointError)
    document = _config_document(config_file, text, model)
    saved = {k: v for k, v in document.items() if k not in ("model_type", WEIGHTS_DIGEST)}
    # A newer format is said first: its files may be sealed in a way this version does not know.
    config, format = file_format(saved, str(config_file), CheckpointError)
    kind = describe_file(weights)
    if kind != _SAFETENSORS:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({kind}); {_AGAIN}")
    data = read_regular_file(weights, limit=_MAX_WEIGHTS_BYTES, error=CheckpointError)
    _check_seals(config_file, text, document, weights, data)
    try:
        state = load(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file ({exc}); {_AGAIN}"
        ) from None
    return Pretrained(config, state, str(config_file), str(weights), format)


#: A config.json larger than this is not one of ours.
_MAX_CONFIG_BYTES = 1 << 20
_AGAIN = "write them again with model.save_pretrained() (or train again)"


def _config_document(config_file: Path, text: bytes, model: type[PretrainedMixin]) -> Any:
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise CheckpointError(
            f"{config_file} is not valid JSON ({reason}); it is damaged: {_AGAIN}"
        ) from None
    if not isinstance(document, dict) or document.get("model_type") != model.model_type:
        found = document.get("model_type") if isinstance(document, dict) else None
        raise CheckpointError(
            f"{config_file} is not a {model.__name__} config (model_type {found!r}, expected "
            f"{model.model_type!r}); load that model with the library that made it"
        )
    return document


def _check_seals(
    config_file: Path, text: bytes, document: dict[str, Any], weights: Path, data: bytes
) -> None:
    """Refuse the two files unless each one's checksum in the other matches its bytes.

    Raises:
        CheckpointError: A checksum is missing or does not match (the files were changed
            or damaged after they were written), or the weights' header is unreadable.
    """
    digest = document.get(WEIGHTS_DIGEST)
    if not isinstance(digest, str) or text.count(digest.encode()) != 1:
        raise CheckpointError(
            f"{config_file} holds no {WEIGHTS_DIGEST} checksum (it was not written by "
            f"save_pretrained() of this library, or it is damaged); {_AGAIN}"
        )
    if hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"{weights} does not match the checksum in {config_file.name}: one of them was "
            f"changed or damaged after save_pretrained() wrote both; {_AGAIN}"
        )
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        sealed = header.get("__metadata__", {}).get(_CONFIG_DIGEST)
    except (ValueError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{weights} has a damaged header ({exc}); {_AGAIN}") from None
    unsealed = text.replace(digest.encode(), _UNSEALED.encode())
    if sealed != hashlib.sha256(unsealed).hexdigest():
        raise CheckpointError(
            f"{config_file} does not match the checksum in {weights.name}: one of them was "
            f"changed or damaged after save_pretrained() wrote both; {_AGAIN}"
        )


#: A weights file larger than this is refused (a FashionMLP of ours is a few MB).
_MAX_WEIGHTS_BYTES = 4 << 30


def _read_checkpoint(path: Path) -> Pretrained:
    checkpoint = load_checkpoint(path)
    if checkpoint.model_config is None:
        raise CheckpointError(
            f"{path} holds weights but not the model's config, so the architecture is "
            "unknown; build the model yourself and load them with "
            "load_checkpoint(path, model)"
        )
    return Pretrained(
        checkpoint.model_config, checkpoint.model_state, str(path), str(path), checkpoint.format
    )


# --- the Hugging Face Hub ------------------------------------------------------------------

#: A Hugging Face Hub repository id: ``user/repo``.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` reads as a Hub repository id, ``user/repo``."""
    return _REPO_ID.fullmatch(name) is not None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError(
            "the Hugging Face Hub needs the hub extra: pip install 'fashionmlp[hub]'"
        ) from None
    return huggingface_hub


def download(
    repo_id: str,
    files: Sequence[str],
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    token: str | None,
    local_files_only: bool,
) -> Path:
    """The local folder holding ``files`` of the repository ``repo_id``, downloaded (or found
    in the cache) as ``hf_hub_download`` does.

    Raises:
        CheckpointError: The Hub could not be reached or has no such files.
        MissingExtraError: huggingface_hub is not installed.
    """
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
            for name in files
        ]
    except Exception as exc:  # network and Hub errors come in many types; all mean "not there"
        raise CheckpointError(
            f"{repo_id}: no such local file or folder, and it could not be had from the "
            f"Hugging Face Hub ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from exc
    return Path(paths[-1]).parent


def upload(
    folder: Path,
    repo_id: str,
    token: str | None,
    *,
    private: bool | None,
    revision: str | None,
    commit_message: str,
) -> str:
    """Upload ``folder``'s files to the repository ``repo_id`` (created if needed); return
    the commit's URL.

    Raises:
        CheckpointError: The Hub refused or could not be reached.
        MissingExtraError: huggingface_hub is not installed.
    """
    hub = _hub()
    api = hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
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


# --- the model card --------------------------------------------------------------------------

_OURS = "library_name: fashionmlp"
_DATASET = "zalando-datasets/fashion_mnist"
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
    whole_test = evaluation is not None and split == "test" and evaluation.total == TEST_IMAGES
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
