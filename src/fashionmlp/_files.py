"""Reading only regular files, writing files so that a reader never sees half of one, and
saying why either failed."""

from __future__ import annotations

import errno
import os
import stat
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
    import tempfile  # here: the command line's start-up does without it

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


def read_regular_file(
    path: Path, *, limit: int, error: type[Exception], what: str = "file"
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Anything else is refused before a byte is read: a FIFO or a terminal (reading one
    could wait forever), a device (``/dev/zero`` never ends), a folder. The file is opened
    without blocking and checked on the open handle, so it cannot be swapped in between.

    Raises:
        error: ``path`` is missing, not a regular file, larger than ``limit`` or
            unreadable; the message names it and says which.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder; give a {what}") from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc})") from None
    with open(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path} is a folder; give a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path} is not a regular {what} ({_kind(info.st_mode)}); give a {what}")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{path} cannot be read ({exc.strerror or exc})") from None
        if len(data) > limit:
            raise error(f"{path} is over {limit:,} bytes, too large for a {what} of ours")
        return data


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
