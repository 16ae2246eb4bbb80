"""What the commands share as they run: one-line failures, and signals during start-up."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "fail", "plural", "received", "startup_signals", "stop_if_interrupted"]


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
    here and :func:`stop_if_interrupted` raises it between steps. A second Ctrl-C leaves
    at once.
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def record(number: int, frame: FrameType | None) -> None:
        global _received
        if _received == signal.SIGINT == number:
            sys.stderr.write("fashionmlp: error: interrupted\n")
            os._exit(128 + signal.SIGINT)
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
