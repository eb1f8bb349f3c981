"""One lmtie process per directory: an exclusive ``flock`` on a lock file.

The kernel drops the lock when its holder exits in any way (also SIGKILL), so a lock file
left behind never blocks a later run; the holder writes its pid into the file so that a
refused run can say who holds it, and removes the file when it releases the lock (a process
that locked a file which was removed meanwhile tries again on the new one). ``lmtie-train`` locks ``SAVE_DIR/.lock`` (rank 0 only under
torchrun); ``lmtie-preprocess`` locks ``.DESTNAME.lock`` beside ``--destdir`` (the destdir is
swapped in by rename, so a lock inside it would be replaced with it).
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from pathlib import Path

from lmtie.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None  # type: ignore[assignment]


class DirLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block, or exiting) drops it."""

    def __init__(self, path: Path, fd: int | None, locked: bool = True):
        self.path = path
        self._fd = fd
        self._locked = locked

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._locked and _same_file(fd, self.path):
                os.unlink(self.path)  # still locked: nobody holds the file, newcomers make a new one
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass


def acquire(lock_path: str | os.PathLike, what: str, remedy: str, wait: bool = False) -> DirLock:
    """Lock ``lock_path`` (created if missing) for this process.

    Held by another process: with ``wait`` block until it is free (saying so once on stderr),
    else raise :class:`UserError` ``"{what}: in use by pid N (lock file ...); {remedy}"``.
    Creating the file fails with the OSError (the caller knows the flag to name); a file
    system without locks gives a warning and an unlocked :class:`DirLock`.
    """
    lock_path = Path(lock_path)
    said_waiting = False
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        if fcntl is None:
            return DirLock(lock_path, fd, locked=False)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise UserError(f"{what}: in use by another lmtie process ({holder}, lock file {lock_path}); "
                                    f"{remedy}")
                if not said_waiting:
                    print(f"{what}: waiting for another lmtie process ({holder}) to finish with it", file=sys.stderr)
                    said_waiting = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                warnings.warn(f"{lock_path}: this file system cannot lock files ({e.strerror}); nothing stops a "
                              f"second process from using {what} at the same time", stacklevel=2)
                return DirLock(lock_path, fd, locked=False)
            if not _same_file(fd, lock_path):  # its holder removed it as it released it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return DirLock(lock_path, fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fd: int) -> str:
    """``pid N`` from the lock file (``pid unknown`` while the holder has not written it yet)."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
