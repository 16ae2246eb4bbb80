"""Reading only regular files, writing files so that a reader never sees half of one, and
saying why either failed."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temporary_prefix(name: str) -> str:
    """How the name of :func:`atomic_write`'s temporary file for ``name`` begins.

    Seen in a folder, such a file is a write of ``name`` in progress in another process,
    or one that a process killed mid-write (``kill -9``) left behind.
    """
    return f".{name}."


def atomic_write(path: Path, data: bytes | memoryview, *, replace: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder, then move it in.

    A crash or exception at any point leaves ``path`` as it was and no temporary file
    behind. With ``replace`` an existing ``path`` is replaced (atomically, by rename);
    without it an existing ``path`` is kept and the new content dropped. The file gets the
    usual permissions (0666 less the umask), not the temporary file's private 0600.

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
    errno.ENAMETOOLONG: ("the name is too long", "choose another {place}, with a shorter name"),
}


def os_error_fix(exc: OSError, place: str = "folder") -> str:
    """Why writing failed, in words, and what to do: ``"the disk is full: free some space,
    or choose another {place}"``."""
    reason, fix = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "choose another {place}"))
    return f"{reason}: {fix.format(place=place)}"


@contextlib.contextmanager
def open_regular(path: Path, *, error: type[Exception], what: str = "file") -> Iterator[IO[bytes]]:
    """``path`` opened for reading, if it is a regular file.

    Anything else is refused before a byte is read: a FIFO or a terminal (reading one
    could wait forever), a device (``/dev/zero`` never ends), a folder, a name too long. The
    file is opened without blocking and checked on the open handle, so it cannot be swapped
    in between.

    Raises:
        error: ``path`` is missing, not a regular file or unreadable; the message names it
            and says which.
    """
    check_name(path, error=error)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file or folder") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; give a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with open(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{path}: is a folder; give a {what}")
        if not stat.S_ISREG(mode):
            raise error(f"{path}: is not a regular file ({_kind(mode)}); give a {what}")
        yield handle


def read_regular_file(
    path: Path, *, limit: int, error: type[Exception], what: str = "file"
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (see
    :func:`open_regular` for what is refused).

    Raises:
        error: ``path`` is missing, not a regular file, larger than ``limit`` or
            unreadable; the message names it and says which.
    """
    with open_regular(path, error=error, what=what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:  # said before reading: read() would first allocate all of it
            raise error(
                f"{path}: is {size / 2**20:,.0f} MiB, more than the {limit / 2**20:,.0f} MiB "
                f"a {what} may be"
            )
        try:
            return handle.read(size)
        except OSError as exc:
            raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None


#: The longest name of one file or folder most file systems take, in bytes.
NAME_MAX = 255


def check_name(path: str | os.PathLike[str], *, error: type[Exception]) -> None:
    """Refuse a path with a part longer than a file system allows, before the operating
    system says "File name too long" from somewhere deep.

    Raises:
        error: A part of ``path`` is longer than :data:`NAME_MAX` bytes.
    """
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise error(
                f"{path}: the name {part[:24]}… is {size} bytes long, more than the "
                f"{NAME_MAX} a file system allows for one name; choose a shorter one"
            )


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


def lock_exclusive(handle: IO[str]) -> None:
    """Lock ``handle``'s file for this process without waiting; OSError if another holds it.

    The operating system frees the lock when the process ends, however it ends.
    """
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_path(path: Path) -> None:
    """Remove a file or a folder with its contents, if there."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
