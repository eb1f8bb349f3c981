"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file lmtie installs gets the mode ``open()`` would give it (0666 less the umask), and
a process killed mid-write leaves at most one ``.NAME.XXXXXXXX.tmp`` beside the target, which
:func:`remove_stale_temp_files` recognises by name (the next run, holding the directory's
lock, removes them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

# atomic_path's temporary names: "." + target name + "." + tempfile's 8 random characters + ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask."""
    return 0o666 & ~_umask()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename over ``target``.

    On any exception the temporary file is removed and ``target`` is untouched. The installed
    file gets the umask's mode also when the writer replaced the temporary file by one of its
    own (as ``safetensors.save_file`` does, with a private 0600 file).
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    mode = file_mode()
    os.fchmod(fd, mode)  # mkstemp makes 0600; give the file the mode open() would
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for a name :func:`atomic_path` gives its temporary files."""
    return _TEMP_NAME.match(Path(path).name) is not None


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left in ``directory``; return them.

    Only lmtie's own names (:func:`is_temp_file`) are touched. Call it only while holding the
    directory's lock (:mod:`lmtie.lock`): a live writer's temporary file has the same name.
    """
    removed = []
    for p in Path(directory).iterdir():
        if is_temp_file(p) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def is_disk_full(e: BaseException) -> bool:
    """An OSError saying the file system (or the user's quota) is full."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
