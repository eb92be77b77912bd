"""The SQLite plumbing the BM25 index and the product store share.

:class:`SqliteFile` holds one connection (``check_same_thread=False``, autocommit) behind a
lock for writes, creates the schema, turns SQLite errors on open into
:class:`~indexer.stores.base.StoreError`, writes in ``BEGIN IMMEDIATE`` transactions and
counts the ``products`` table. Reads go through :meth:`SqliteFile._reading`: each thread's
own read-only connection, so the HTTP server's threads read in parallel (SQLite releases
the GIL while a statement runs). :func:`building` opens a store on a temp file with
journaling and syncing off, then moves it into place.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from indexer.stores.atomic import atomic_file
from indexer.stores.base import StoreError

_File = TypeVar("_File", bound="SqliteFile")


def _connect(path: Path, *, foreign_keys: bool) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if foreign_keys:
            connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {path}: {exc}") from exc
    return connection


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode; None when it is not a file on disk (``:memory:``)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro",
        uri=True,
        check_same_thread=False,
        isolation_level=None,
    )


class SqliteFile:
    """One SQLite file with a ``products`` table: one connection and a lock for writes, and
    one read-only connection per reading thread.

    ``what`` names the store in errors ("cannot use <path> as <what>").
    """

    def __init__(self, path: Path, *, schema: str, what: str, foreign_keys: bool = False) -> None:
        self.path = Path(path)
        self._what = what
        self._lock = threading.Lock()
        self._connection = _connect(self.path, foreign_keys=foreign_keys)
        with self._opening():
            self._create_schema(schema)
        self._identity = _file_identity(self.path)
        self._thread_readers = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    @contextlib.contextmanager
    def _opening(self) -> Iterator[None]:
        """Close the connection if the block fails; a database error becomes a StoreError."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            self._connection.close()
            raise StoreError(f"cannot use {self.path} as {self._what}: {exc}") from exc
        except BaseException:
            self._connection.close()
            raise

    def _create_schema(self, schema: str) -> None:
        self._connection.executescript(schema)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one ``BEGIN IMMEDIATE`` transaction; roll back if the block fails."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read with: this thread's own read-only one, so reads in several
        threads run at once. The shared one, behind the lock, when the file is not on disk
        (``:memory:``) or was replaced since this store opened it: the store keeps reading
        the file it opened, as its shared connection does, until it is reopened."""
        reader = self._thread_reader()
        if reader is not None:
            yield reader
            return
        with self._lock:
            yield self._connection

    def _thread_reader(self) -> sqlite3.Connection | None:
        reader: sqlite3.Connection | None = getattr(self._thread_readers, "connection", None)
        if reader is not None or hasattr(self._thread_readers, "connection"):
            return reader
        if self._identity is not None and _file_identity(self.path) == self._identity:
            try:
                reader = _connect_read_only(self.path)
            except sqlite3.Error:
                reader = None
        with self._lock:
            if self._closed:
                if reader is not None:
                    reader.close()
                return None
            if reader is not None:
                self._readers.append(reader)
        self._thread_readers.connection = reader
        return reader

    def close(self) -> None:
        """Close the database connections (the shared one and every thread's reader)."""
        with self._lock:
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        with self._reading() as connection:
            (count,) = connection.execute("SELECT count(*) FROM products").fetchone()
        return int(count)


@contextlib.contextmanager
def building(path: Path, open_at: Callable[[Path], _File]) -> Iterator[_File]:
    """Yield ``open_at(temp)`` for a temp file beside ``path``, journaling and syncing off.

    The store is closed when the block ends; on success the file is moved onto ``path``,
    on an exception it is removed and ``path`` is left untouched.
    """
    with atomic_file(path) as temp:
        store = open_at(temp)
        try:
            store._connection.execute("PRAGMA journal_mode = OFF")
            store._connection.execute("PRAGMA synchronous = OFF")
            yield store
        finally:
            store.close()
