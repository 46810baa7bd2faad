"""Opening a results database: home resolution, the connections, and transactions whose failures are
one line.

Home resolution: `--home`, else `$ROBBENCH_HOME`, else `./robbench-results`. A home opened for writing
is in WAL mode (workers write concurrently, one transaction per cell or agent) and brought to the
current schema (`schema.migrate`); one opened to read is never written, whatever its permissions.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from robbench.errors import RobbenchError, io_error
from robbench.store.schema import DB_NAME, check_schema, migrate

DEFAULT_HOME = "robbench-results"

#: What a store method raises when the database itself fails (still locked after the 60 s timeout, an
#: I/O error while reading): callers catch this name, so that only the store knows which engine it is.
DatabaseError = sqlite3.Error


def resolve_home(home: str | os.PathLike | None, must_exist: bool = False) -> Path:
    """`--home`, else `$ROBBENCH_HOME`, else `./robbench-results`."""
    path = Path(home or os.environ.get("ROBBENCH_HOME") or DEFAULT_HOME).expanduser()
    if must_exist and not (path / DB_NAME).is_file():
        raise RobbenchError(f"results home {str(path)!r} does not exist or holds no results (train an agent first)")
    if must_exist and _empty_file(path / DB_NAME):
        raise _empty_database(path)
    return path


def _empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def _empty_database(home: Path) -> RobbenchError:
    return RobbenchError(f"results home {str(home)!r} is damaged: its database {DB_NAME} is empty (0 bytes), not a "
                         "robbench results store; restore it from a backup or pass another --home")


def open_database(home: Path, readonly: bool) -> sqlite3.Connection:
    """The connection of a store on `home` (rows as `sqlite3.Row`), its schema checked (and, for
    writing, migrated); every failure to open is one line naming the home."""
    db = home / DB_NAME
    where = f"the database of results home {str(home)!r}"
    try:
        # A zero-length database is an index lost (truncated, a failed copy): never re-initialise it over
        # the checkpoints it indexed. Alone in its directory it may be a home another process creates now.
        if _empty_file(db) and (readonly or any(p.name not in _DB_FILES for p in home.iterdir())):
            raise _empty_database(home)
        if readonly:
            conn = _connect_readonly(db)
        else:
            home.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db, timeout=60.0, isolation_level=None)
        try:
            if readonly:
                check_schema(conn, where)
            else:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                migrate(conn, where)
        except BaseException:
            conn.close()
            raise
    except (OSError, sqlite3.Error) as exc:
        reason = " ".join(str(exc).split())
        if not readonly and (getattr(exc, "sqlite_errorcode", 0) & 0xFF == 8
                             or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)):
            raise RobbenchError(f"cannot open results home {str(home)!r} for writing: it is read-only "
                                f"({reason}); fix its permissions or pass a writable --home") from None
        if isinstance(exc, OSError) or getattr(exc, "sqlite_errorcode", 0) & 0xFF in (10, 13):  # IOERR, FULL
            reason = str(io_error(exc, getattr(exc, "filename", None) or db))
        raise RobbenchError(f"cannot open results home {str(home)!r}: {reason}") from None
    conn.row_factory = sqlite3.Row
    return conn


class Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (incl. KeyboardInterrupt)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None):
        self.conn = conn
        self.path = path or Path(DB_NAME)

    def __enter__(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise RobbenchError(f"results database is not writable: {_db_reason(exc, self.path)}") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise RobbenchError(f"could not commit results: {_db_reason(err, self.path)}") from None
        else:
            self._rollback()
            # disk full, read-only or I/O error in the middle of a write: one line (a bug stays a bug)
            if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) & 0xFF in (8, 10, 13):
                raise RobbenchError(f"could not write results: {_db_reason(exc, self.path)}") from None

    def _rollback(self) -> None:
        """ROLLBACK unless SQLite already rolled back itself (it does on a full disk or an I/O error)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _db_reason(err: sqlite3.Error, path: Path) -> str:
    """`database or disk is full` → the readable form robbench uses for every full disk."""
    if getattr(err, "sqlite_errorcode", 0) & 0xFF in (8, 10, 13):  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL
        return str(io_error(err, path))
    return " ".join(str(err).split())


_DB_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}


def _connect_readonly(db: Path) -> sqlite3.Connection:
    """Open the database only to read it (no schema, no pragma writes), for reports and listings.

    In a writable home this is an ordinary connection (which tidies up its `-wal`/`-shm` on close);
    else `mode=ro`; and a WAL database in a directory this process cannot write (no `-shm` can be
    created) is read as the file stands, provided no `-wal` holds commits not yet merged into it."""
    uri = db.resolve().as_uri()
    if not db.is_file():  # mode=rw would fail too; never create a database here
        raise sqlite3.OperationalError(f"unable to open database file {str(db)!r}")
    last: sqlite3.Error | None = None
    for mode in ("rw", "ro"):
        conn = sqlite3.connect(f"{uri}?mode={mode}", uri=True, timeout=60.0, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
    wal = db.with_name(db.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise last
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def connect_source(db: Path) -> sqlite3.Connection:
    """Open a source database read-only (never writing the source home: no checkpoint, no -shm if avoidable)."""
    uri = db.as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        wal = db.with_name(db.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)  # a read-only copy: read as it stands
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute("PRAGMA query_only=ON")
    return conn
