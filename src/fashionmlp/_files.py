"""Writing files so that a reader never sees half of one; saying why a write failed."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def temporary_prefix(name: str) -> str:
    """How the name of :func:`atomic_write`'s temporary file for ``name`` begins.

    Seen in a folder, such a file is a write of ``name`` in progress in another process,
    or one that a process killed mid-write (``kill -9``) left behind.
    """
    return f".{name}."


def atomic_write(path: Path, data: bytes | memoryview, *, replace: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder, then move it in.

    A crash or exception at any point leaves ``path`` as it was and no temporary file
    behind. With ``replace`` an existing ``path`` is replaced (atomically, by rename); without it an existing ``path`` is
    kept and the new content dropped. The file gets the usual permissions (0666 less the
    umask), not the temporary file's private 0600.

    Raises:
        OSError: The folder is missing or not writable, or the disk is full.
    """
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=temporary_prefix(path.name), delete=False
    )
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        if replace:
            os.replace(handle.name, path)
            return
        try:
            # link() fails if the target exists, so a file someone else put there is
            # never replaced, even if it appeared while this one was being written.
            os.link(handle.name, path)
        except FileExistsError:
            pass
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


_REASONS = {
    errno.ENOSPC: ("the disk is full", "free some space, or choose another {place}"),
    errno.EDQUOT: ("the disk quota is used up", "free some space, or choose another {place}"),
    errno.EROFS: ("the file system is read-only", "choose another {place}, on a writable one"),
    errno.EACCES: ("permission denied", "choose another {place}, one you can write to"),
    errno.EPERM: ("permission denied", "choose another {place}, one you can write to"),
}


def os_error_fix(exc: OSError, place: str = "folder") -> str:
    """Why writing failed, in words, and what to do: ``"the disk is full: free some space,
    or choose another {place}"``."""
    reason, fix = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "choose another {place}"))
    return f"{reason}: {fix.format(place=place)}"
