"""Atomic writes: a file or a whole directory appears complete or not at all.

Every temp file or directory lives next to its target (same parent, so the same file
system) under a hidden name, and is moved into place with a rename once fully written and
fsynced. A failure removes the temp and leaves the target as it was.

Replacing an existing directory swaps the two in one step where the OS can (Linux's
``renameat2`` with ``RENAME_EXCHANGE``), so a reader always finds a complete directory at
the path, the old one or the new one. Elsewhere it takes two renames (target ->
``.name.old-*``, temp -> target), and a reader that opens the path in between finds
nothing there. Readers that already hold files open keep reading the old ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.stores.base import StoreError

logger = logging.getLogger(__name__)


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; done once per process.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path, *, directory: bool) -> int:
    """``target``'s current permissions, or what a plain create would give under the umask.

    ``mkstemp`` / ``mkdtemp`` create private (0600 / 0700) entries; without this, a store
    written by one user could not be read by a server running as another.
    """
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return (0o777 if directory else 0o666) & ~_umask()


def fsync_directory(path: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; nothing to flush there.
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s not supported", path)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(directory))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's ``renameat2``, or None where the C library has none (not Linux/glibc)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the OS or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    result = function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temp directory that replaces ``target`` when the block succeeds.

    On an exception the temp directory is removed, ``target`` is left untouched and the
    exception propagates.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target} exists and is not a directory")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(target, directory=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        os.chmod(temp, mode)
        yield temp
        _fsync_tree(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if target.exists() and exchange_paths(temp, target):
        fsync_directory(parent)
        shutil.rmtree(temp, ignore_errors=True)  # the old directory, now at the temp path
        logger.debug("atomically exchanged directory %s", target)
        return
    old: Path | None = None
    if target.exists():
        old = parent / f".{target.name}.old-{secrets.token_hex(6)}"
        os.rename(target, old)
    try:
        os.rename(temp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_directory(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.debug("atomically replaced directory %s", target)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp file path next to ``path``; on success fsync it and ``os.replace`` it in.

    The temp file exists (empty) when the block starts. On an exception it is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path, directory=False)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        os.chmod(temp, mode)
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, replace)."""
    with atomic_file(path) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def write_json_atomic(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (UTF-8, sorted keys, trailing newline) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")
