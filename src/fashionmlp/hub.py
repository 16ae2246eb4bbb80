"""The Hugging Face Hub: model folders downloaded from it and uploaded to it (the ``hub``
extra, ``pip install 'fashionmlp[hub]'``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import CheckpointError, MissingExtraError

__all__ = ["download", "is_repo_id", "upload"]

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
