"""What the commands share as they run: one-line failures, and signals during start-up."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import FashionMLP

__all__ = [
    "Interrupted",
    "fail",
    "load_model",
    "one_line_warnings",
    "plural",
    "received",
    "startup_signals",
    "stop_if_interrupted",
]


def fail(message: str) -> None:
    """Say what failed, on one line of stderr."""
    print(f"fashionmlp: error: {' '.join(message.split())}", file=sys.stderr)


def plural(count: int, noun: str, nouns: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} {noun if count == 1 else nouns}"


class Interrupted(KeyboardInterrupt):
    """A signal received while the command started up, raised at a safe point."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


_received: int | None = None


def received() -> int | None:
    """The signal received during start-up and not yet acted on, if any."""
    return _received


@contextlib.contextmanager
def startup_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM while a command starts up: recorded, acted on at safe points.

    Python raises KeyboardInterrupt wherever the main thread is; inside the import of a C
    extension (torch, numpy) that can leave a half-imported module or abort the process.
    So until training installs its own handling (StopOnSignal), a signal is only recorded
    here and :func:`stop_if_interrupted` raises it between steps. A second signal (Ctrl-C
    or SIGTERM) leaves at once.
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def record(number: int, frame: FrameType | None) -> None:
        global _received
        if _received is not None:  # asked twice: whatever the command is doing, it ends now
            sys.stderr.write("fashionmlp: error: interrupted\n")
            os._exit(128 + number)
        _received = number

    _received = None
    previous = {number: signal.signal(number, record) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_if_interrupted() -> None:
    """Raise the signal recorded during start-up, if any: this is a safe point."""
    if _received is not None:
        raise Interrupted(_received)


def load_model(path: Path) -> FashionMLP:
    """The model a command reads (``FashionMLP.from_pretrained``), an unfinished run folder
    refused in the command line's words: still training, or to be resumed."""
    from .._files import check_name
    from ..errors import CheckpointError
    from ..model import FashionMLP
    from ..runs import CHECKPOINT, WEIGHTS, RunFolder

    check_name(path, error=CheckpointError)
    if path.is_dir() and (path / CHECKPOINT).is_file() and not (path / WEIGHTS).is_file():
        owner = RunFolder(path).owner()
        last = path / CHECKPOINT
        if owner is not None:
            raise CheckpointError(
                f"{path} is in use by a run of {owner}: it is still training; use it once it "
                f"finishes (or its last checkpoint, {last})"
            )
        raise CheckpointError(
            f"{path} holds an unfinished run: finish it with fashionmlp train --resume {path}, "
            f"or use its last checkpoint, {last}"
        )
    return FashionMLP.from_pretrained(path)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show the library's own warnings (a tracking server that stopped answering, say) as
    one line, as its errors are; other warnings as Python shows them."""
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(
            message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
        ) -> None:
            if category.__module__.startswith("fashionmlp"):
                print(f"fashionmlp: warning: {message}", file=sys.stderr, flush=True)
            else:
                previous(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield
