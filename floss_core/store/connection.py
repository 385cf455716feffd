"""Opening a store file and talking to it: the connection, its transactions, the migrations.

A worker process writes results, the dashboard reads them, possibly at the same moment:

* WAL mode lets readers keep reading while a writer commits; every connection waits up to
  ``BUSY_TIMEOUT_S`` for a lock instead of failing with "database is locked".
* Every write is one ``BEGIN IMMEDIATE`` transaction, so it takes the write lock up front (a deferred
  transaction that upgrades from read to write can fail without waiting) and a run's results land whole
  or not at all.
* A ``Store`` object belongs to one process and holds one connection behind a lock (threads may share it;
  after a fork the child quietly opens its own). Other processes open their own ``Store``.

A file is inspected read-only before anything is written, so a foreign or newer file is never touched.

Permissions (issue 16): a store this user cannot write is refused for writing up front with one line naming
the path and what is not writable (the file, or the folder where SQLite's WAL mode keeps its ``-wal`` and
``-shm`` files), never SQLite's "unable to open database file". ``read_only=True`` (or ``None``: read-only
exactly when this user cannot write it) opens it with ``mode=ro``; a WAL reader needs the ``-shm`` file, so
when there is none and the folder is not writable either, the file is opened ``immutable=1``: no -shm, no
locks. That is sound only because then no writer has it open (every WAL writer keeps a -shm beside it), and
a ``-wal`` left with content is refused, since an immutable reader would silently skip its transactions.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from .codec import _dumps, _loads
from .schema import APP, MIGRATIONS, SCHEMA_VERSION, StoreError, _statements, default_store_path

BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another process's write lock
_COST_KEY = "cost_table:"  # meta key of a device's cost table (+ the device)


class _Connection:
    """The connection plumbing of ``Store`` (see there for ``path`` and ``create``).

    ``read_only``: False (the default) opens the store for writing, and a store this user may not write
    (the file, or its folder, where the WAL files live) is refused with a one-line ``StoreError`` naming
    the path; True opens it read-only (every write then raises ``StoreError``); None is read-only exactly
    when this user may not write it (what ``status`` and ``report`` do).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 read_only: bool | None = False):
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if read_only is None:  # read-only exactly when this user may not write it
            read_only = self.path.exists() and _write_problem(self.path) is not None
        self.read_only = bool(read_only)
        version = _inspect(self.path, create=create and not self.read_only)  # a foreign file is never written
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version} and needs upgrading to {SCHEMA_VERSION}, "
                                 "which needs write permission; it was opened read-only and left unchanged")
            self._conn = self._connect()
            return
        problem = _write_problem(self.path)
        if problem:
            raise StoreError(problem)
        try:
            if version is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
        except (OSError, sqlite3.OperationalError) as e:  # e.g. a read-only file system
            raise StoreError(f"cannot open the store {self.path} for writing: {getattr(e, 'strerror', None) or e}") from None
        if version is None or version < SCHEMA_VERSION:
            try:
                self._migrate()
            except BaseException:
                self.close()
                raise

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            conn = _connect_read_only(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            self._pid = os.getpid()
            return conn
        # isolation_level=None: no implicit transactions, every BEGIN below is written out.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r}); "
                             "is it on a network file system?")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: survives application crashes
        self._pid = os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        if os.getpid() != self._pid:
            # A connection must not cross a fork; the child leaves the parent's alone and opens its own.
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _write(self, *, count: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; bumps meta.change_counter if it changed any row (and ``count``)."""
        if self.read_only:
            raise StoreError(_write_problem(self.path) or f"cannot write the store {self.path}: it was opened read-only")
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                yield conn
                if count and conn.total_changes != before:
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                                 "WHERE key = 'change_counter'")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _migrate(self) -> None:
        # Table rebuilds (v2) need foreign keys off, or DROP TABLE would cascade into metrics & co.
        # The pragma is a no-op inside a transaction, so it is switched here and checked before COMMIT.
        self._connection().execute("PRAGMA foreign_keys = OFF")
        try:
            self._migrate_locked()
        finally:
            if self._conn is not None:
                self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate_locked(self) -> None:
        with self._write() as conn:
            # Re-check inside the write lock: another process may have created the store meanwhile.
            version = _schema_version(conn, self.path)
            if version is None:
                version = 0
            if version > SCHEMA_VERSION:
                raise _newer_error(self.path, version)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(target),))
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:  # raising rolls the whole migration back: the file stays as it was
                raise StoreError(f"{self.path}: migration to schema {SCHEMA_VERSION} would break "
                                 f"{len(broken)} references, e.g. {broken[0]}; the file was left unchanged")
            if version == 0:
                conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))

    def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}" + (", read_only=True)" if self.read_only else ")")

    # ------------------------------------------------------------------ housekeeping

    def last_change(self) -> tuple[str, int]:
        """A cheap key that changes on every write that alters experiment or run data.

        ``(store_id, change_counter)``: the counter is bumped by every such transaction; the store id
        tells apart a store that was deleted and re-created at the same path.
        """
        with self._read() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'change_counter')"))
        return meta.get("store_id", ""), int(meta["change_counter"])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: 'ok' when the file is sound, else the problems found."""
        with self._read() as conn:
            return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))

    # ------------------------------------------------------------------ this machine's cost table

    def cost_table(self, device: str = "cpu") -> dict | None:
        """The cost table of ``device`` on this store's machine (``floss_core.costs``), None until one is
        saved. A JSON value in the meta table, so it needs no schema of its own."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_COST_KEY + device,)).fetchone()
        return None if row is None else _loads(row[0])

    def save_cost_table(self, table: dict, device: str = "cpu") -> None:
        """Keep ``table`` as the cost table of ``device`` (replacing the one kept). It is no experiment
        data: ``last_change`` does not change, so the pages' cached results stay valid."""
        with self._write(count=False) as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                         "excluded.value", (_COST_KEY + device, _dumps(table)))


_NOT_A_STORE = "{path} is not a Gradient Flossing Lab store ({why}); refusing to touch it"


def _inspect(path: Path, *, create: bool) -> int | None:
    """Schema version of an existing store, None for a missing or empty file that may be created.

    Opens the file read-only, so a foreign file is never modified, not even its journal mode.
    """
    if not path.exists():
        if create:
            return None
        raise StoreError(f"no store at {path} (pass create=True to make one)")
    if path.is_dir():
        raise StoreError(_NOT_A_STORE.format(path=path, why="it is a directory"))
    if path.stat().st_size == 0:
        if create:
            return None
        raise StoreError(_NOT_A_STORE.format(path=path, why="the file is empty"))
    conn = _connect_read_only(path)
    try:
        version = _schema_version(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(_NOT_A_STORE.format(path=path, why=exc)) from None
    finally:
        conn.close()
    if version is None and not create:
        raise StoreError(_NOT_A_STORE.format(path=path, why="an SQLite database without tables"))
    if version is not None and version > SCHEMA_VERSION:
        raise _newer_error(path, version)
    return version


def _denied(path: Path, what: str) -> StoreError:
    return StoreError(f"{what} {path}: permission denied")


def _write_problem(path: Path) -> str | None:
    """Why this user cannot write the store at ``path`` (create it, or write it and its WAL files beside
    it), in one line naming the path; None when it can. ``os.access`` asks the kernel with this process's
    real ids and capabilities, and also reports a read-only file system."""
    if path.is_dir():
        return None  # _inspect refuses it for what it is
    if not path.exists():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return (f"cannot create the store {path}: permission denied: this user may not write to the "
                    f"folder {folder}")
        return None
    if not os.access(path, os.W_OK):
        return (f"cannot write the store {path}: permission denied: the file is read-only for this user "
                "(status and report can still read it)")
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    if not os.access(path.parent, os.W_OK | os.X_OK) and not all(
            p.exists() and os.access(p, os.W_OK) for p in sidecars):
        return (f"cannot write the store {path}: permission denied: this user may not write to its folder "
                f"{path.parent}, where SQLite keeps the store's {sidecars[0].name} and {sidecars[1].name} files")
    return None


def _connect_read_only(path: Path, **kwargs) -> sqlite3.Connection:
    """A read-only connection that has read the schema; StoreError naming the problem (a permission, or a
    file that is no database) otherwise.

    ``mode=ro`` first: it reads the WAL through the ``-shm`` file (creating that if the folder allows).
    Where there is no -shm and the folder is not writable, ``immutable=1``: no writer has the file open
    then (a WAL writer keeps a -shm), so there is nothing to lock against; but a ``-wal`` with content is
    refused, as an immutable reader would skip the transactions in it."""
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the store {path}: permission denied: this user may not read the file")
    uri = path.resolve().as_uri()
    error = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True, timeout=BUSY_TIMEOUT_S, **kwargs)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            error = exc
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
            conn.close()
            raise StoreError(_NOT_A_STORE.format(path=path, why=exc)) from None
        if query.endswith("immutable=1"):
            break
        shm, wal = (path.with_name(path.name + suffix) for suffix in ("-shm", "-wal"))
        if shm.exists() and not os.access(shm, os.R_OK):
            raise StoreError(f"cannot read the store {path}: permission denied: this user may not read its "
                             f"{shm.name} file") from None
        if shm.exists() or os.access(path.parent, os.W_OK | os.X_OK):
            break   # not the missing -shm: say what SQLite says
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"cannot read the store {path}: permission denied: its {wal.name} file holds "
                             f"changes that need a {shm.name} file beside it, which this user may not create "
                             f"in {path.parent}; open it once as a user who can write there") from None
    raise StoreError(f"cannot read the store {path}: {error}")


def _schema_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version; None for a database without tables; StoreError if foreign."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(_NOT_A_STORE.format(path=path, why="an SQLite database without floss_core's meta table"))
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('app', 'schema_version')"))
    if meta.get("app") != APP:
        raise StoreError(_NOT_A_STORE.format(path=path, why=f"meta says app={meta.get('app')!r}"))
    try:
        return int(meta["schema_version"])
    except (KeyError, ValueError):
        raise StoreError(_NOT_A_STORE.format(
            path=path, why=f"bad schema_version {meta.get('schema_version')!r}")) from None


def _newer_error(path: Path, version: int) -> StoreError:
    return StoreError(f"{path} has schema version {version}, but this floss_core reads versions up to "
                      f"{SCHEMA_VERSION}; upgrade floss_core (the file was left unchanged)")


def _dicts(cur: sqlite3.Cursor) -> list[dict]:
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, row)) for row in cur.fetchall()]
