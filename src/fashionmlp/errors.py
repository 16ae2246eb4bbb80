"""Every exception the library raises on purpose.

All of them derive from :class:`FashionMLPError`, so ``except FashionMLPError`` catches
anything the library reports, and each message says what is wrong and how to fix it.
Where a built-in type is the natural one (a bad argument is a :class:`ValueError`),
ours derives from it too, so code that already catches the built-in keeps working.
"""

from __future__ import annotations

__all__ = [
    "FashionMLPWarning",
    "CheckpointError",
    "DatasetError",
    "DatasetNotFoundError",
    "DeviceError",
    "FashionMLPError",
    "ImageError",
    "InputShapeError",
    "InvalidArgumentError",
    "MissingExtraError",
    "NonFiniteLossError",
    "RunExistsError",
    "RunFolderError",
]

from pathlib import Path


class FashionMLPError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidArgumentError(FashionMLPError, ValueError):
    """An argument is out of range or of the wrong kind (a batch size of 0, say)."""


class InputShapeError(InvalidArgumentError):
    """A tensor given to :class:`~fashionmlp.FashionMLP` has a shape or dtype it cannot take."""


class DatasetError(FashionMLPError):
    """A dataset file is missing, unreadable or does not hold what FashionMNIST holds."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No copy of the dataset was found and downloading was not allowed."""


class CheckpointError(FashionMLPError):
    """A checkpoint cannot be written, read, or does not fit the model it is loaded into."""


class RunFolderError(FashionMLPError):
    """A run folder cannot be used: another process is training in it, or its files cannot
    be written (the disk is full or read-only, or permission is denied)."""


class DeviceError(InvalidArgumentError):
    """A device name is malformed or names a device this machine does not have."""


class ImageError(FashionMLPError):
    """An image given to predict cannot be read or turned into a FashionMNIST-style input."""


class MissingExtraError(FashionMLPError, ImportError):
    """A feature needs an optional dependency that is not installed (the message names the
    ``pip install 'fashionmlp[extra]'`` to run)."""


class NonFiniteLossError(FashionMLPError, FloatingPointError):
    """Training produced a NaN or infinite loss (usually: the learning rate is too high)."""


class RunExistsError(InvalidArgumentError):
    """A folder asked for a new run already holds one, finished or interrupted.

    Attributes:
        path: The folder.
        finished: Whether the run there finished (else it can be resumed).
    """

    def __init__(self, path: Path, *, finished: bool) -> None:
        self.path = path
        self.finished = finished
        state = "a finished run" if finished else "an interrupted run"
        hint = "" if finished else " (or resume it: RunFolder.interrupted(path))"
        super().__init__(
            f"{path} already holds {state}; choose another folder, or replace it with "
            f"RunFolder.new(path, overwrite=True){hint}"
        )


class FashionMLPWarning(UserWarning):
    """Something the library left undone while the work went on (a run's plots without
    matplotlib, a tracking server that stopped answering): the command line shows it as one
    line."""
